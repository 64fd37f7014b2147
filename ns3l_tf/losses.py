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


def entropy(probs):
    """Mean Shannon entropy `mean_b −Σ_k μ_bk log μ_bk` in nats (entropy minimisation).

    Args:
      probs: `(batch, classes)` probabilities, differentiated.

    Returns:
      Scalar in `[0, log K]`; 0 log 0 is taken as 0.
    """
    log_probs = ops.log(ops.clip(probs, 1e-12, 1.0))
    return ops.mean(-ops.sum(probs * log_probs, axis=-1))


def kl_divergence(target_logits, logits):
    """Mean `KL(softmax(target_logits) ‖ softmax(logits))` in nats; the target is detached.

    Computed from logits with log-softmax, so it stays finite for confident predictions.

    Args:
      target_logits: `(batch, classes)` logits of the reference distribution p (no gradient).
      logits: `(batch, classes)` logits of the compared distribution.
    """
    target_log_probs = ops.log_softmax(ops.stop_gradient(target_logits), axis=-1)
    log_probs = ops.log_softmax(logits, axis=-1)
    return ops.mean(ops.sum(ops.exp(target_log_probs) * (target_log_probs - log_probs), axis=-1))


def reverse_kl_divergence(target_logits, logits):
    """Mean `KL(softmax(logits) ‖ softmax(target_logits))` in nats; the target is detached.

    The model's distribution comes first: Oliver et al.'s VAT loss (`forward_kl` of the
    adversarial output against the clean one). Gradients flow through both of its factors.

    Args:
      target_logits: `(batch, classes)` logits of the reference distribution (no gradient).
      logits: `(batch, classes)` logits of the model's distribution.
    """
    target_log_probs = ops.log_softmax(ops.stop_gradient(target_logits), axis=-1)
    log_probs = ops.log_softmax(logits, axis=-1)
    return ops.mean(ops.sum(ops.exp(log_probs) * (log_probs - target_log_probs), axis=-1))


def soft_cross_entropy(target_probs, logits):
    """Mean cross-entropy `−Σ_k q_bk log softmax(z)_bk` against soft targets q (detached)."""
    target_probs = ops.stop_gradient(target_probs)
    return ops.mean(-ops.sum(target_probs * ops.log_softmax(logits, axis=-1), axis=-1))


def pseudo_label_loss(target_probs, logits, threshold):
    """Pseudo-Label: cross-entropy to `argmax q` for samples with `max q > threshold`.

    Args:
      target_probs: `(batch, classes)` detached predictions that choose the pseudo-labels.
      logits: `(batch, classes)` logits trained towards them.
      threshold: confidence in (0, 1) (0.95 in Oliver et al.).

    Returns:
      `(loss, mask)`: the scalar mean over the whole batch (unconfident samples add 0) and the
      `(batch,)` float 0/1 mask of confident samples.
    """
    target_probs = ops.stop_gradient(target_probs)
    mask = ops.cast(ops.max(target_probs, axis=-1) > threshold, logits.dtype)
    labels = ops.argmax(target_probs, axis=-1)
    per_example = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
    return ops.mean(mask * per_example), mask


def sharpen(probs, temperature):
    """MixMatch's temperature sharpening `p^(1/T) / Σ_k p_k^(1/T)` along the last axis."""
    powered = ops.power(probs, 1.0 / temperature)
    return powered / ops.sum(powered, axis=-1, keepdims=True)


def squared_error(target_probs, probs):
    """MixMatch's L_U: `mean_{b,k} (q_bk − μ_bk)²` (divided by K too); q detached."""
    return ops.mean(ops.square(ops.stop_gradient(target_probs) - probs))


def confident_cross_entropy(weak_probs, strong_logits, threshold):
    """FixMatch's unlabeled loss: cross-entropy of the strong view to the weak view's argmax
    where its maximum probability is at least `threshold` (google-research/fixmatch
    `fixmatch.py:113-118`, `>=` at :116).

    Args:
      weak_probs: `(B_u, K)` detached probabilities on the weak views.
      strong_logits: `(B_u, K)` logits on the strong views.
      threshold: τ in (0, 1), or `(B_u,)` thresholds per image (FlexMatch's, by the class of
        its argmax).

    Returns:
      `(loss, mask)`: the scalar mean over all B_u rows (unconfident ones add 0) and the
      `(B_u,)` float 0/1 mask.
    """
    weak_probs = ops.stop_gradient(weak_probs)
    mask = ops.cast(ops.max(weak_probs, axis=-1) >= threshold, "float32")
    pseudo_labels = ops.argmax(weak_probs, axis=-1)
    per_image = ops.sparse_categorical_crossentropy(pseudo_labels, strong_logits, from_logits=True)
    return ops.mean(mask * per_image), mask
