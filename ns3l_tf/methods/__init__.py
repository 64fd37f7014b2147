"""Semi-supervised methods: one base method plus any additive terms, named by an algorithm string.

An algorithm string joins one base method and any additive terms with `+`: `"supervised"`,
`"ns3l"` (short for `"supervised+ns3l"`), `"vat+entmin+ns3l"`, `"pseudo_label+ns3l"`,
`"mixmatch+ns3l"`. Each method is declared here once: its settings (defaults, help, checks,
tunable weights) and its registry line; the implementation lives in its own module and is
imported when a model is built. This module imports no TensorFlow.

A new method is one module and one `register(...)` line (here, or in your own code).
"""

import dataclasses

from ns3l_tf.methods.registry import (
    BASE,
    REGISTRY,
    TERM,
    AlgorithmSpec,
    Method,
    MethodContext,
    default_settings,
    flat_settings,
    parse_algorithm,
    register,
    split_flat,
    unregister,
    validate_settings,
)
from ns3l_tf.settings import (
    ConfigError,
    non_negative,
    one_of,
    open_unit_interval,
    positive,
    setting,
    unit_interval_from_zero,
)


@dataclasses.dataclass(frozen=True)
class SupervisedSettings:
    """The supervised base method has no settings."""


@dataclasses.dataclass(frozen=True)
class PseudoLabelSettings:
    """Pseudo-Label (Lee 2013) as in Oliver et al. (2018)."""

    threshold: float = setting(
        0.95, "Pseudo-Label's confidence threshold.", check=unit_interval_from_zero
    )
    weight: float = setting(1.0, "Pseudo-Label's weight.", check=non_negative(), tunable=True)


@dataclasses.dataclass(frozen=True)
class VATSettings:
    """Virtual adversarial training (Miyato et al. 2017)."""

    epsilon: float = setting(
        6.0, "VAT's perturbation norm per image (6 CIFAR, 1 SVHN).", check=positive
    )
    xi: float = setting(1e-6, "VAT's finite-difference step.", check=positive)
    weight: float = setting(0.3, "VAT's weight lambda_2.", check=non_negative(), tunable=True)


@dataclasses.dataclass(frozen=True)
class MixMatchSettings:
    """MixMatch (Berthelot et al. 2019)."""

    weight: float = setting(
        75.0, "MixMatch's unlabeled weight lambda_3.", check=non_negative(), tunable=True
    )
    temperature: float = setting(0.5, "MixMatch's sharpening temperature.", check=positive)
    alpha: float = setting(0.75, "MixMatch's Beta(alpha, alpha) MixUp parameter.", check=positive)
    rampup_steps: int = setting(
        16384, "Steps of the linear warm-up of lambda_3.", check=non_negative()
    )


@dataclasses.dataclass(frozen=True)
class EntMinSettings:
    """Entropy minimisation (Grandvalet & Bengio 2005)."""

    weight: float = setting(
        0.1, "Entropy minimisation's weight.", check=non_negative(), tunable=True
    )


# How NS³L may choose negatives (paper Section 5; implementations in ns3l_tf.negatives).
NEAREST_NEIGHBOUR_SELECTORS = (
    "nn_exclude",
    "nn_exclude4",
    "nn_furthest",
    "nn_exclude_all",
    "nn_exclude4_all",
    "nn_exclude4_classes",
    "nn_furthest_class",
)
SELECTORS = ("threshold", "uniform", "oracle", *NEAREST_NEIGHBOUR_SELECTORS)
# Selectors that draw P = --ns3l_num_negatives classes per sample, and how many classes
# they may draw from with K classes: P is at most that.
COUNTED_SELECTORS = {
    "uniform": lambda k: k,
    "oracle": lambda k: k - 1,
    "nn_exclude": lambda k: k - 1,
    "nn_exclude4": lambda k: k - 4,
    "nn_exclude4_classes": lambda k: k - 4,
}
# The paper's threshold scales with 1/K: T = 0.04 for 10 classes, 0.004 for 100.
DEFAULT_THRESHOLD_NUMERATOR = 0.4


def default_ns3l_threshold(num_classes: int) -> float:
    """The paper's NS³L threshold for `num_classes` classes: 0.4 / K."""
    return DEFAULT_THRESHOLD_NUMERATOR / num_classes


@dataclasses.dataclass(frozen=True)
class NS3LSettings:
    """Negative sampling in semi-supervised learning (Chen, Shah & Kyrillidis 2020)."""

    threshold: float | None = setting(
        None,
        "NS3L threshold T in (0, 1); default 0.4 / number of classes.",
        check=open_unit_interval,
        tunable=True,
    )
    weight: float = setting(
        1.0,
        "NS3L weight lambda_1 >= 0; 0 turns NS3L off.",
        check=non_negative("0 turns NS3L off"),
        tunable=True,
    )
    selector: str = setting(
        "threshold",
        "How NS3L picks negatives (paper Section 5): threshold (below T), uniform (P random "
        "classes), oracle (P random wrong classes; reads the hidden labels: a diagnostic), "
        "nn_exclude / nn_exclude4 (P random classes other than those of the 1 / 4 nearest "
        "labeled images), nn_furthest (the furthest labeled image's class), nn_exclude_all / "
        "nn_exclude4_all (every class other than those of the 1 / 4 nearest); class-wise, "
        "classes ranked by their nearest labeled member: nn_exclude4_classes (P random "
        "classes other than the 4 nearest classes), nn_furthest_class (the furthest class).",
        check=one_of(SELECTORS),
    )
    num_negatives: int = setting(
        1,
        "P, negatives per sample for --ns3l_selector="
        "uniform|oracle|nn_exclude|nn_exclude4|nn_exclude4_classes.",
    )
    views: int = setting(
        1,
        "Forward passes of NS3L: 1 takes mu from the base method's pass (q = stop_gradient(mu)); "
        "2 recomputes mu in a second pass over the same batch with frozen BatchNorm statistics "
        "and, when the model augments (--augment=model), a fresh random view, as the authors' "
        "loss does.",
        check=lambda views: None if views in (1, 2) else "must be 1 or 2",
    )

    def threshold_for(self, num_classes: int) -> float:
        """T with the default 0.4 / K resolved."""
        return default_ns3l_threshold(num_classes) if self.threshold is None else self.threshold

    def resolved(self, num_classes: int) -> "NS3LSettings":
        """These settings with T's default resolved for `num_classes` classes."""
        return dataclasses.replace(self, threshold=self.threshold_for(num_classes))


register(
    Method(
        "supervised",
        BASE,
        SupervisedSettings,
        "ns3l_tf.methods.supervised:Supervised",
        uses_unlabeled=False,  # forwards unlabeled images only when a term needs them
    )
)
register(
    Method("pseudo_label", BASE, PseudoLabelSettings, "ns3l_tf.methods.pseudo_label:PseudoLabel")
)
register(Method("vat", BASE, VATSettings, "ns3l_tf.methods.vat:VAT"))
register(
    Method(
        "mixmatch",
        BASE,
        MixMatchSettings,
        "ns3l_tf.methods.mixmatch:MixMatch",
        rows_are_images=False,
        unlabeled_augmentations=2,
        equal_batches=True,
        augments_in_pipeline=True,  # libml/data.py:169-170, data_pair.py:25-32
    )
)
register(Method("entmin", TERM, EntMinSettings, "ns3l_tf.methods.entmin:EntMin"))
register(Method("ns3l", TERM, NS3LSettings, "ns3l_tf.methods.ns3l:NS3L"))


def check_combination(
    algorithm: str,
    values: dict,
    num_classes: int,
    *,
    streamed_unlabeled: bool = False,
    batch_sizes: tuple[int, int] | None = None,
    augment: str | None = None,
) -> AlgorithmSpec:
    """The one place that decides which algorithm, selector and data combinations work.

    Args:
      algorithm: the algorithm string.
      values: `{method name: settings}` for (at least) the methods it names.
      num_classes: K.
      streamed_unlabeled: the unlabeled pool includes a streamed extra split (SVHN `extra`,
        STL-10 `unlabelled`), so images are not all in memory and have no known labels.
      batch_sizes: `(labeled, unlabeled)` per step, when known.
      augment: where images are augmented (`model` or `pipeline`), when set.

    Returns:
      The parsed algorithm.

    Raises:
      ConfigError: naming the flag and what is allowed.
    """
    try:
        spec = parse_algorithm(algorithm)
    except ValueError as error:
        raise ConfigError(f"--algorithm={algorithm}: {error}") from None
    base = REGISTRY[spec.base]
    if augment == "model" and base.augments_in_pipeline:
        raise ConfigError(
            f"--augment=model: {spec.base} draws its augmentations in the input pipeline"
        )
    if batch_sizes is not None:
        labeled, unlabeled = batch_sizes
        if base.equal_batches and unlabeled != labeled:
            raise ConfigError(
                f"--unlabeled_batch_size={unlabeled}: must equal --batch_size={labeled} for "
                f"{spec.base}"
            )
        if spec.needs_unlabeled(values) and unlabeled == 0:
            raise ConfigError(f"--unlabeled_batch_size=0: must be > 0 for --algorithm={algorithm}")
    ns3l = values.get("ns3l", NS3LSettings())
    if ns3l.views == 2 and "ns3l" in spec.terms and not base.rows_are_images:
        raise ConfigError(
            f"--ns3l_views=2: {spec.base}'s rows are mixtures made for one pass; use --ns3l_views=1"
        )
    selector = ns3l.selector
    if selector == "threshold":
        return spec
    flag = f"--ns3l_selector={selector}"
    if "ns3l" not in spec.active_terms(values):
        raise ConfigError(
            f"{flag}: needs the NS3L term (an --algorithm with ns3l and --ns3l_weight > 0)"
        )
    if not base.rows_are_images:
        raise ConfigError(f"{flag}: {spec.base} mixes images, so only threshold negatives apply")
    if selector in COUNTED_SELECTORS:
        largest = COUNTED_SELECTORS[selector](num_classes)
        if not 1 <= ns3l.num_negatives <= largest:
            raise ConfigError(
                f"--ns3l_num_negatives={ns3l.num_negatives}: must be in [1, {largest}] for "
                f"{flag} with {num_classes} classes"
            )
    if selector != "uniform" and streamed_unlabeled:
        raise ConfigError(
            f"{flag}: needs every unlabeled image in memory (and, for oracle, its true label); "
            "the extra unlabeled split is streamed without labels: add --extra_unlabeled=false"
        )
    return spec


__all__ = [
    "BASE",
    "COUNTED_SELECTORS",
    "NEAREST_NEIGHBOUR_SELECTORS",
    "REGISTRY",
    "SELECTORS",
    "TERM",
    "AlgorithmSpec",
    "EntMinSettings",
    "Method",
    "MethodContext",
    "MixMatchSettings",
    "NS3LSettings",
    "PseudoLabelSettings",
    "SupervisedSettings",
    "VATSettings",
    "check_combination",
    "default_ns3l_threshold",
    "default_settings",
    "flat_settings",
    "parse_algorithm",
    "register",
    "split_flat",
    "unregister",
    "validate_settings",
]
