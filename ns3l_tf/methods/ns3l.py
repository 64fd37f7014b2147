"""NS³L as an additive term: negatives from a selector, loss on the unlabeled probabilities."""

from keras import ops

from ns3l_tf import losses, negatives
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term


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
