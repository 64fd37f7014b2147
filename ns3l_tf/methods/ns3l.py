"""NS³L as an additive term: threshold negatives from the base method's targets."""

from keras import ops

from ns3l_tf import losses
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term


class NS3L:
    """λ₁ · NS³L on the unlabeled (or mixed) batch.

    Negatives are the classes whose target probability is below T; the targets come from the
    base method (detached predictions for supervised/VAT/Pseudo-Label, generated labels for
    MixMatch). Logs `ns3l_negatives`, the mean number of negatives per sample.

    Args:
      threshold: scalar T in (0, 1), a float or a non-trainable `keras.Variable`.
      weight: λ₁ ≥ 0, a float or a non-trainable `keras.Variable`.
      rampup: optional step → factor in [0, 1] multiplying the weight.
    """

    loss_names = ("ns3l_loss",)
    metric_names = ("ns3l_negatives",)

    def __init__(self, threshold, weight, rampup=None):
        self.threshold = threshold
        self.weight = weight
        self.rampup = rampup

    def __call__(self, outputs: BaseOutputs) -> Contribution:
        if outputs.unlabeled_probs is None:
            raise ValueError(
                "NS3L needs an unlabeled batch: feed ((x_labeled, y_labeled), x_unlabeled) "
                "batches to fit()"
            )
        negatives = losses.ns3l_negatives(outputs.targets, self.threshold)
        value = losses.negative_sampling_loss(negatives, outputs.unlabeled_probs)
        return Contribution(
            losses={"ns3l_loss": Term(value, self.weight, self.rampup)},
            metrics={"ns3l_negatives": ops.mean(ops.sum(negatives, axis=-1))},
        )
