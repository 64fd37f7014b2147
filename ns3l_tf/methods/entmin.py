"""Entropy minimisation as an additive term (Grandvalet & Bengio 2005)."""

from ns3l_tf import losses
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term


class EntMin:
    """`weight · mean_b −Σ_k μ_bk log μ_bk` on the base method's unlabeled probabilities.

    Args:
      weight: ≥ 0, a float or a non-trainable `keras.Variable` (0.1 with VAT in Oliver et al.).
      rampup: optional step → factor in [0, 1] multiplying the weight.
    """

    loss_names = ("entmin_loss",)
    metric_names = ()

    def __init__(self, weight, rampup=None):
        self.weight = weight
        self.rampup = rampup

    def __call__(self, outputs: BaseOutputs) -> Contribution:
        if outputs.unlabeled_probs is None:
            raise ValueError("EntMin needs an unlabeled batch")
        value = losses.entropy(outputs.unlabeled_probs)
        return Contribution(losses={"entmin_loss": Term(value, self.weight, self.rampup)})
