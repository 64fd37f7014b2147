"""The two structures that every semi-supervised method exchanges with `SSLModel.train_step`.

A *base method* (supervised, later Pseudo-Label, VAT, MixMatch) decides what goes through the
network and returns `BaseOutputs`. An *additive term* (NS³L, later EntMin) only reads those
outputs and returns a `Contribution`. The train step weights and sums every named loss.
"""

import dataclasses
from typing import Any

Tensor = Any  # a backend tensor; keras.ops functions accept and return it


@dataclasses.dataclass(frozen=True)
class Term:
    """One named loss term: its unweighted scalar value and its weight in the total."""

    value: Tensor
    weight: Any = 1.0  # a float or a non-trainable keras.Variable (schedules assign to it)


@dataclasses.dataclass(frozen=True)
class Contribution:
    """Named loss terms (summed into the total) and named diagnostics (logged only)."""

    losses: dict[str, Term] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Tensor] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class BaseOutputs:
    """What a base method computed on one training batch.

    Attributes:
      labeled_logits: `(B_l, K)` logits on the labeled batch (for accuracy).
      labels: `(B_l,)` integer labels of the labeled batch.
      unlabeled_probs: `(B_u, K)` model probabilities on the unlabeled (or mixed) inputs,
        differentiable; None when the method did not forward unlabeled data.
      targets: `(B_u, K)` target distributions the additive terms choose negatives from
        (detached); None with `unlabeled_probs`.
      contribution: the base method's own loss terms and diagnostics.
    """

    labeled_logits: Tensor
    labels: Tensor
    unlabeled_probs: Tensor | None
    targets: Tensor | None
    contribution: Contribution
