"""`tf.data` streams: repeated, shuffled, augmented labeled and unlabeled batches, paired.

The images stay raw (uint8): a batch is drawn, then augmented (unless the model augments) in
the graph, seeded by `tf.data.Dataset.random`, so a stream is a pure function of its seed and
no Python runs per example. The model preprocesses (`SSLModel(preprocessing=...)`).
"""

import functools

import tensorflow as tf

import ns3l_tf.data as data_lib
from ns3l_tf.data import augment as augment_lib

AUTOTUNE = tf.data.AUTOTUNE
# Shuffle buffer of a streamed extra split (SVHN extra, STL-10 unlabelled), in images.
EXTRA_SHUFFLE_BUFFER = 10_000


def _repeated(examples, buffer_size: int, seed: int):
    """Shuffled afresh on every pass, repeated forever."""
    return examples.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True).repeat()


def _batched(examples, batch_size: int, prepare_batch, seed: int):
    """Batches (static shapes for XLA and strategies) and prepares each with its own seed."""
    batches = examples.batch(batch_size, drop_remainder=True)
    seeds = tf.data.Dataset.random(seed=seed + 1).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip(batches, seeds).map(prepare_batch, num_parallel_calls=AUTOTUNE)


def _unlabeled_examples(data, seed: int, extras: dict | None):
    """The unlabeled pool (each image with its `extras` rows, if any), joined by the extra
    split in proportion to the two sizes."""
    examples = {"images": data.unlabeled_images, **extras} if extras else data.unlabeled_images
    pool = _repeated(tf.data.Dataset.from_tensor_slices(examples), len(data.unlabeled_images), seed)
    if data.extra_unlabeled is None:
        return pool
    if extras:
        raise ValueError(
            f"unlabeled_extras ({', '.join(extras)}) needs every unlabeled image in memory; the "
            "extra unlabeled split is streamed without them: turn extra_unlabeled off"
        )
    extra = _repeated(data.extra_unlabeled, EXTRA_SHUFFLE_BUFFER, seed + 1)
    weights = [
        len(data.unlabeled_images) / data.num_unlabeled,
        data.extra_size / data.num_unlabeled,
    ]
    return tf.data.Dataset.sample_from_datasets([pool, extra], weights, seed=seed + 2)


def train_dataset(
    data,
    batch_size: int,
    unlabeled_batch_size: int = 0,
    seed: int = 0,
    unlabeled_augmentations: int = 1,
    unlabeled_extras: dict | None = None,
    max_translation: int | None = None,
    flip: bool | None = None,
):
    """The infinite training stream for `SSLModel.fit`, of raw (uint8) images.

    Images are augmented here, per image and once per batch, unless `max_translation` is 0
    and `flip` False (when the model augments inside, at every pass). Preprocessing is the
    model's job (`SSLModel(preprocessing=...)`).

    Args:
      data: an `ns3l_tf.data.SSLData`.
      batch_size: labeled images per batch, B_l.
      unlabeled_batch_size: unlabeled images per batch, B_u; 0 gives a labeled-only stream.
      seed: seeds shuffling and augmentation (the unlabeled stream uses `seed + 10`).
      unlabeled_augmentations: A, independent augmentations of each unlabeled image
        (MixMatch uses 2).
      unlabeled_extras: optional per-image arrays aligned with `data.unlabeled_images` (e.g.
        `{"labels": data.unlabeled_labels, "nn_candidates": nn_masks}`): each image's row
        travels with it, and the unlabeled batch becomes the dict
        `{"images": x_u, "labels": (B_u,), "nn_candidates": (B_u, K)}`.
      max_translation: largest random translation in pixels (reflect padding); None: the
        dataset's; 0: none.
      flip: random horizontal flips; None: the dataset's.

    Returns:
      A `tf.data.Dataset` of `((x_l, y_l), x_u)` — `x_l` `(B_l, H, W, C)` uint8,
      `y_l` `(B_l,)` int64, `x_u` `(B_u, H, W, C)` uint8, or `(B_u, A, H, W, C)` when
      `unlabeled_augmentations` > 1, or the dict above — or of `(x_l, y_l)` when
      `unlabeled_batch_size` is 0.

    Raises:
      ValueError: `unlabeled_extras` rows do not match the pool, or an extra split is streamed.
    """
    prepare = functools.partial(
        augment_lib.augment,
        max_translation=data.info.max_translation if max_translation is None else max_translation,
        flip=data.info.flip if flip is None else flip,
    )

    def prepare_unlabeled(batch, seed):
        images = batch["images"] if unlabeled_extras else batch
        if unlabeled_augmentations == 1:
            images = prepare(images, seed)
        else:
            seeds = tf.random.experimental.stateless_split(seed, unlabeled_augmentations)
            versions = [prepare(images, seeds[a]) for a in range(unlabeled_augmentations)]
            images = tf.stack(versions, axis=1)  # batch-major: strategies split along images
        return {**batch, "images": images} if unlabeled_extras else images

    data_lib.check_unlabeled_extras(unlabeled_extras, len(data.unlabeled_images))

    labeled = _repeated(
        tf.data.Dataset.from_tensor_slices((data.labeled_images, data.labeled_labels)),
        len(data.labeled_labels),
        seed,
    )
    labeled = _batched(labeled, batch_size, lambda b, s: (prepare(b[0], s), b[1]), seed)
    if not unlabeled_batch_size:
        return labeled.prefetch(AUTOTUNE)
    unlabeled = _batched(
        _unlabeled_examples(data, seed + 10, unlabeled_extras),
        unlabeled_batch_size,
        prepare_unlabeled,
        seed + 10,
    )
    return tf.data.Dataset.zip(labeled, unlabeled).prefetch(AUTOTUNE)


def eval_dataset(images, labels, batch_size: int = 1000):
    """A finite, unaugmented `(x, y)` stream over raw `images` `(N, H, W, C)` and `labels`."""
    return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size).prefetch(AUTOTUNE)
