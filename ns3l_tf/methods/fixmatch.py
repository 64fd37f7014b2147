"""FixMatch (Sohn et al. 2020) as a base method, following its reference implementation
(google-research/fixmatch `fixmatch.py`)."""

import dataclasses

from ns3l_tf.lazy import lazy
from ns3l_tf.methods.base import (
    BaseOutputs,
    Contribution,
    Term,
    forward_weak_and_strong,
    weak_and_strong_outputs,
)
from ns3l_tf.methods.registry import BASE, Method, register
from ns3l_tf.settings import non_negative, setting, unit_interval_from_zero

ops = lazy("keras.ops")
losses = lazy("ns3l_tf.losses")


@dataclasses.dataclass(frozen=True)
class FixMatchSettings:
    """FixMatch (Sohn et al. 2020)."""

    threshold: float = setting(
        0.95,
        "FixMatch's confidence threshold tau on the weak view (fixmatch.py:165).",
        check=unit_interval_from_zero,
    )
    weight: float = setting(
        1.0,
        "FixMatch's unlabeled weight lambda_u (fixmatch.py:167).",
        check=non_negative(),
        tunable=True,
    )


class FixMatch:
    """Labeled cross-entropy plus λ_u · cross-entropy of strong views to confident weak ones.

    Each unlabeled image comes as a weak view (the dataset's flip and translation) and a
    strong one (the weak view through RandAugment and Cutout, drawn by the model). The three
    batches go through the network in one pass. The additive terms see the strong view's
    probabilities as `unlabeled_probs` and the weak view's detached probabilities as
    `targets`: NS³L takes its negatives where the weak view puts less than T and trains the
    strong view's mass on them down, the same split of roles as FixMatch's own loss. Logs
    `fixmatch_mask`, the share of confident unlabeled images.

    Args:
      settings: `FixMatchSettings`: the confidence `threshold` τ (0.95) and `weight` λ_u
        (1.0; a float or a non-trainable `keras.Variable`). No ramp-up, as in the reference.
      context: a `MethodContext` (unused).
    """

    loss_names = ("sup_loss", "fixmatch_loss")
    metric_names = ("fixmatch_mask",)

    def __init__(self, settings, context):
        del context
        self.threshold = settings.threshold
        self.weight = settings.weight

    def __call__(self, model, x_labeled, y_labeled, x_unlabeled) -> BaseOutputs:
        labeled_logits, weak_probs, strong_logits = forward_weak_and_strong(
            model, x_labeled, x_unlabeled, "FixMatch"
        )
        unlabeled_loss, mask = losses.confident_cross_entropy(
            weak_probs, strong_logits, self.threshold
        )
        contribution = Contribution(
            losses={"fixmatch_loss": Term(unlabeled_loss, self.weight)},
            metrics={"fixmatch_mask": ops.mean(mask)},
        )
        return weak_and_strong_outputs(
            labeled_logits, y_labeled, weak_probs, strong_logits, contribution
        )


register(
    Method(
        "fixmatch",
        BASE,
        FixMatchSettings,
        FixMatch,
        unlabeled_views=("weak", "strong"),
        gives_second_view=False,
        augments_in_pipeline=True,  # weak views: libml/data.py's augment_mirror/augment_shift
    )
)
