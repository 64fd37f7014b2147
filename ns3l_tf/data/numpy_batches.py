"""The training stream without TensorFlow: paired labeled and unlabeled batches from NumPy.

`PairedBatches` is a `keras.utils.PyDataset`, so `model.fit` reads it on any backend; it
imports neither TensorFlow nor TFDS, and with the data the package reads itself
(Fashion-MNIST's IDX files, arrays of your own through `ssl_data_from_raw`) a JAX-only
environment trains end to end:

    data = ns3l_tf.data.load_ssl_data("fashion_mnist", num_labeled=2000, seed=1)
    train = ns3l_tf.data.numpy_batches.PairedBatches(data, 64, 64, seed=1)
    model = ns3l_tf.SSLModel(..., augmentation=ns3l_tf.models.augmentation.input_augmentation(
        data.info.max_translation, data.info.flip, 0.0, seed=2))
    model.fit(train, steps_per_epoch=500, epochs=10)

It pairs and orders like `pipeline.train_dataset`: each stream is shuffled afresh on every
pass over its images and repeated forever, and batches run across pass boundaries. Its draws
are NumPy's, not tf.data's, so the two give different (equally distributed) batches for one
seed. The images stay raw and unaugmented: augment in the model (`SSLModel(augmentation=...)`,
the command line's `--augment=model`), which draws a fresh view of every image at every pass.

Batch `i` is a pure function of `(seed, first_step + i)`: no state is carried from one batch
to the next, so a run resumed at step s continues with `first_step=s`, and batches may be
read in any order, as Keras's workers (`workers=`, `use_multiprocessing=`) read them.
"""

import functools

import keras
import numpy as np

import ns3l_tf.data as data_lib

# Seed-sequence keys of the two streams, so one seed draws them independently.
_LABELED, _UNLABELED = 0, 1


@functools.lru_cache(maxsize=8)
def _pass_order(seed: int, stream: int, pass_index: int, size: int) -> np.ndarray:
    """The order of pass `pass_index` over a pool of `size` images: a permutation drawn from
    `(seed, stream, pass_index)`, drawn once and shared by every batch of the pass."""
    order = np.random.default_rng([seed, stream, pass_index]).permutation(size)
    order.flags.writeable = False
    return order


class PairedBatches(keras.utils.PyDataset):
    """The infinite training stream `((x_l, y_l), x_u)` of `data`, from NumPy alone.

    Args:
      data: an `ns3l_tf.data.SSLData` without a streamed extra split.
      batch_size: labeled images per batch, B_l.
      unlabeled_batch_size: unlabeled images per batch, B_u; 0 gives `(x_l, y_l)` batches.
      seed: seeds the order of both streams.
      unlabeled_augmentations: A, the views of each unlabeled image the method takes; for
        A > 1 each image is repeated A times along axis 1 (the model augments each view).
      unlabeled_extras: optional per-image arrays aligned with `data.unlabeled_images` (e.g.
        `{"labels": data.unlabeled_labels, "indices": np.arange(N_u)}`); the unlabeled batch
        becomes `{"images": x_u, **rows of those images}`.
      first_step: the stream's batch that `fit`'s first batch is (a resumed run's step).
      **kwargs: `keras.utils.PyDataset`'s `workers`, `use_multiprocessing`, `max_queue_size`.

    Batches: `x_l` `(B_l, H, W, C)` uint8, `y_l` `(B_l,)` int64, `x_u` `(B_u, H, W, C)`
    uint8 or `(B_u, A, H, W, C)` for A > 1, or the dict above.

    Raises:
      ValueError: a batch size is not positive (B_u may be 0), A < 1, an extra's rows do not
        match the pool, or `data` streams an extra unlabeled split (a `tf.data` stream: use
        `pipeline.train_dataset`).
    """

    def __init__(
        self,
        data,
        batch_size: int,
        unlabeled_batch_size: int = 0,
        seed: int = 0,
        unlabeled_augmentations: int = 1,
        unlabeled_extras: dict | None = None,
        first_step: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if batch_size < 1 or unlabeled_batch_size < 0:
            raise ValueError(
                f"batch sizes must be positive (the unlabeled one may be 0), got "
                f"{batch_size} and {unlabeled_batch_size}"
            )
        if unlabeled_augmentations < 1:
            raise ValueError(f"unlabeled_augmentations={unlabeled_augmentations}: must be >= 1")
        if data.extra_unlabeled is not None:
            raise ValueError(
                "the extra unlabeled split is a tf.data stream; PairedBatches reads in-memory "
                "images only: turn extra_unlabeled off or use ns3l_tf.data.train_dataset"
            )
        data_lib.check_unlabeled_extras(unlabeled_extras, len(data.unlabeled_images))
        self.data = data
        self.batch_size = batch_size
        self.unlabeled_batch_size = unlabeled_batch_size
        self.seed = seed
        self.unlabeled_augmentations = unlabeled_augmentations
        self.unlabeled_extras = {k: np.asarray(v) for k, v in (unlabeled_extras or {}).items()}
        self.first_step = first_step

    @property
    def num_batches(self):
        return None  # infinite: `fit` needs `steps_per_epoch`

    def order(self, stream: int, size: int, step: int, batch_size: int) -> np.ndarray:
        """The `(batch_size,)` indices into a pool of `size` images that batch `step` of
        `stream` takes: positions `step · batch_size …` of the concatenated passes, pass p a
        permutation drawn from `(seed, stream, p)`."""
        positions = step * batch_size + np.arange(batch_size)
        passes, offsets = np.divmod(positions, size)
        indices = np.empty(batch_size, dtype=np.int64)
        for p in np.unique(passes):
            indices[passes == p] = _pass_order(self.seed, stream, int(p), size)[
                offsets[passes == p]
            ]
        return indices

    def __getitem__(self, index: int):
        step = self.first_step + index
        data = self.data
        labeled = self.order(_LABELED, len(data.labeled_labels), step, self.batch_size)
        batch_labeled = (data.labeled_images[labeled], data.labeled_labels[labeled].astype("int64"))
        if not self.unlabeled_batch_size:
            return batch_labeled
        unlabeled = self.order(
            _UNLABELED, len(data.unlabeled_images), step, self.unlabeled_batch_size
        )
        images = data.unlabeled_images[unlabeled]
        if self.unlabeled_augmentations > 1:
            images = np.repeat(images[:, None], self.unlabeled_augmentations, axis=1)
        if not self.unlabeled_extras:
            return batch_labeled, images
        extras = {name: rows[unlabeled] for name, rows in self.unlabeled_extras.items()}
        return batch_labeled, {"images": images, **extras}
