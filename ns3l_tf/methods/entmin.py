"""Entropy minimisation as an additive term (Grandvalet & Bengio 2005)."""

import dataclasses

from ns3l_tf.lazy import lazy
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term
from ns3l_tf.methods.registry import TERM, Method, register
from ns3l_tf.settings import non_negative, setting

losses = lazy("ns3l_tf.losses")


@dataclasses.dataclass(frozen=True)
class EntMinSettings:
    """Entropy minimisation (Grandvalet & Bengio 2005)."""

    weight: float = setting(
        0.1, "Entropy minimisation's weight.", check=non_negative(), tunable=True
    )


class EntMin:
    """`weight · mean_b −Σ_k μ_bk log μ_bk` on the probabilities the base method's consistency
    loss trains: VAT's on the adversarial inputs, the unlabeled ones otherwise.

    As in Oliver et al. (`lib/ssl_framework.py:188-192`): the entropy penalty takes the
    consistency student's logits (for VAT the adversarial output, `:254-262`) and a constant
    weight, without the consistency warm-up.

    Args:
      settings: `EntMinSettings`; `weight` ≥ 0 (0.1 with VAT in Oliver et al.), a float or a
        non-trainable `keras.Variable`.
      context: a `MethodContext` (unused: the weight is not ramped).
    """

    loss_names = ("entmin_loss",)
    metric_names = ()

    def __init__(self, settings, context):
        del context  # Oliver et al. do not ramp the entropy penalty
        self.weight = settings.weight

    def __call__(self, outputs: BaseOutputs) -> Contribution:
        if outputs.unlabeled_probs is None:
            raise ValueError("EntMin needs an unlabeled batch")
        probs = outputs.consistency_probs
        value = losses.entropy(outputs.unlabeled_probs if probs is None else probs)
        return Contribution(losses={"entmin_loss": Term(value, self.weight)})


register(Method("entmin", TERM, EntMinSettings, EntMin))
