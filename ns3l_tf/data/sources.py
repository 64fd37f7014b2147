"""Raw image sources: what each dataset is, and where its arrays come from.

Every loader returns `RawData`: uint8 images `(N, H, W, C)` and int64 labels `(N,)` for the
train and test splits, the same structure TFDS gives, so splitting and pipelines cannot tell
the sources apart.
"""

import dataclasses
import gzip
import os
import struct

import numpy as np

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATA_DIR_ENV = "NS3L_DATA_DIR"

_IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # uint8 images (3 dims) and labels (1 dim)


class DataNotFoundError(FileNotFoundError):
    """The dataset is in none of the searched places; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset (SPEC.md §4).

    Attributes:
      name: the `--dataset` value and TFDS name.
      num_classes: K.
      image_shape: `(H, W, C)`.
      train_size: images in the full training split (labeled + unlabeled + validation).
      max_translation: augmentation's random translation, in pixels, with reflect padding.
      flip: whether augmentation flips images horizontally.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    train_size: int
    max_translation: int
    flip: bool


DATASETS = {
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        num_classes=10,
        image_shape=(28, 28, 1),
        train_size=60_000,
        max_translation=2,
        flip=False,
    ),
}


@dataclasses.dataclass(frozen=True)
class RawData:
    """Train and test splits as uint8 images `(N, H, W, C)` and int64 labels `(N,)`."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) of uint8 data into an array of its shape.

    Raises:
      ValueError: if the magic number is not that of uint8 images or labels.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    ndim = magic & 0xFF
    if _IDX_MAGIC.get(ndim) != magic:
        raise ValueError(f"{path}: not a uint8 IDX file (magic {magic:#010x})")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_paths(directory: str) -> dict[str, str] | None:
    """The four Fashion-MNIST IDX files in `directory` (gzipped or not), or None."""
    paths = {}
    for key, stem in _IDX_FILES.items():
        found = [p for p in (stem + ".gz", stem) if os.path.isfile(os.path.join(directory, p))]
        if not found:
            return None
        paths[key] = os.path.join(directory, found[0])
    return paths


def _tfds_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _load_tfds_prepared(name: str, data_dir: str) -> RawData | None:
    """Loads an already prepared TFDS dataset from `data_dir` (never downloads), or None."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        return None
    arrays = {}
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(builder.as_dataset(split, batch_size=-1, as_supervised=True))
        arrays[split] = (images, labels.astype(np.int64))
    return RawData(*arrays["train"], *arrays["test"])


def fashion_mnist_search_path(data_dir: str | None = None) -> list[str]:
    """Directories searched for the IDX files, in order: `data_dir`, `$NS3L_DATA_DIR`, Debian's."""
    candidates = [data_dir, os.environ.get(DATA_DIR_ENV), DEBIAN_FASHION_MNIST_DIR]
    return [c for c in candidates if c]


def load_fashion_mnist(data_dir: str | None = None) -> RawData:
    """Real Fashion-MNIST from IDX files, else from a prepared TFDS data dir.

    Searches, in order: `data_dir`, `$NS3L_DATA_DIR`, /usr/share/datasets/fashion-mnist
    (Debian package `dataset-fashion-mnist`), then the TFDS data dir (`$TFDS_DATA_DIR` or
    ~/tensorflow_datasets) for a prepared `fashion_mnist`.

    Raises:
      DataNotFoundError: one line naming every place searched and how to install the data.
    """
    searched = fashion_mnist_search_path(data_dir)
    for directory in searched:
        paths = _idx_paths(directory)
        if paths:
            arrays = {key: read_idx(path) for key, path in paths.items()}
            return RawData(
                train_images=arrays["train_images"][..., None],
                train_labels=arrays["train_labels"].astype(np.int64),
                test_images=arrays["test_images"][..., None],
                test_labels=arrays["test_labels"].astype(np.int64),
            )
    tfds_dir = _tfds_data_dir()
    raw = _load_tfds_prepared("fashion_mnist", tfds_dir)
    if raw is not None:
        return raw
    raise DataNotFoundError(
        f"Fashion-MNIST not found in {', '.join(searched)} (IDX files "
        f"{_IDX_FILES['train_images']}[.gz] etc.) nor prepared in the TFDS data dir {tfds_dir}; "
        "install it with `sudo apt-get install dataset-fashion-mnist` or pass --data_dir=DIR "
        "(or set $NS3L_DATA_DIR) to a directory holding the four IDX files"
    )


LOADERS = {"fashion_mnist": load_fashion_mnist}


def load_raw(name: str, data_dir: str | None = None) -> RawData:
    """Loads the train and test splits of a registered dataset."""
    if name not in LOADERS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](data_dir)
