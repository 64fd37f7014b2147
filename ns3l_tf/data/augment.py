"""Batched, stateless, in-graph augmentation of the input pipeline (random translation with
reflect padding and horizontal flips, as in Oliver et al.'s `lib/dataset_utils.py` and
MixMatch's `libml/data.py`).

All functions take a whole batch `(B, H, W, C)` of any dtype (raw uint8 images here) and a
stateless seed `(2,)` int tensor, so the same seed gives the same batch on every run and
`tf.data` can map them in parallel. Augmentation inside the model, redrawn at every forward
pass, is `ns3l_tf.models.augmentation`.
"""

import tensorflow as tf


def random_translate(images, max_shift: int, seed):
    """Translates each image by up to `max_shift` pixels per axis, reflect-padding the border.

    Args:
      images: `(B, H, W, C)` float images.
      max_shift: largest shift in pixels (2 in Oliver et al.; 4 on 32×32 and 12 on 96×96
        images in MixMatch).
      seed: `(2,)` int stateless seed.

    Returns:
      `(B, H, W, C)` images; each one a crop of its reflect-padded version at a uniformly drawn
      offset in `[0, 2·max_shift]²`.
    """
    if max_shift == 0:
        return images
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(
        images, [[0, 0], [max_shift, max_shift], [max_shift, max_shift], [0, 0]], mode="REFLECT"
    )
    offsets = tf.random.stateless_uniform(
        (batch, 2), seed, minval=0, maxval=2 * max_shift + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None, :]  # (B, H)
    cols = offsets[:, 1:] + tf.range(width)[None, :]  # (B, W)
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)  # (B, H, W + 2s, C)
    return tf.gather(cropped, cols, axis=2, batch_dims=1)  # (B, H, W, C)


def random_flip(images, seed):
    """Flips each image of a `(B, H, W, C)` batch left-right with probability 1/2."""
    flip = tf.random.stateless_uniform((tf.shape(images)[0], 1, 1, 1), seed) < 0.5
    return tf.where(flip, tf.reverse(images, axis=[2]), images)


def augment(images, seed, max_translation: int, flip: bool):
    """Random translation (reflect padding) then, where allowed, a horizontal flip."""
    translate_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    images = random_translate(images, max_translation, translate_seed)
    return random_flip(images, flip_seed) if flip else images
