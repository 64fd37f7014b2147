"""MixMatch (Berthelot et al. 2019) as a base method, following its reference implementation."""

import dataclasses
import functools

from ns3l_tf.lazy import lazy
from ns3l_tf.methods.base import BaseOutputs, Contribution, Term
from ns3l_tf.methods.registry import BASE, Method, register
from ns3l_tf.settings import non_negative, positive, setting

keras = lazy("keras")
ops = lazy("keras.ops")
losses = lazy("ns3l_tf.losses")
layers = lazy("ns3l_tf.models.layers")
schedules = lazy("ns3l_tf.schedules")


@dataclasses.dataclass(frozen=True)
class MixMatchSettings:
    """MixMatch (Berthelot et al. 2019)."""

    weight: float = setting(
        75.0, "MixMatch's unlabeled weight lambda_3.", check=non_negative(), tunable=True
    )
    temperature: float = setting(0.5, "MixMatch's sharpening temperature.", check=positive)
    alpha: float = setting(0.75, "MixMatch's Beta(alpha, alpha) MixUp parameter.", check=positive)
    rampup_steps: int = setting(
        16384, "Steps of the linear warm-up of lambda_3.", check=non_negative()
    )


def interleave(chunks):
    """Swaps slice i of chunk 0 with slice i of chunk i, for i = 1 … n−1 (n equal slices).

    Every chunk then mixes labeled and unlabeled samples, so BatchNorm's batch statistics of
    any one chunk represent the whole batch. Applying it twice restores the input.

    Args:
      chunks: n tensors with the same static first dimension.
    """
    n = len(chunks)
    size = chunks[0].shape[0]
    bounds = [round(i * size / n) for i in range(n + 1)]
    sliced = [[c[bounds[j] : bounds[j + 1]] for j in range(n)] for c in chunks]
    for i in range(1, n):
        sliced[0][i], sliced[i][i] = sliced[i][i], sliced[0][i]
    return [ops.concatenate(parts, axis=0) for parts in sliced]


def symmetric_beta(n: int, alpha: float, seed_generator, proposals: int = 16):
    """`(n,)` draws from Beta(α, α) using only uniforms, so the step compiles with XLA.

    Jöhnk's method: with `X = U₁^(1/α)`, `Y = U₂^(1/α)`, the ratio `X / (X + Y)` given
    `X + Y ≤ 1` is Beta(α, α)-distributed. Each sample takes its first accepted proposal of
    `proposals` (acceptance is 64% at α = 0.75, so all 16 fail with probability 1e-7; then
    0.5). `keras.random.beta` would need a Gamma sampler that XLA cannot compile.
    """
    u = keras.random.uniform((2, proposals, n), minval=1e-7, maxval=1.0, seed=seed_generator)
    x, y = ops.power(u[0], 1.0 / alpha), ops.power(u[1], 1.0 / alpha)
    accepted = (x + y) <= 1.0
    ratio = x / ops.maximum(x + y, 1e-30)
    first = ops.argmax(ops.cast(accepted, "int32"), axis=0)  # first accepted proposal
    chosen = ops.take_along_axis(ratio, first[None, :], axis=0)[0]
    return ops.where(ops.any(accepted, axis=0), chosen, 0.5)


def mixup(inputs, targets, alpha, seed_generator):
    """MixUp with a partner from a shuffle of the same batch and `λ′ = max(λ, 1 − λ)`.

    Args:
      inputs: `(N, H, W, C)` images, N static.
      targets: `(N, K)` label distributions.
      alpha: λ ~ Beta(α, α), drawn per sample.
      seed_generator: a `keras.random.SeedGenerator`.

    Returns:
      `(mixed_inputs, mixed_targets, lam)`; `lam` `(N,)` ≥ 0.5, so every mixed sample stays
      closer to its own origin.
    """
    n = inputs.shape[0]
    lam = symmetric_beta(n, alpha, seed_generator)
    lam = ops.maximum(lam, 1.0 - lam)
    partner = ops.argsort(keras.random.uniform((n,), seed=seed_generator))  # a permutation
    lam_x = ops.reshape(lam, (-1, 1, 1, 1))
    mixed_inputs = lam_x * inputs + (1.0 - lam_x) * ops.take(inputs, partner, axis=0)
    lam_y = ops.reshape(lam, (-1, 1))
    mixed_targets = lam_y * targets + (1.0 - lam_y) * ops.take(targets, partner, axis=0)
    return mixed_inputs, mixed_targets, lam


class MixMatch:
    """Cross-entropy on mixed labeled X′ plus λ₃ · squared error on mixed unlabeled U′.

    Each step: guess labels as the sharpened mean prediction over the A augmentations of each
    unlabeled image; MixUp the union of labeled (one-hot) and unlabeled (guessed) samples with
    a shuffle of itself; interleave the A + 1 chunks and forward them. Only the first chunk's
    pass updates BatchNorm's moving statistics (as the reference collects one pass's update
    ops); the guessing passes and the other chunks run with frozen statistics. The additive
    terms see X′ ∪ U′: `targets` are the mixed labels and guesses, `unlabeled_probs` the
    model's probabilities on the mixed inputs.

    Args:
      settings: `MixMatchSettings`: sharpening `temperature` (0.5), MixUp's Beta(α, α)
        `alpha` (0.75), λ₃ `weight` (75 CIFAR-10, 250 SVHN, 50 STL-10, 150 CIFAR-100; a float
        or a Variable), ramped up linearly over `rampup_steps` (16,384 in the reference).
      context: a `MethodContext` (K and the seed generator of the MixUp draws).
    """

    loss_names = ("sup_loss", "mixmatch_loss")
    metric_names = ()

    def __init__(self, settings, context):
        self.num_classes = context.num_classes
        self.temperature = settings.temperature
        self.alpha = settings.alpha
        self.weight = settings.weight
        self.seed_generator = context.seed_generator
        self.rampup = functools.partial(schedules.linear_rampup, rampup_steps=settings.rampup_steps)

    def guess_labels(self, model, x_unlabeled):
        """`(B, A, H, W, C)` augmentations → `(B, K)` sharpened mean predictions (detached).

        One pass per augmentation, so BatchNorm normalises each with its own batch of B, as
        the reference's `guess_label` does (google-research/mixmatch `mixmatch.py`:
        `[classifier(yi, training=True) for yi in y]`).
        """
        augmentations = x_unlabeled.shape[1]
        with layers.frozen_batchnorm_statistics():
            logits = [
                model.classify(x_unlabeled[:, k], training=True) for k in range(augmentations)
            ]
        probs = ops.softmax(ops.stack(logits, axis=1), axis=-1)
        return ops.stop_gradient(losses.sharpen(ops.mean(probs, axis=1), self.temperature))

    def __call__(self, model, x_labeled, y_labeled, x_unlabeled) -> BaseOutputs:
        if len(x_unlabeled.shape) != 5:
            raise ValueError(
                "MixMatch needs unlabeled batches of shape (B, augmentations, H, W, C): "
                "build the pipeline with unlabeled_augmentations=2"
            )
        batch, augmentations = x_labeled.shape[0], x_unlabeled.shape[1]
        if x_unlabeled.shape[0] != batch:
            raise ValueError("MixMatch needs equal labeled and unlabeled batch sizes")
        guesses = self.guess_labels(model, x_unlabeled)
        # Û: augmentation-major, all images' first augmentation, then all the second, ...
        unlabeled = ops.transpose(x_unlabeled, (1, 0, 2, 3, 4))
        unlabeled = ops.reshape(unlabeled, (augmentations * batch, *x_labeled.shape[1:]))
        inputs = ops.concatenate([x_labeled, unlabeled], axis=0)
        targets = ops.concatenate(
            [ops.one_hot(y_labeled, self.num_classes), ops.tile(guesses, (augmentations, 1))],
            axis=0,
        )
        mixed_inputs, mixed_targets, _ = mixup(inputs, targets, self.alpha, self.seed_generator)
        mixed_targets = ops.stop_gradient(mixed_targets)

        chunks = interleave(ops.split(mixed_inputs, augmentations + 1, axis=0))
        logits = [model.classify(chunks[0], training=True)]
        with layers.frozen_batchnorm_statistics():
            logits += [model.classify(chunk, training=True) for chunk in chunks[1:]]
        logits = ops.concatenate(interleave(logits), axis=0)  # back in mixed order

        labeled_logits = logits[:batch]
        probs = ops.softmax(logits, axis=-1)
        sup_loss = losses.soft_cross_entropy(mixed_targets[:batch], labeled_logits)
        unlabeled_loss = losses.squared_error(mixed_targets[batch:], probs[batch:])
        return BaseOutputs(
            labeled_logits=labeled_logits,
            labels=y_labeled,  # λ′ ≥ 0.5: a mixed labeled sample keeps its own class
            unlabeled_probs=probs,
            targets=mixed_targets,
            contribution=Contribution(
                losses={
                    "sup_loss": Term(sup_loss),
                    "mixmatch_loss": Term(unlabeled_loss, self.weight, self.rampup),
                }
            ),
        )


register(
    Method(
        "mixmatch",
        BASE,
        MixMatchSettings,
        MixMatch,
        rows_are_images=False,
        gives_second_view=False,
        unlabeled_views=("weak", "weak"),
        equal_batches=True,
        augments_in_pipeline=True,  # libml/data.py:169-170, data_pair.py:25-32
    )
)
