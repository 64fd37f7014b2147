"""Raw image sources: what each dataset is, and where its arrays come from.

Every loader returns `RawData`: uint8 images `(N, H, W, C)` and int64 labels `(N,)` for the
train and test splits, the same structure TFDS gives, so splitting and pipelines cannot tell
the sources apart.
"""

import dataclasses
import gzip
import hashlib
import os
import socket
import struct
import urllib.parse
import zlib
from typing import Any

import numpy as np

from ns3l_tf.requirements import MISSING_TENSORFLOW

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


class CorruptDataError(ValueError):
    """A data file is unreadable or disagrees with its header, its partner file or the
    dataset's known sizes; the message names the file and what is wrong."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset (the sizes and augmentations of Oliver et al. (2018) and
    MixMatch's protocols; Fashion-MNIST as in the paper's Table 5).

    Attributes:
      name: the `--dataset` value and TFDS name.
      num_classes: K.
      image_shape: `(H, W, C)`.
      train_size: images in the training split (labeled + unlabeled + validation).
      test_size: images in the test split.
      default_num_validation: training images held out for validation by default.
      max_translation: augmentation's random translation, in pixels, with reflect padding
        (Oliver et al.'s 2 px; MixMatch's 12 px on STL-10, which only MixMatch uses; MixMatch's
        flagfiles set 4 px for 32×32 images).
      flip: whether augmentation flips images horizontally.
      extra_split: a TFDS split of extra unlabeled images (SVHN `extra`, STL-10
        `unlabelled`), or None.
      extra_size: images in `extra_split`.
      extra_by_default: whether the extra split joins the unlabeled pool unless told otherwise.
    """

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]
    train_size: int
    test_size: int
    default_num_validation: int
    max_translation: int
    flip: bool
    extra_split: str | None = None
    extra_size: int = 0
    extra_by_default: bool = False


DATASETS = {
    info.name: info
    for info in (
        DatasetInfo("fashion_mnist", 10, (28, 28, 1), 60_000, 10_000, 5_000, 2, flip=False),
        DatasetInfo("cifar10", 10, (32, 32, 3), 50_000, 10_000, 5_000, 2, flip=True),
        DatasetInfo("cifar100", 100, (32, 32, 3), 50_000, 10_000, 5_000, 2, flip=True),
        DatasetInfo(
            "svhn_cropped",
            10,
            (32, 32, 3),
            73_257,
            26_032,
            7_325,
            2,
            flip=False,
            extra_split="extra",
            extra_size=531_131,
        ),
        DatasetInfo(
            "stl10",
            10,
            (96, 96, 3),
            5_000,
            8_000,
            0,
            12,
            flip=True,
            extra_split="unlabelled",
            extra_size=100_000,
            extra_by_default=True,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class RawData:
    """Train and test splits as uint8 images `(N, H, W, C)` and int64 labels `(N,)`.

    `extra_unlabeled` is an optional stream of uint8 `(H, W, C)` images too large to hold in
    memory (SVHN `extra`, STL-10 `unlabelled`), read from TFDS as training consumes it.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    extra_unlabeled: Any = None  # tf.data.Dataset of images, or None
    extra_size: int = 0
    source: dict = dataclasses.field(default_factory=dict)  # where it was read, and digests


def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (optionally gzipped) of uint8 data into an array of its shape.

    Raises:
      CorruptDataError: the file cannot be read or decompressed, its magic number is not that
        of uint8 images or labels, or its length disagrees with the shape in its header.
    """
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise CorruptDataError(f"{path}: cannot be read ({error})") from None
    magic = struct.unpack(">I", data[:4])[0] if len(data) >= 4 else None
    ndim = magic & 0xFF if magic is not None else 0
    if magic is None or _IDX_MAGIC.get(ndim) != magic:
        found = f"magic {magic:#010x}" if magic is not None else f"{len(data)} bytes"
        raise CorruptDataError(f"{path}: not a uint8 IDX file of images or labels ({found})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptDataError(f"{path}: truncated inside its header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise CorruptDataError(
            f"{path}: holds {len(data) - header} bytes of data where its header's shape "
            f"{'x'.join(map(str, shape))} needs {expected} (truncated or padded)"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_paths(directory: str) -> tuple[dict[str, str], list[str]]:
    """The Fashion-MNIST IDX files in `directory` (gzipped or not), and the missing ones."""
    paths, missing = {}, []
    for key, stem in _IDX_FILES.items():
        found = [p for p in (stem + ".gz", stem) if os.path.isfile(os.path.join(directory, p))]
        if found:
            paths[key] = os.path.join(directory, found[0])
        else:
            missing.append(f"{stem}[.gz]")
    return paths, missing


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_fashion_mnist_idx(directory: str) -> RawData:
    """The four IDX files of `directory`, checked against each other and the known sizes.

    Raises:
      DataNotFoundError: a file is missing (named).
      CorruptDataError: a file is unreadable, inconsistent with its header, or images and
        labels disagree (in count, image size, or labels outside the 10 classes).
    """
    paths, missing = _idx_paths(directory)
    if missing:
        raise DataNotFoundError(
            f"{directory}: {missing[0]} is missing (Fashion-MNIST needs its four IDX files)"
        )
    arrays = {key: read_idx(path) for key, path in paths.items()}
    info = DATASETS["fashion_mnist"]
    for split, size in (("train", info.train_size), ("test", info.test_size)):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        image_file, label_file = paths[f"{split}_images"], paths[f"{split}_labels"]
        if images.ndim != 3 or images.shape[1:] != info.image_shape[:2]:
            raise CorruptDataError(
                f"{image_file}: images of shape {images.shape[1:]}, not Fashion-MNIST's 28x28"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise CorruptDataError(
                f"{label_file}: holds {len(labels)} labels for the {len(images)} images of "
                f"{os.path.basename(image_file)}"
            )
        if len(images) != size:
            raise CorruptDataError(
                f"{image_file}: holds {len(images)} images; Fashion-MNIST's {split} split has "
                f"{size}"
            )
        if labels.max() >= info.num_classes:
            raise CorruptDataError(
                f"{label_file}: label {labels.max()} outside the {info.num_classes} classes"
            )
    return RawData(
        train_images=arrays["train_images"][..., None],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"][..., None],
        test_labels=arrays["test_labels"].astype(np.int64),
        source={
            "directory": os.path.abspath(directory),
            "sha256": {os.path.basename(p): _sha256(p) for p in paths.values()},
        },
    )


def tfds_data_dir(data_dir: str | None = None) -> str:
    """`data_dir`, else `$TFDS_DATA_DIR`, else ~/tensorflow_datasets."""
    return data_dir or os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))


def _not_prepared(name: str, data_dir: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"{name}: no prepared TFDS data in {data_dir}; pass --download to let TFDS download "
        'it there (needs a network), or on a machine with one run `python -c "import '
        f"tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='DIR')."
        f'download_and_prepare()"`, copy DIR/{name} into {data_dir}, or pass --data_dir=DIR'
    )


class DownloadError(RuntimeError):
    """`--download` was asked for and TFDS could not download or prepare the dataset."""


# Where TFDS's builders download from (tensorflow_datasets `image_classification/cifar.py`,
# `image_classification/mnist.py`, `datasets/svhn_cropped`, `datasets/stl10`): a download is
# tried only once its host answers, so an offline `--download` fails in seconds, not after
# TFDS's retries (3.4 minutes measured).
DOWNLOAD_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz",
    "svhn_cropped": "http://ufldl.stanford.edu/housenumbers/",
    "stl10": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
PROBE_SECONDS = 5.0


def unreachable(url: str, timeout: float = PROBE_SECONDS) -> str | None:
    """None when a TCP connection to `url`'s host opens within `timeout` seconds, else why
    not (e.g. "[Errno -3] Temporary failure in name resolution")."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as error:
        return str(error) or type(error).__name__
    return None


def _tfds_split(name: str, split: str, data_dir: str, download: bool = False):
    """A TFDS split as a `tf.data.Dataset` of `(image, label)`; downloaded and prepared into
    `data_dir` first when `download` and not prepared there yet, once the download host
    answers.

    Raises:
      DataNotFoundError: not prepared there, and no `download`; or TensorFlow is missing
        (TFDS needs it; the Fashion-MNIST IDX files and your own arrays do not).
      DownloadError: with `download`, the host does not answer, or TFDS failed.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:  # TFDS itself imports TensorFlow
        raise DataNotFoundError(
            f"{name}: read through TFDS, which needs TensorFlow: {MISSING_TENSORFLOW} "
            "(Fashion-MNIST's IDX files and arrays of your own are read without it)"
        ) from None

    if download:
        try:
            return _tfds_split(name, split, data_dir)  # prepared already: no network needed
        except DataNotFoundError:
            pass
        url = DOWNLOAD_URLS.get(name)
        why = unreachable(url) if url else None
        if why:
            host = urllib.parse.urlsplit(url).hostname
            raise DownloadError(
                f"{name}: --download needs a network, and {host} does not answer within "
                f"{PROBE_SECONDS:.0f} s ({why}); prepare it on a machine with one and pass "
                "--data_dir"
            )
    try:
        return tfds.load(
            name, split=split, data_dir=data_dir, download=download, as_supervised=True
        )
    except AssertionError as error:  # TFDS's "could not find data in ..."
        raise _not_prepared(name, data_dir) from error
    except Exception as error:  # noqa: BLE001 (any download or preparation failure)
        if not download:
            raise
        raise DownloadError(
            f"{name}: TFDS could not download it into {data_dir} ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:300]})"
        ) from error


def _to_numpy(dataset) -> tuple[np.ndarray, np.ndarray]:
    """`(image, label)` dataset → uint8 `(N, H, W, C)` images and int64 `(N,)` labels."""
    images, labels = [], []
    for image_batch, label_batch in dataset.batch(4096).as_numpy_iterator():
        images.append(image_batch)
        labels.append(label_batch)
    return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int64)


def load_tfds(
    name: str, data_dir: str | None = None, extra: bool = False, download: bool = False
) -> RawData:
    """A TFDS dataset's train and test splits in memory, plus its extra split as a stream.

    Args:
      name: a TFDS name from `DATASETS`.
      data_dir: the TFDS data dir holding the prepared dataset (default `tfds_data_dir()`).
      extra: also open `DATASETS[name].extra_split` as `RawData.extra_unlabeled`.
      download: let TFDS download and prepare it there if it is not prepared yet.

    Raises:
      DataNotFoundError: the dataset is not prepared there (one line saying how to prepare it).
      DownloadError: with `download`, the download or preparation failed.
    """
    data_dir = tfds_data_dir(data_dir)
    train = _to_numpy(_tfds_split(name, "train", data_dir, download))
    test = _to_numpy(_tfds_split(name, "test", data_dir, download))
    info = DATASETS[name]
    extra_stream, extra_size = None, 0
    if extra and info.extra_split:
        extra_stream = _tfds_split(name, info.extra_split, data_dir, download)
        extra_stream = extra_stream.map(lambda x, y: x)
        extra_size = info.extra_size
    digest = hashlib.sha256()
    for array in (*train, *test):
        digest.update(array.tobytes())
    source = {"tfds_data_dir": os.path.abspath(data_dir), "dataset": name}
    source["sha256_of_arrays"] = digest.hexdigest()
    return RawData(
        *train, *test, extra_unlabeled=extra_stream, extra_size=extra_size, source=source
    )


def fashion_mnist_search_path(data_dir: str | None = None) -> list[str]:
    """Directories searched for the IDX files: `data_dir` alone when given, else
    `$NS3L_DATA_DIR` then Debian's."""
    if data_dir:
        return [data_dir]
    return [c for c in (os.environ.get(DATA_DIR_ENV), DEBIAN_FASHION_MNIST_DIR) if c]


def load_fashion_mnist(data_dir: str | None = None, download: bool = False) -> RawData:
    """Real Fashion-MNIST from IDX files, else from a prepared TFDS data dir.

    With `data_dir`, only there: its four IDX files (a missing one is an error naming it) or,
    holding none, a prepared TFDS `fashion_mnist`. Without it: `$NS3L_DATA_DIR`, then
    /usr/share/datasets/fashion-mnist (Debian package `dataset-fashion-mnist`), then the TFDS
    data dir (`$TFDS_DATA_DIR` or ~/tensorflow_datasets). Found nowhere and with `download`,
    TFDS downloads and prepares it into that TFDS data dir. The files read, and their SHA-256,
    are in `RawData.source`.

    Raises:
      DataNotFoundError: one line naming the places searched (or the missing file) and how to
        install the data.
      CorruptDataError: see `read_fashion_mnist_idx`.
    """
    searched = fashion_mnist_search_path(data_dir)
    for directory in searched:
        if _idx_paths(directory)[0]:  # some of the files: all of them, or an error naming one
            return read_fashion_mnist_idx(directory)
    tfds_dir = tfds_data_dir(data_dir)  # --data_dir may also be a TFDS data dir
    try:
        return load_tfds("fashion_mnist", tfds_dir)
    except DataNotFoundError:
        if download:
            return load_tfds("fashion_mnist", tfds_dir, download=True)
    raise DataNotFoundError(
        f"Fashion-MNIST not found in {', '.join(searched)} (IDX files "
        f"{_IDX_FILES['train_images']}[.gz] etc.) nor prepared in the TFDS data dir {tfds_dir}; "
        "install it with `sudo apt-get install dataset-fashion-mnist`, pass --data_dir=DIR "
        "(or set $NS3L_DATA_DIR) to a directory holding the four IDX files, or pass "
        "--download to let TFDS download it (needs a network)"
    )


def load_raw(
    name: str, data_dir: str | None = None, extra: bool | None = None, download: bool = False
) -> RawData:
    """Loads the train and test splits of a registered dataset.

    Fashion-MNIST comes from its IDX files when found (see `load_fashion_mnist`), every other
    dataset from a prepared TFDS data dir (`data_dir`, `$TFDS_DATA_DIR` or
    ~/tensorflow_datasets). `extra` (default: the dataset's `extra_by_default`) adds the
    extra unlabeled split as a stream. `download` lets TFDS download what is not there.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(sorted(DATASETS))}")
    if name == "fashion_mnist":
        return load_fashion_mnist(data_dir, download)
    if extra is None:
        extra = DATASETS[name].extra_by_default
    return load_tfds(name, data_dir, extra=extra, download=download)
