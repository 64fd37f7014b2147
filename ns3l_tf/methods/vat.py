"""Virtual adversarial training (Miyato et al. 2017) as a base method, as in Oliver et al."""

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
from ns3l_tf.settings import non_negative, positive, setting

keras = lazy("keras")
ops = lazy("keras.ops")
backend = lazy("ns3l_tf.backend")
losses = lazy("ns3l_tf.losses")
layers = lazy("ns3l_tf.models.layers")
precision = lazy("ns3l_tf.models.precision")


@dataclasses.dataclass(frozen=True)
class VATSettings:
    """Virtual adversarial training (Miyato et al. 2017)."""

    epsilon: float = setting(
        6.0, "VAT's perturbation norm per image (6 CIFAR, 1 SVHN).", check=positive
    )
    xi: float = setting(1e-6, "VAT's finite-difference step.", check=positive)
    weight: float = setting(0.3, "VAT's weight lambda_2.", check=non_negative(), tunable=True)


def unit_vectors(d):
    """Scales each sample of `d` `(B, ...)` to L2 norm 1 over all its non-batch entries.

    As in the reference VAT code, each sample is first divided by `1e-12 + max |d|`, which
    keeps the squares from underflowing; samples with `max |d|` far below 1e-12 stay tiny.
    """
    axes = list(range(1, len(d.shape)))
    d = d / (1e-12 + ops.max(ops.abs(d), axis=axes, keepdims=True))  # avoids underflow
    return d / ops.sqrt(1e-6 + ops.sum(ops.square(d), axis=axes, keepdims=True))


class VAT:
    """Labeled cross-entropy plus `KL(p(x_u + r_adv) ‖ p(x_u))` on the unlabeled batch.

    `r_adv = ε · g / ‖g‖₂` with `g = ∇_r KL(p ‖ p(x_u + r))` at `r = ξ · unit(N(0, I))` (one
    power iteration), per sample; p is the detached clean prediction. As in Oliver et al.'s
    testbed, the loss puts the adversarial prediction first (its `forward_kl` with the
    adversarial output as student: `lib/ssl_framework.py:178-182, 254-262`,
    `lib/ssl_utils.py:100-101`; Miyato et al. use the reverse), and each pass draws its own
    augmentation when the model augments inside (`classify`); r is added before it, in
    preprocessed units. The perturbed passes run in training mode inside
    `frozen_batchnorm_statistics()`: they normalise with batch statistics but leave the
    moving statistics to the clean pass. The perturbation math is float32, and so is the
    power-iteration pass of a mixed-precision backbone (`precision.full_precision()`):
    ξ = 1e-6 would vanish in bfloat16 or float16.

    Args:
      settings: `VATSettings`: ε `epsilon`, the adversarial perturbation's L2 norm per image
        (6.0 CIFAR, 1.0 SVHN); ξ `xi`, the finite-difference step (1e-6); the term's `weight`
        λ₂ (0.3), a float or a non-trainable `keras.Variable`.
      context: a `MethodContext`: its seed generator draws the random directions, its
        consistency ramp-up multiplies the weight.
    """

    loss_names = ("sup_loss", "vat_loss")
    metric_names = ()

    def __init__(self, settings, context):
        self.epsilon = settings.epsilon
        self.xi = settings.xi
        self.weight = settings.weight
        self.seed_generator = context.seed_generator
        self.rampup = context.consistency_rampup

    def adversarial_perturbation(self, model, x_unlabeled, clean_logits):
        """`r_adv` `(B_u, H, W, C)`: the direction that raises the KL most, at norm ε."""
        clean_logits = ops.stop_gradient(clean_logits)
        d = keras.random.normal(ops.shape(x_unlabeled), seed=self.seed_generator)
        r = self.xi * unit_vectors(d)

        def divergence(r):
            with layers.frozen_batchnorm_statistics(), precision.full_precision():
                perturbed_logits = model.classify(x_unlabeled + r, training=True)
            return losses.kl_divergence(clean_logits, perturbed_logits)

        gradient = ops.stop_gradient(backend.input_gradient(divergence, r))
        return self.epsilon * unit_vectors(gradient)

    def __call__(self, model, x_labeled, y_labeled, x_unlabeled) -> BaseOutputs:
        if not precision.switches_to_float32(model.backbone):
            raise ValueError(
                f"VAT's power iteration needs float32, but the backbone computes in "
                f"{model.backbone.compute_dtype} (its xi={self.xi} perturbation would vanish): "
                "build it under ns3l_tf.models.precision.backbone_policy(...)"
            )
        labeled_logits, unlabeled_logits = forward_labeled_and_unlabeled(
            model, x_labeled, x_unlabeled
        )
        r_adv = self.adversarial_perturbation(model, x_unlabeled, unlabeled_logits)
        with layers.frozen_batchnorm_statistics():
            adversarial_logits = model.classify(x_unlabeled + r_adv, training=True)
        vat_loss = losses.reverse_kl_divergence(unlabeled_logits, adversarial_logits)
        unlabeled_probs = ops.softmax(unlabeled_logits, axis=-1)
        return BaseOutputs(
            labeled_logits=labeled_logits,
            labels=y_labeled,
            unlabeled_probs=unlabeled_probs,
            targets=ops.stop_gradient(unlabeled_probs),
            contribution=Contribution(
                losses={
                    "sup_loss": Term(losses.cross_entropy(y_labeled, labeled_logits)),
                    "vat_loss": Term(vat_loss, self.weight, self.rampup),
                }
            ),
            second_view=second_view_of(model, x_labeled, x_unlabeled),
            consistency_probs=ops.softmax(adversarial_logits, axis=-1),
        )


register(Method("vat", BASE, VATSettings, VAT))
