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
      settings: `NS3LSettings`: `threshold` T (a float or a non-trainable `keras.Variable`;
        None is resolved to 0.4 / K by the model), `weight` λ₁ ≥ 0 (float or Variable),
        `selector` and `num_negatives` P (see `ns3l_tf.negatives`).
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
        self.rampup = context.consistency_rampup

    @property
    def extras_read(self) -> tuple[str, ...]:
        """Per-image extras of the unlabeled batch this term reads: the hidden `labels` (for
        the negative-error diagnostic; `oracle` needs them) and what the selector needs."""
        return ("labels", *(k for k in self.selector.required_extras if k != "labels"))

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
        value = losses.negative_sampling_loss(mask, outputs.unlabeled_probs)
        return Contribution(
            losses={"ns3l_loss": Term(value, self.weight, self.rampup)}, metrics=metrics
        )
