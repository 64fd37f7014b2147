"""Loss functions of NS³L and the semi-supervised methods, as pure `keras.ops` code.

Every function takes probability tensors of shape `(batch, classes)` and returns a scalar (the
mean over the batch), so the same code runs on any Keras backend. Targets that must not be
differentiated (negatives masks, pseudo-labels) go through `ops.stop_gradient` here, not at the
call site, so a caller cannot forget it.
"""

from keras import ops

# Lower clip of `1 - Σ_negatives μ` before the log, as in the authors' implementation:
# caps a single sample's loss at -log(1e-8) ≈ 18.42 when all its mass sits on negatives.
NEGATIVE_MASS_EPSILON = 1e-8


def ns3l_negatives(target_probs, threshold):
    """Threshold negatives: classes whose target probability is below `threshold`.

    Args:
      target_probs: `(batch, classes)` target distributions (the model's own detached
        predictions, or MixMatch's generated labels). Never differentiated.
      threshold: scalar T in (0, 1); the paper uses 0.4 / classes (0.04 for 10 classes).

    Returns:
      `(batch, classes)` float mask, 1.0 where the class is a negative of the sample.
    """
    target_probs = ops.stop_gradient(target_probs)
    threshold = ops.cast(threshold, target_probs.dtype)
    return ops.cast(ops.less(target_probs, threshold), target_probs.dtype)


def negative_sampling_loss(negatives, probs):
    """Mean over the batch of `-log(1 - Σ_k negatives[b, k] · probs[b, k])`.

    The likelihood that each sample's true class is *not* among its negatives. The mask is
    detached, so gradients flow only into `probs`. `1 - Σ` is clipped to `[1e-8, 1]`; where all
    of a sample's mass sits on its negatives the loss is `-log(1e-8)` and its gradient is 0.

    Args:
      negatives: `(batch, classes)` 0/1 mask from any negative selector.
      probs: `(batch, classes)` model probabilities μ (softmax outputs), differentiated.

    Returns:
      Scalar float loss in nats, in `[0, 18.42]`.
    """
    negatives = ops.stop_gradient(ops.cast(negatives, probs.dtype))
    negative_mass = ops.sum(negatives * probs, axis=-1)
    kept_mass = ops.clip(1.0 - negative_mass, NEGATIVE_MASS_EPSILON, 1.0)
    return ops.mean(-ops.log(kept_mass))


def ns3l_loss(target_probs, probs, threshold):
    """The NS³L loss with threshold negatives (Algorithm 1 of the paper).

    `mean_b -log(clip(1 - Σ_k [target_probs[b, k] < T] · probs[b, k], 1e-8, 1))`.

    Args:
      target_probs: `(batch, classes)` distributions that choose the negatives (no gradient).
      probs: `(batch, classes)` model probabilities on the same samples.
      threshold: scalar T in (0, 1).

    Returns:
      Scalar float loss in nats.

    Example:
      p = np.array([[0.7, 0.28, 0.02]], "float32")
      ns3l_loss(p, p, threshold=0.05)  # = -log(1 - 0.02) ≈ 0.0202: one negative, class 2
    """
    return negative_sampling_loss(ns3l_negatives(target_probs, threshold), probs)


def cross_entropy(labels, logits):
    """Mean sparse categorical cross-entropy.

    Args:
      labels: `(batch,)` integer class ids.
      logits: `(batch, classes)` unnormalised scores.

    Returns:
      Scalar float loss in nats. The functional form does no replica scaling (the caller owns
      it), unlike a `keras.losses.Loss` object.
    """
    per_example = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return ops.mean(per_example)
