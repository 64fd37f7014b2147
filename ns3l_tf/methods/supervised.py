"""The supervised base method: cross-entropy on the labeled batch."""

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

ops = lazy("keras.ops")
losses = lazy("ns3l_tf.losses")


@dataclasses.dataclass(frozen=True)
class SupervisedSettings:
    """The supervised base method has no settings."""


class Supervised:
    """Labeled cross-entropy; also forwards the unlabeled batch when an additive term needs it.

    With an unlabeled batch, labeled and unlabeled images go through the network in *one*
    forward pass, so BatchNorm normalises with, and updates its moving statistics from, the
    union of both batches once per step (as in Oliver et al.'s testbed). The unlabeled
    targets are the model's own detached predictions.
    """

    loss_names = ("sup_loss",)
    metric_names = ()

    def __init__(self, settings=None, context=None):
        del settings, context  # no settings

    def __call__(self, model, x_labeled, y_labeled, x_unlabeled=None) -> BaseOutputs:
        """Runs the forward pass(es).

        Args:
          model: the `SSLModel`; `model.classify(inputs, training=True)` → float32 logits.
          x_labeled: `(B_l, H, W, C)` preprocessed labeled images.
          y_labeled: `(B_l,)` integer labels.
          x_unlabeled: `(B_u, H, W, C)` preprocessed unlabeled images, or None.
        """
        second_view = None
        if x_unlabeled is None:
            labeled_logits = model.classify(x_labeled, training=True)
            unlabeled_probs = targets = None
        else:
            labeled_logits, unlabeled_logits = forward_labeled_and_unlabeled(
                model, x_labeled, x_unlabeled
            )
            unlabeled_probs = ops.softmax(unlabeled_logits, axis=-1)
            targets = ops.stop_gradient(unlabeled_probs)
            second_view = second_view_of(model, x_labeled, x_unlabeled)
        sup_loss = losses.cross_entropy(y_labeled, labeled_logits)
        return BaseOutputs(
            labeled_logits=labeled_logits,
            labels=y_labeled,
            unlabeled_probs=unlabeled_probs,
            targets=targets,
            contribution=Contribution(losses={"sup_loss": Term(sup_loss)}),
            second_view=second_view,
        )


register(
    Method(
        "supervised",
        BASE,
        SupervisedSettings,
        Supervised,
        uses_unlabeled=False,  # forwards unlabeled images only when a term needs them
    )
)
