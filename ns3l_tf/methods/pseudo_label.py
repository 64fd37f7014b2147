"""Pseudo-Label (Lee 2013) as a base method, following Oliver et al. (2018)."""

import dataclasses

from ns3l_tf.lazy import lazy
from ns3l_tf.methods.base import (
    BaseOutputs,
    Contribution,
    Term,
    forward_labeled_and_unlabeled,
    second_view_of,
)
from ns3l_tf.methods.registry import BASE, Method, register
from ns3l_tf.settings import non_negative, setting, unit_interval_from_zero

ops = lazy("keras.ops")
losses = lazy("ns3l_tf.losses")


@dataclasses.dataclass(frozen=True)
class PseudoLabelSettings:
    """Pseudo-Label (Lee 2013) as in Oliver et al. (2018)."""

    threshold: float = setting(
        0.95, "Pseudo-Label's confidence threshold.", check=unit_interval_from_zero
    )
    weight: float = setting(1.0, "Pseudo-Label's weight.", check=non_negative(), tunable=True)


class PseudoLabel:
    """Labeled cross-entropy plus cross-entropy to confident predictions on unlabeled data.

    Unlabeled samples whose detached prediction exceeds `threshold` are trained towards its
    argmax; the loss is averaged over the whole unlabeled batch. Logs `pl_mask`, the fraction
    of unlabeled samples above the threshold.

    Args:
      settings: `PseudoLabelSettings`: the confidence `threshold` in (0, 1) (0.95) and the
        term's `weight` (1.0), a float or a non-trainable `keras.Variable`.
      context: a `MethodContext`; its consistency ramp-up multiplies the weight.
    """

    loss_names = ("sup_loss", "pl_loss")
    metric_names = ("pl_mask",)

    def __init__(self, settings, context):
        self.threshold = settings.threshold
        self.weight = settings.weight
        self.rampup = context.consistency_rampup

    def __call__(self, model, x_labeled, y_labeled, x_unlabeled) -> BaseOutputs:
        labeled_logits, unlabeled_logits = forward_labeled_and_unlabeled(
            model, x_labeled, x_unlabeled
        )
        unlabeled_probs = ops.softmax(unlabeled_logits, axis=-1)
        targets = ops.stop_gradient(unlabeled_probs)
        pl_loss, mask = losses.pseudo_label_loss(targets, unlabeled_logits, self.threshold)
        return BaseOutputs(
            labeled_logits=labeled_logits,
            labels=y_labeled,
            unlabeled_probs=unlabeled_probs,
            targets=targets,
            contribution=Contribution(
                losses={
                    "sup_loss": Term(losses.cross_entropy(y_labeled, labeled_logits)),
                    "pl_loss": Term(pl_loss, self.weight, self.rampup),
                },
                metrics={"pl_mask": ops.mean(mask)},
            ),
            second_view=second_view_of(model, x_labeled, x_unlabeled),
        )


register(Method("pseudo_label", BASE, PseudoLabelSettings, PseudoLabel))
