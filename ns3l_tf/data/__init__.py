"""Datasets for semi-supervised training: sources, seeded splits, augmentation, tf.data streams
(and `numpy_batches`, the same pairing without TensorFlow).

data = ns3l_tf.data.load_ssl_data("fashion_mnist", num_labeled=2000, seed=1)
train = ns3l_tf.data.train_dataset(data, batch_size=64, unlabeled_batch_size=64, seed=1)
val = ns3l_tf.data.eval_dataset(data.validation_images, data.validation_labels)
"""

import dataclasses
import hashlib
import importlib
from typing import Any

import numpy as np

from ns3l_tf.data.sources import (
    DATASETS,
    CorruptDataError,
    DataNotFoundError,
    DatasetInfo,
    DownloadError,
    RawData,
    load_raw,
)
from ns3l_tf.data.splits import SplitIndices, split_training_set

# The tf.data streams (and the augmentation they use) load TensorFlow, so they are imported
# on first use; `numpy_batches` (the stream without TensorFlow) loads Keras.
_PIPELINE = ("eval_dataset", "train_dataset")
_SUBMODULES = ("augment", "numpy_batches", "pipeline")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"ns3l_tf.data.{name}")
    if name in _PIPELINE:
        return getattr(importlib.import_module("ns3l_tf.data.pipeline"), name)
    raise AttributeError(f"module 'ns3l_tf.data' has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class SSLData:
    """One dataset split for semi-supervised training, as in-memory uint8 arrays.

    `unlabeled_labels` are the hidden true labels of the unlabeled pool: never fed to
    training, kept for diagnostics. `extra_unlabeled` is an optional stream of `extra_size`
    further unlabeled uint8 images (SVHN `extra`, STL-10 `unlabelled`), without labels.
    `mean` and `std` `(C,)` are the per-channel statistics of the in-memory training pool
    (labeled + unlabeled) on the [0, 1] scale. `source` says where the data was read and its
    SHA-256 digests.
    """

    info: DatasetInfo
    split: SplitIndices
    labeled_images: np.ndarray
    labeled_labels: np.ndarray
    unlabeled_images: np.ndarray
    unlabeled_labels: np.ndarray
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    extra_unlabeled: Any = None
    extra_size: int = 0
    source: dict = dataclasses.field(default_factory=dict)

    @property
    def training_images(self) -> np.ndarray:
        """The in-memory training pool, labeled then unlabeled images: what input
        preprocessing is fitted on."""
        return np.concatenate([self.labeled_images, self.unlabeled_images])

    @property
    def num_unlabeled(self) -> int:
        """Unlabeled images per pass: the in-memory pool plus the extra split."""
        return len(self.unlabeled_images) + self.extra_size

    def labeled_digest(self) -> str:
        """SHA-256 of the labeled images and labels: equal digests mean the same labeled set."""
        digest = hashlib.sha256(self.labeled_images.tobytes())
        digest.update(self.labeled_labels.astype("<i8").tobytes())
        return digest.hexdigest()


def check_unlabeled_extras(unlabeled_extras: dict | None, num_unlabeled: int) -> None:
    """Refuses per-image `unlabeled_extras` rows that do not align with the unlabeled pool of
    `num_unlabeled` images (the training streams carry row i with unlabeled image i).

    Raises:
      ValueError: an extra has another number of rows, named.
    """
    for name, rows in (unlabeled_extras or {}).items():
        if len(rows) != num_unlabeled:
            raise ValueError(
                f"unlabeled_extras[{name!r}] has {len(rows)} rows for {num_unlabeled} "
                "unlabeled images"
            )


def ssl_data_from_raw(
    info: DatasetInfo, raw: RawData, num_labeled: int, num_validation: int, seed: int
) -> SSLData:
    """Splits `raw`'s training images into labeled / unlabeled / validation (see splits.py)."""
    split = split_training_set(
        raw.train_labels, info.num_classes, num_labeled, num_validation, seed
    )
    pool = raw.train_images[np.concatenate([split.labeled, split.unlabeled])]
    scaled = pool.reshape(-1, pool.shape[-1]).astype(np.float64) / 255.0
    return SSLData(
        info=info,
        split=split,
        labeled_images=raw.train_images[split.labeled],
        labeled_labels=raw.train_labels[split.labeled],
        unlabeled_images=raw.train_images[split.unlabeled],
        unlabeled_labels=raw.train_labels[split.unlabeled],
        validation_images=raw.train_images[split.validation],
        validation_labels=raw.train_labels[split.validation],
        test_images=raw.test_images,
        test_labels=raw.test_labels,
        mean=scaled.mean(axis=0).astype(np.float32),
        std=scaled.std(axis=0).astype(np.float32),
        extra_unlabeled=raw.extra_unlabeled,
        extra_size=raw.extra_size,
        source=raw.source,
    )


def load_ssl_data(
    dataset: str,
    num_labeled: int,
    num_validation: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    extra_unlabeled: bool | None = None,
    download: bool = False,
) -> SSLData:
    """Loads `dataset` and splits it; the same arguments give the same split everywhere.

    Args:
      dataset: a name from `DATASETS` (fashion_mnist, cifar10, cifar100, svhn_cropped, stl10).
      num_labeled: labeled images, `num_labeled / K` per class, drawn by `seed`.
      num_validation: held-out validation images; None: the dataset's standard size
        (5,000; 7,325 for SVHN; 0 for STL-10).
      seed: the labeled subset's seed (validation does not depend on it).
      data_dir: where the data is (IDX files for Fashion-MNIST, or a TFDS data dir).
      extra_unlabeled: add the extra unlabeled split (SVHN `extra`, STL-10 `unlabelled`);
        None: the dataset's default (on for STL-10 only).
      download: where the data is not found, let TFDS download and prepare it (into
        `data_dir` or the TFDS data dir).

    Raises:
      DataNotFoundError: the data is not on this machine (the message says how to get it).
      ValueError: impossible split sizes.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(sorted(DATASETS))}")
    info = DATASETS[dataset]
    if num_validation is None:
        num_validation = info.default_num_validation
    raw = load_raw(dataset, data_dir, extra=extra_unlabeled, download=download)
    return ssl_data_from_raw(info, raw, num_labeled, num_validation, seed)


__all__ = [
    "DATASETS",
    "CorruptDataError",
    "DataNotFoundError",
    "DatasetInfo",
    "DownloadError",
    "RawData",
    "SSLData",
    "SplitIndices",
    "eval_dataset",
    "load_ssl_data",
    "split_training_set",
    "ssl_data_from_raw",
    "train_dataset",
]
