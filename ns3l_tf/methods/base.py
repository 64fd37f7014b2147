"""The two structures that every semi-supervised method exchanges with `SSLModel.train_step`.

A *base method* (supervised, Pseudo-Label, VAT, MixMatch) decides what goes through the
network and returns `BaseOutputs`. An *additive term* (NS³L, EntMin) only reads those
outputs and returns a `Contribution`. The train step weights and sums every named loss.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from ns3l_tf.lazy import lazy

ops = lazy("keras.ops")
layers = lazy("ns3l_tf.models.layers")
losses = lazy("ns3l_tf.losses")

Tensor = Any  # a backend tensor; keras.ops functions accept and return it


@dataclasses.dataclass(frozen=True)
class Term:
    """One named loss term: its unweighted value, its weight and an optional ramp-up.

    Its share of the total loss is `weight · rampup(step)` times `value`.
    """

    value: Tensor
    weight: Any = 1.0  # a float or a non-trainable keras.Variable (callbacks assign to it)
    rampup: Callable[[Tensor], Tensor] | None = None  # step → factor in [0, 1]

    def weighted(self, step) -> Tensor:
        """`weight · rampup(step) · value` as float32."""
        weight = ops.cast(self.weight, "float32")
        if self.rampup is not None:
            weight = weight * self.rampup(step)
        return weight * self.value


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
      second_view: `() → (B_u, K)`: the unlabeled probabilities recomputed by a second
        training-mode pass over the same inputs as the first (a fresh draw of the model's
        augmentation), BatchNorm statistics frozen; None where rows are mixtures (MixMatch).
      consistency_probs: `(B_u, K)` probabilities that the base method's consistency loss
        trains (VAT's on the adversarial inputs), for entropy minimisation as in Oliver et
        al. (`lib/ssl_framework.py:188-192`); None: `unlabeled_probs`.
      unlabeled_extras: per-image tensors the input pipeline carried with the unlabeled
        images (`labels`, their hidden true labels; `nn_candidates`, precomputed
        nearest-neighbour candidate classes), attached by the train step only when row b of
        `unlabeled_probs` is unlabeled image b (not for MixMatch's mixed rows); empty
        otherwise.
    """

    labeled_logits: Tensor
    labels: Tensor
    unlabeled_probs: Tensor | None
    targets: Tensor | None
    contribution: Contribution
    second_view: Callable[[], Tensor] | None = None
    consistency_probs: Tensor | None = None
    unlabeled_extras: dict[str, Tensor] = dataclasses.field(default_factory=dict)


def forward_labeled_and_unlabeled(model, x_labeled, x_unlabeled):
    """One training-mode pass over `concat(x_l, x_u)`: BatchNorm sees (and updates from) both.

    Args:
      model: the `SSLModel`.
      x_labeled, x_unlabeled: preprocessed `(B_l, H, W, C)` and `(B_u, H, W, C)` inputs.

    Returns:
      `(labeled_logits (B_l, K), unlabeled_logits (B_u, K))`, float32.
    """
    num_labeled = ops.shape(x_labeled)[0]
    logits = model.classify(ops.concatenate([x_labeled, x_unlabeled], axis=0), training=True)
    return logits[:num_labeled], logits[num_labeled:]


def second_view_of(model, x_labeled, x_unlabeled) -> Callable[[], Tensor]:
    """`BaseOutputs.second_view` for bases whose pass is `forward_labeled_and_unlabeled`.

    As in the NS³L authors' loss (johnchenresearch/NS3L `ns3l.py:21-27`), the second pass
    runs over the whole labeled + unlabeled batch (so BatchNorm normalises with the same
    composition of batch) without updating the moving statistics; the labeled rows are
    dropped.
    """

    def view():
        with layers.frozen_batchnorm_statistics():
            _, logits = forward_labeled_and_unlabeled(model, x_labeled, x_unlabeled)
        return ops.softmax(logits, axis=-1)

    return view


def forward_weak_and_strong(model, x_labeled, x_unlabeled, method: str):
    """One training-mode pass over `concat(x_l, weak, strong)`, as FixMatch's reference
    (google-research/fixmatch `fixmatch.py:99-101`: one classifier call over the interleaved
    batch, so BatchNorm normalises with and updates from all three) and USB's FlexMatch
    (`flexmatch.py:64-68`).

    Args:
      model: the `SSLModel`.
      x_labeled: `(B_l, H, W, C)` preprocessed labeled images.
      x_unlabeled: `(B_u, 2, H, W, C)` preprocessed views, the weak one first.
      method: the caller's name, for the error.

    Returns:
      `(labeled_logits (B_l, K), weak_probs (B_u, K), strong_logits (B_u, K))`, float32; the
      weak view's probabilities detached.

    Raises:
      ValueError: `x_unlabeled` is not two views per image.
    """
    if len(x_unlabeled.shape) != 5 or x_unlabeled.shape[1] != 2:
        raise ValueError(
            f"{method} needs unlabeled batches of shape (B, 2, H, W, C): a weak and a strong "
            "view of each image"
        )
    num_labeled, num_unlabeled = x_labeled.shape[0], x_unlabeled.shape[0]
    inputs = ops.concatenate([x_labeled, x_unlabeled[:, 0], x_unlabeled[:, 1]], axis=0)
    logits = model.classify(inputs, training=True)
    weak_end = num_labeled + num_unlabeled
    weak_probs = ops.stop_gradient(ops.softmax(logits[num_labeled:weak_end], axis=-1))
    return logits[:num_labeled], weak_probs, logits[weak_end:]


def weak_and_strong_outputs(
    labeled_logits, y_labeled, weak_probs, strong_logits, contribution: Contribution
) -> BaseOutputs:
    """`BaseOutputs` of a base trained on weak and strong views (FixMatch, FlexMatch): the
    terms see the strong view's probabilities, and the weak view's as their targets; the
    labeled cross-entropy joins `contribution`."""
    sup_loss = Term(losses.cross_entropy(y_labeled, labeled_logits))
    return BaseOutputs(
        labeled_logits=labeled_logits,
        labels=y_labeled,
        unlabeled_probs=ops.softmax(strong_logits, axis=-1),
        targets=weak_probs,
        contribution=Contribution(
            losses={"sup_loss": sup_loss, **contribution.losses}, metrics=contribution.metrics
        ),
    )
