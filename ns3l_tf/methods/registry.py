"""The method registry: names, roles, settings and implementations; which combinations work.

A method is *registered* once with its settings dataclass (see `ns3l_tf.settings`) and its
implementation (a class, or `"module:Class"` imported on first use, so that flag parsing and
validation need no TensorFlow). Its flags, `SSLModel` keyword arguments and `get_config`
entries are `<name>_<field>`:

    @dataclasses.dataclass(frozen=True)
    class ScaleSettings:
        factor: float = setting(1.0, "the scale", check=positive)

    register(Method("scale", TERM, ScaleSettings, ScaleTerm))   # --scale_factor, scale_factor=

An implementation is called as `Implementation(settings, context)`: `settings` is the
settings instance with tunable fields replaced by `keras.Variable`s, `context` a
`MethodContext`. A *base* method maps `(model, x_l, y_l, x_u)` to `BaseOutputs`; a *term*
maps `BaseOutputs` to a `Contribution` (see `ns3l_tf.methods.base`).

Either may declare, as class attributes, the per-image entries of the unlabeled batch it reads
(`extras_read`, and of those `extras_required`: `labels`, the hidden true labels; `indices`,
each image's position in the in-memory pool; `nn_candidates`); a base that reads any gets
them as `unlabeled_extras=` (a dict). `state_variables` (a dict of `keras.Variable`s made in
`__init__`) are state kept across steps: the model owns them as `<name>_<key>`, so they are
saved, checkpointed and threaded through a JAX step.
"""

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from ns3l_tf import settings as settings_lib

BASE = "base"
TERM = "term"


# The kinds of view of an unlabeled image a base method may ask for: `weak`, the dataset's
# flips and translations (drawn in the input pipeline or in the network); `strong`, a weak
# view then RandAugment and Cutout (`ns3l_tf.models.strong_augmentation`, drawn in the model
# on the raw images at every step).
VIEW_KINDS = ("weak", "strong")


@dataclasses.dataclass(frozen=True)
class CombinationSetup:
    """What a method's own combination rules may read besides the settings.

    Attributes:
      num_classes: K.
      streamed_unlabeled: the unlabeled pool includes a streamed extra split (SVHN `extra`,
        STL-10 `unlabelled`): its images are not all in memory and have no known labels.
      batch_sizes: `(labeled, unlabeled)` per step, when known.
      augment: where images are augmented (`model` or `pipeline`), when set.
    """

    num_classes: int
    streamed_unlabeled: bool = False
    batch_sizes: tuple[int, int] | None = None
    augment: str | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A registered method.

    Attributes:
      name: the algorithm-string component, and the prefix of its flags.
      role: `BASE` (decides what goes through the network) or `TERM` (adds a loss term).
      settings: the frozen settings dataclass.
      implementation: the class, or `"module:Class"`.
      rows_are_images: (bases) whether row b of the unlabeled outputs is unlabeled image b
        (False for MixMatch, whose rows are mixtures).
      unlabeled_views: (bases) the views of each unlabeled image it takes, by kind
        (`VIEW_KINDS`): `("weak",)` gives `(B_u, H, W, C)` batches, more views
        `(B_u, A, H, W, C)`, view a of kind `unlabeled_views[a]`.
      gives_second_view: (bases) whether its `BaseOutputs.second_view` recomputes the
        unlabeled probabilities with a fresh augmentation (False where rows are mixtures or
        the views are drawn once per batch).
      equal_batches: (bases) whether labeled and unlabeled batches must be equal in size.
      uses_unlabeled: (bases) whether it forwards unlabeled images by itself.
      augments_in_pipeline: (bases) whether its reference draws augmentations once per batch
        in the input pipeline (MixMatch, FixMatch) rather than inside the network at every
        pass.
      check: the method's own combination rules, `check(spec, values, setup)` with the
        `AlgorithmSpec`, `{method name: settings}` and a `CombinationSetup`; raises
        `ConfigError` naming the flag. Called whenever the method is part of the algorithm or
        its settings differ from their defaults.
    """

    name: str
    role: str
    settings: type
    implementation: Any
    rows_are_images: bool = True
    unlabeled_views: tuple[str, ...] = ("weak",)
    gives_second_view: bool = True
    equal_batches: bool = False
    uses_unlabeled: bool = True
    augments_in_pipeline: bool = False
    check: Callable[["AlgorithmSpec", dict, CombinationSetup], None] | None = None

    @property
    def unlabeled_augmentations(self) -> int:
        """A, the views of each unlabeled image."""
        return len(self.unlabeled_views)

    def implementation_class(self) -> type:
        if isinstance(self.implementation, str):
            module, name = self.implementation.split(":")
            return getattr(importlib.import_module(module), name)
        return self.implementation


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What an implementation may read besides its settings.

    Attributes:
      num_classes: K.
      seed_generator: a `keras.random.SeedGenerator` (random directions, MixUp, selectors).
      consistency_rampup: step → factor in [0, 1], Oliver et al.'s warm-up of the unlabeled
        terms' weights.
      num_unlabeled: N_u, the images of the in-memory unlabeled pool (what `indices` index),
        for state kept per image; None when the model was not told.
    """

    num_classes: int
    seed_generator: Any
    consistency_rampup: Callable[[Any], Any]
    num_unlabeled: int | None = None


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Adds `method`; its name must be new and its settings a dataclass."""
    if method.name in REGISTRY:
        raise ValueError(f"a method named {method.name!r} is registered already")
    if method.role not in (BASE, TERM):
        raise ValueError(f"role must be {BASE!r} or {TERM!r}, got {method.role!r}")
    if not dataclasses.is_dataclass(method.settings):
        raise TypeError(f"{method.name}: settings must be a dataclass")
    unknown = set(method.unlabeled_views) - set(VIEW_KINDS)
    if not method.unlabeled_views or unknown:
        raise ValueError(
            f"{method.name}: unlabeled_views must be kinds of {VIEW_KINDS}, got "
            f"{method.unlabeled_views}"
        )
    REGISTRY[method.name] = method
    return method


def unregister(name: str) -> None:
    """Removes a registered method (tests register temporary ones)."""
    del REGISTRY[name]


def names(role: str) -> list[str]:
    """The registered methods of `role` (`BASE` or `TERM`), sorted."""
    return sorted(name for name, m in REGISTRY.items() if m.role == role)


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """A parsed algorithm string: the base method and the additive terms, in order."""

    base: str
    terms: tuple[str, ...]

    @property
    def methods(self) -> tuple[Method, ...]:
        """The base method, then the terms."""
        return tuple(REGISTRY[name] for name in (self.base, *self.terms))

    def active_terms(self, values: dict[str, Any]) -> tuple[str, ...]:
        """The terms that contribute: a term whose `weight` setting is 0 is left out."""
        return tuple(t for t in self.terms if getattr(values.get(t), "weight", None) != 0.0)

    def needs_unlabeled(self, values: dict[str, Any]) -> bool:
        """Whether batches must carry unlabeled images: the base forwards them, or a term is
        active."""
        return REGISTRY[self.base].uses_unlabeled or bool(self.active_terms(values))


def parse_algorithm(algorithm: str) -> AlgorithmSpec:
    """Parses `"base+term+term"`; the base defaults to `supervised` when only terms are named.

    Raises:
      ValueError: naming the unknown component and the allowed ones, or a second base method.
    """
    components = [c.strip() for c in algorithm.lower().split("+") if c.strip()]
    allowed = names(BASE) + names(TERM)
    unknown = [c for c in components if c not in allowed]
    if not components or unknown:
        raise ValueError(
            f"unknown algorithm {algorithm!r}: components must be one of {', '.join(allowed)} "
            "joined by '+'"
        )
    bases = [c for c in components if REGISTRY[c].role == BASE]
    if len(bases) > 1:
        raise ValueError(f"algorithm {algorithm!r} names more than one base method: {bases}")
    terms = tuple(c for c in components if REGISTRY[c].role == TERM)
    if len(set(terms)) != len(terms):
        raise ValueError(f"algorithm {algorithm!r} repeats a term")
    return AlgorithmSpec(base=bases[0] if bases else "supervised", terms=terms)


def default_settings() -> dict[str, Any]:
    """`{method name: its settings with the declared defaults}` for every registered method."""
    return {name: method.settings() for name, method in REGISTRY.items()}


def split_flat(flat_values: dict[str, Any], names=None) -> dict[str, Any]:
    """`{"vat_epsilon": 2.0, ...}` → `{"vat": VATSettings(epsilon=2.0), ...}` for `names`
    (default: every registered method); consumes the keys it uses from `flat_values`."""
    names = REGISTRY if names is None else names
    return {n: settings_lib.from_flat(n, REGISTRY[n].settings, flat_values) for n in names}


def flat_settings(values: dict[str, Any]) -> dict[str, Any]:
    """`{"vat": VATSettings(...)}` → `{"vat_epsilon": ..., ...}`."""
    flat = {}
    for name, method_values in values.items():
        flat.update(settings_lib.flat(name, method_values))
    return flat


def setting_owners() -> dict[str, str]:
    """`{flag name: method name}` of every registered method's settings."""
    return {
        flag: name
        for name, method in REGISTRY.items()
        for flag in settings_lib.flat(name, method.settings())
    }


def settings_for(algorithm: str, keywords: dict[str, Any]) -> dict[str, Any]:
    """`keywords` without the settings of methods `algorithm` does not name; other keys
    (`preprocessing=`, ...) stay. For building models of several algorithms from one dict."""
    spec = parse_algorithm(algorithm)
    named = {spec.base, *spec.terms}
    owners = setting_owners()
    return {k: v for k, v in keywords.items() if k not in owners or owners[k] in named}


def validate_settings(values: dict[str, Any]) -> None:
    """Each method's field checks (raises `ConfigError` naming the flag)."""
    for name, method_values in values.items():
        settings_lib.validate(name, method_values)


def check_combination(
    algorithm: str,
    values: dict,
    num_classes: int,
    *,
    streamed_unlabeled: bool = False,
    batch_sizes: tuple[int, int] | None = None,
    augment: str | None = None,
) -> AlgorithmSpec:
    """Which algorithm and data combinations work: the rules every base declares by its
    `Method` fields, then each named method's own `check`.

    Args:
      algorithm: the algorithm string.
      values: `{method name: settings}` for (at least) the methods it names.
      num_classes, streamed_unlabeled, batch_sizes, augment: see `CombinationSetup`.

    Returns:
      The parsed algorithm.

    Raises:
      ConfigError: naming the flag and what is allowed.
    """
    try:
        spec = parse_algorithm(algorithm)
    except ValueError as error:
        raise settings_lib.ConfigError(f"--algorithm={algorithm}: {error}") from None
    base = REGISTRY[spec.base]
    if augment == "model" and base.augments_in_pipeline:
        raise settings_lib.ConfigError(
            f"--augment=model: {spec.base} draws its augmentations in the input pipeline"
        )
    if batch_sizes is not None:
        labeled, unlabeled = batch_sizes
        if base.equal_batches and unlabeled != labeled:
            raise settings_lib.ConfigError(
                f"--unlabeled_batch_size={unlabeled}: must equal --batch_size={labeled} for "
                f"{spec.base}"
            )
        if spec.needs_unlabeled(values) and unlabeled == 0:
            raise settings_lib.ConfigError(
                f"--unlabeled_batch_size=0: must be > 0 for --algorithm={algorithm}"
            )
    setup = CombinationSetup(num_classes, streamed_unlabeled, batch_sizes, augment)
    # A method's rules also judge its settings when they are set but it is not named (NS³L's
    # `--ns3l_selector=oracle` with `--algorithm=vat`: "needs the NS3L term").
    named = {method.name for method in spec.methods}
    changed = {n for n, v in values.items() if n in REGISTRY and v != REGISTRY[n].settings()}
    for name in sorted(named | changed):
        method = REGISTRY[name]
        if method.check is not None:
            method.check(spec, values, setup)
    return spec


def load_methods_module(name: str | None) -> None:
    """Imports `name` (e.g. `"my_lab.methods"`), whose import registers its methods; None or
    a module imported already does nothing.

    Raises:
      ConfigError: the module cannot be imported (naming `--methods_module`).
    """
    if not name:
        return
    try:
        importlib.import_module(name)
    except ImportError as error:
        raise settings_lib.ConfigError(
            f"--methods_module={name}: cannot import it ({error}); give a module importable "
            "from here (on PYTHONPATH or installed)"
        ) from None
