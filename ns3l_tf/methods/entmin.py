"""Entropy minimisation as an additive term (Grandvalet & Bengio 2005)."""

from ns3l_tf import losses
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term


class EntMin:
    """`weight · mean_b −Σ_k μ_bk log μ_bk` on the base method's unlabeled probabilities.

    Args:
      settings: `EntMinSettings`; `weight` ≥ 0 (0.1 with VAT in Oliver et al.), a float or a
        non-trainable `keras.Variable`.
      context: a `MethodContext`; its consistency ramp-up multiplies the weight.
    """

    loss_names = ("entmin_loss",)
    metric_names = ()

    def __init__(self, settings, context):
        self.weight = settings.weight
        self.rampup = context.consistency_rampup

    def __call__(self, outputs: BaseOutputs) -> Contribution:
        if outputs.unlabeled_probs is None:
            raise ValueError("EntMin needs an unlabeled batch")
        value = losses.entropy(outputs.unlabeled_probs)
        return Contribution(losses={"entmin_loss": Term(value, self.weight, self.rampup)})
