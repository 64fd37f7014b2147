"""NS³L (Chen, Shah & Kyrillidis 2020) as an additive term: its settings, its selectors'
vocabulary, its combination rules and its implementation (negatives from a selector, the loss
on the unlabeled probabilities)."""

import dataclasses

from ns3l_tf.lazy import lazy
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term
from ns3l_tf.methods.registry import TERM, Method, register
from ns3l_tf.settings import (
    ConfigError,
    SearchRange,
    non_negative,
    one_of,
    open_unit_interval,
    setting,
)

ops = lazy("keras.ops")
losses = lazy("ns3l_tf.losses")
negatives = lazy("ns3l_tf.negatives")
nearest_neighbours = lazy("ns3l_tf.nearest_neighbours")  # TensorFlow, for the NN selectors

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
        default_for=default_ns3l_threshold,
        search=SearchRange(0.05, 2.0, per_class=True),
    )
    weight: float = setting(
        1.0,
        "NS3L weight lambda_1 >= 0; 0 turns NS3L off.",
        check=non_negative("0 turns NS3L off"),
        tunable=True,
        search=SearchRange(0.1, 10.0),
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
        "Forward passes of NS3L: 1 takes mu from the base method's pass (q = stop_gradient(mu); "
        "FixMatch-family bases: q from the weak view, mu from the strong one); 2 recomputes mu "
        "in a second pass over the same batch with frozen BatchNorm statistics and, when the "
        "model augments (--augment=model), a fresh random view, as the authors' loss does.",
        check=lambda views: None if views in (1, 2) else "must be 1 or 2",
    )


def check_ns3l(spec, values, setup) -> None:
    """NS³L's combination rules (see `Method.check`): two views need a base that gives a
    second view; a selector other than `threshold` needs the active term, image rows, a valid
    P and every unlabeled image in memory."""
    ns3l = values.get("ns3l", NS3LSettings())
    base = spec.methods[0]
    rows_are_images = base.rows_are_images
    if ns3l.views == 2 and "ns3l" in spec.terms and not base.gives_second_view:
        reason = (
            "views are drawn once per batch in the input pipeline"
            if rows_are_images
            else "rows are mixtures made for one pass"
        )
        raise ConfigError(f"--ns3l_views=2: {spec.base}'s {reason}; use --ns3l_views=1")
    selector = ns3l.selector
    if selector == "threshold":
        return
    flag = f"--ns3l_selector={selector}"
    if "ns3l" not in spec.active_terms(values):
        raise ConfigError(
            f"{flag}: needs the NS3L term (an --algorithm with ns3l and --ns3l_weight > 0)"
        )
    if not rows_are_images:
        raise ConfigError(f"{flag}: {spec.base} mixes images, so only threshold negatives apply")
    if selector in COUNTED_SELECTORS:
        largest = COUNTED_SELECTORS[selector](setup.num_classes)
        if not 1 <= ns3l.num_negatives <= largest:
            raise ConfigError(
                f"--ns3l_num_negatives={ns3l.num_negatives}: must be in [1, {largest}] for "
                f"{flag} with {setup.num_classes} classes"
            )
    if selector != "uniform" and setup.streamed_unlabeled:
        raise ConfigError(
            f"{flag}: needs every unlabeled image in memory (and, for oracle, its true label); "
            "the extra unlabeled split is streamed without labels: add --extra_unlabeled=false"
        )


class NS3L:
    """λ₁ · NS³L on the unlabeled (or mixed) batch.

    The selector chooses each row's negatives, by default the classes whose target probability
    is below T; the targets q come from the base method (detached predictions for
    supervised/VAT/Pseudo-Label, generated labels for MixMatch). With `views=1` the loss takes
    μ from the base method's pass, the one q came from; with `views=2` it recomputes μ with a
    second pass over the same batch (a fresh augmentation draw when the model augments inside,
    BatchNorm statistics frozen), as the authors' loss does (johnchenresearch/NS3L `ns3l.py`:
    q from the caller's first pass `:14-19`, μ from `model(x)` with batch-statistics updates
    off `:21-27`). The authors average over the whole labeled + unlabeled batch (`:26`), which
    halves every term of a 50 + 50 batch alike (so does their supervised loss); with equal
    batch sizes and Adam, averaging over the unlabeled rows trains the same.

    Logs `ns3l_negatives`, the mean number of negatives per sample, and, when the pipeline
    carries the hidden true labels of the unlabeled images, `ns3l_negative_error`: the
    percentage of samples whose negatives include their true class.

    Args:
      settings: `NS3LSettings`: `threshold` T (a float or a non-trainable `keras.Variable`;
        None is resolved to 0.4 / K by the model), `weight` λ₁ ≥ 0 (float or Variable),
        `selector` and `num_negatives` P (see `ns3l_tf.negatives`), `views` (1 or 2).
      context: a `MethodContext`: K, the seed generator of the random selectors, and the
        consistency ramp-up that multiplies λ₁.
    """

    loss_names = ("ns3l_loss",)
    metric_names = ("ns3l_negatives", "ns3l_negative_error")

    def __init__(self, settings, context):
        self.selector = negatives.NegativeSelector(
            settings.selector,
            context.num_classes,
            settings.threshold,
            settings.num_negatives,
            context.seed_generator,
        )
        self.weight = settings.weight
        self.views = settings.views
        self.rampup = context.consistency_rampup

    @property
    def extras_read(self) -> tuple[str, ...]:
        """Per-image extras of the unlabeled batch this term reads: the hidden `labels` (for
        the negative-error diagnostic; `oracle` needs them) and what the selector needs."""
        return ("labels", *(k for k in self.selector.required_extras if k != "labels"))

    @property
    def extras_required(self) -> tuple[str, ...]:
        """The extras without which this term cannot run: the selector's."""
        return self.selector.required_extras

    def pipeline_extras(self, data) -> dict:
        """The per-image arrays this term needs that only the data can give, computed once
        per run: the nearest-neighbour selectors' `nn_candidates` `(N_u, K)`.

        Args:
          data: the run's `ns3l_tf.data.SSLData`.
        """
        if "nn_candidates" not in self.selector.required_extras:
            return {}
        candidates = nearest_neighbours.nearest_neighbour_candidates(
            data.unlabeled_images,
            data.labeled_images,
            data.labeled_labels,
            data.info.num_classes,
            self.selector.name,
        )
        return {"nn_candidates": candidates}

    def __call__(self, outputs: BaseOutputs) -> Contribution:
        if outputs.unlabeled_probs is None:
            raise ValueError(
                "NS3L needs an unlabeled batch: feed ((x_labeled, y_labeled), x_unlabeled) "
                "batches to fit()"
            )
        mask = self.selector(outputs.targets, outputs.unlabeled_extras)
        metrics = {"ns3l_negatives": ops.mean(ops.sum(mask, axis=-1))}
        if "labels" in outputs.unlabeled_extras:
            metrics["ns3l_negative_error"] = negatives.negative_error(
                mask, outputs.unlabeled_extras["labels"]
            )
        probs = outputs.unlabeled_probs
        if self.views == 2:
            if outputs.second_view is None:
                raise ValueError("views=2 needs a base method whose rows are unlabeled images")
            probs = outputs.second_view()
        value = losses.negative_sampling_loss(mask, probs)
        return Contribution(
            losses={"ns3l_loss": Term(value, self.weight, self.rampup)}, metrics=metrics
        )


register(Method("ns3l", TERM, NS3LSettings, NS3L, check=check_ns3l))
