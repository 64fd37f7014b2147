"""`tf.data` streams: repeated, shuffled, augmented labeled and unlabeled batches, paired.

The images stay uint8 until a whole batch is drawn; normalisation and augmentation then run
once per batch in the graph, seeded by `tf.data.Dataset.random`, so a stream is a pure function
of its seed and no Python runs per example.
"""

import functools

import tensorflow as tf

from ns3l_tf.data import augment as augment_lib

AUTOTUNE = tf.data.AUTOTUNE


def _augmented_stream(slices, num_examples, batch_size, augment_batch, seed):
    """Shuffle (reshuffled every pass) → repeat → batch → augment with per-batch seeds."""
    ds = tf.data.Dataset.from_tensor_slices(slices)
    ds = ds.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True)  # static shapes for XLA and strategies
    seeds = tf.data.Dataset.random(seed=seed + 1).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip(ds, seeds).map(augment_batch, num_parallel_calls=AUTOTUNE)


def train_dataset(
    data,
    batch_size: int,
    unlabeled_batch_size: int = 0,
    seed: int = 0,
):
    """The infinite training stream for `SSLModel.fit`.

    Args:
      data: an `ns3l_tf.data.SSLData`.
      batch_size: labeled images per batch, B_l.
      unlabeled_batch_size: unlabeled images per batch, B_u; 0 gives a labeled-only stream.
      seed: seeds shuffling and augmentation (the unlabeled stream uses `seed + 10`).

    Returns:
      A `tf.data.Dataset` of `((x_l, y_l), x_u)` — `x_l` `(B_l, H, W, C)` float32,
      `y_l` `(B_l,)` int64, `x_u` `(B_u, H, W, C)` float32 — or of `(x_l, y_l)` when
      `unlabeled_batch_size` is 0.
    """
    info = data.info
    transform = functools.partial(
        augment_lib.augment, max_translation=info.max_translation, flip=info.flip
    )

    def prepare(images, seed):
        return transform(augment_lib.normalize(images, data.mean, data.std), seed)

    labeled = _augmented_stream(
        (data.labeled_images, data.labeled_labels),
        len(data.labeled_labels),
        batch_size,
        lambda batch, s: (prepare(batch[0], s), batch[1]),
        seed,
    )
    if not unlabeled_batch_size:
        return labeled.prefetch(AUTOTUNE)
    unlabeled = _augmented_stream(
        data.unlabeled_images, len(data.unlabeled_images), unlabeled_batch_size, prepare, seed + 10
    )
    return tf.data.Dataset.zip(labeled, unlabeled).prefetch(AUTOTUNE)


def eval_dataset(data, images, labels, batch_size: int = 1000):
    """A finite, unaugmented `(x, y)` stream over `images`, normalised like training data."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
    ds = ds.map(
        lambda x, y: (augment_lib.normalize(x, data.mean, data.std), y),
        num_parallel_calls=AUTOTUNE,
    )
    return ds.prefetch(AUTOTUNE)
