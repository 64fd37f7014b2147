"""NS³L as an additive term: negatives from a selector, loss on the unlabeled probabilities."""

from keras import ops

from ns3l_tf import losses, negatives
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term


class NS3L:
    """λ₁ · NS³L on the unlabeled (or mixed) batch.

    The selector chooses each row's negatives, by default the classes whose target probability
    is below T; the targets come from the base method (detached predictions for
    supervised/VAT/Pseudo-Label, generated labels for MixMatch). Logs `ns3l_negatives`, the
    mean number of negatives per sample, and, when the pipeline carries the hidden true labels
    of the unlabeled images, `ns3l_negative_error`: the percentage of samples whose negatives
    include their true class.

    Args:
      selector: a `negatives.NegativeSelector`.
      weight: λ₁ ≥ 0, a float or a non-trainable `keras.Variable`.
      rampup: optional step → factor in [0, 1] multiplying the weight.
    """

    loss_names = ("ns3l_loss",)
    metric_names = ("ns3l_negatives", "ns3l_negative_error")

    def __init__(self, selector: negatives.NegativeSelector, weight, rampup=None):
        self.selector = selector
        self.weight = weight
        self.rampup = rampup

    def __call__(self, outputs: BaseOutputs) -> Contribution:
        if outputs.unlabeled_probs is None:
            raise ValueError(
                "NS3L needs an unlabeled batch: feed ((x_labeled, y_labeled), x_unlabeled) "
                "batches to fit()"
            )
        mask = self.selector(outputs.targets, outputs.unlabeled_side)
        metrics = {"ns3l_negatives": ops.mean(ops.sum(mask, axis=-1))}
        if "labels" in outputs.unlabeled_side:
            metrics["ns3l_negative_error"] = negatives.negative_error(
                mask, outputs.unlabeled_side["labels"]
            )
        value = losses.negative_sampling_loss(mask, outputs.unlabeled_probs)
        return Contribution(
            losses={"ns3l_loss": Term(value, self.weight, self.rampup)}, metrics=metrics
        )
