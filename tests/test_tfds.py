"""TFDS datasets under `tfds.testing.mock_data`: loading, splits, preprocessing, extra splits."""

import socket
import time
import zlib

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from ns3l_tf import data as data_lib
from ns3l_tf import training
from ns3l_tf.config import Config
from ns3l_tf.data import augment, sources

TFDS_DATASETS = ["cifar10", "cifar100", "svhn_cropped", "stl10", "fashion_mnist"]
# Small fake splits; the extra splits are constant white images so tests can spot them.
FAKE_SIZES = {"train": 1000, "test": 200, "extra": 300, "unlabelled": 300}
EXTRA_SPLITS = ("extra", "unlabelled")


def _fake_as_dataset(self, split, **kwargs):
    """Deterministic examples per (dataset, split): labels cycle through every class."""
    info = sources.DATASETS[self.name]
    split = str(split)
    n = FAKE_SIZES[split]
    rng = np.random.default_rng(zlib.crc32(f"{self.name}/{split}".encode()))
    if split in EXTRA_SPLITS:
        images = np.full((n, *info.image_shape), 255, np.uint8)
        labels = np.full(n, -1, np.int64)
    else:
        images = rng.integers(0, 255, (n, *info.image_shape), dtype=np.uint8)
        labels = np.arange(n, dtype=np.int64) % info.num_classes
    return tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})


@pytest.fixture
def mock_tfds(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with tfds.testing.mock_data(as_dataset_fn=_fake_as_dataset):
        yield


def _load(name, **kwargs):
    kwargs.setdefault("num_labeled", 100)
    kwargs.setdefault("num_validation", 100)
    if name == "fashion_mnist":  # its IDX files are installed: force the TFDS path
        info = sources.DATASETS[name]
        raw = sources.load_tfds(name)
        return data_lib.ssl_data_from_raw(
            info, raw, kwargs["num_labeled"], kwargs["num_validation"], kwargs.get("seed", 0)
        )
    return data_lib.load_ssl_data(name, **kwargs)


@pytest.mark.parametrize("name", TFDS_DATASETS)
def test_split_sizes_balance_dtype_and_disjointness(name, mock_tfds):
    info = sources.DATASETS[name]
    data = _load(name)
    assert data.labeled_images.shape == (100, *info.image_shape)
    assert data.labeled_images.dtype == np.uint8 and data.labeled_labels.dtype == np.int64
    assert (len(data.validation_labels), len(data.unlabeled_images)) == (100, 800)
    assert len(data.test_labels) == 200
    counts = np.bincount(data.labeled_labels, minlength=info.num_classes)
    assert counts.min() == counts.max() == 100 // info.num_classes
    split = data.split
    indices = np.concatenate([split.labeled, split.unlabeled, split.validation])
    np.testing.assert_array_equal(np.sort(indices), np.arange(1000))


@pytest.mark.parametrize("name", TFDS_DATASETS)
def test_two_loads_give_the_same_split(name, mock_tfds):
    a, b = _load(name, seed=4), _load(name, seed=4)
    np.testing.assert_array_equal(a.labeled_images, b.labeled_images)
    assert a.labeled_digest() == b.labeled_digest()
    assert a.labeled_digest() != _load(name, seed=5).labeled_digest()


@pytest.mark.parametrize("name", TFDS_DATASETS)
def test_training_batches_are_raw_images(name, mock_tfds):
    info = sources.DATASETS[name]
    data = _load(name, extra_unlabeled=False) if info.extra_split else _load(name)
    (x_l, y_l), x_u = next(iter(data_lib.train_dataset(data, 10, 20, seed=0)))
    assert x_l.dtype == tf.uint8 and x_l.shape == (10, *info.image_shape)
    assert x_u.shape == (20, *info.image_shape) and y_l.dtype == tf.int64
    # The training pool's statistics, for the model's standardisation, are those of [0, 1].
    assert float(data.mean.min()) > 0.0 and float(data.mean.max()) < 1.0


@pytest.mark.parametrize("name", TFDS_DATASETS)
def test_flips_only_where_allowed(name):
    info = sources.DATASETS[name]
    images = tf.random.stateless_uniform((40, *info.image_shape), (1, 2))
    out = augment.augment(images, tf.constant([5, 6]), info.max_translation, info.flip).numpy()
    s = info.max_translation
    flipped = 0
    for image, result in zip(images.numpy(), out):
        padded = np.pad(image, ((s, s), (s, s), (0, 0)), mode="reflect")
        h, w = image.shape[:2]
        crops = [
            padded[dy : dy + h, dx : dx + w] for dy in range(2 * s + 1) for dx in range(2 * s + 1)
        ]
        if any(np.array_equal(result, c) for c in crops):
            continue
        assert any(np.array_equal(result, c[:, ::-1]) for c in crops)
        flipped += 1
    assert (flipped > 0) == info.flip


def test_standard_split_sizes_of_spec():
    """Oliver et al.'s and the paper's labeled, unlabeled and validation sizes at the standard
    settings."""
    expected = {
        ("cifar10", 4000): (4000, 41000, 5000),
        ("cifar10", 250): (250, 44750, 5000),
        ("cifar100", 10000): (10000, 35000, 5000),
        ("svhn_cropped", 1000): (1000, 64932, 7325),
        ("svhn_cropped", 250): (250, 65682, 7325),
        ("stl10", 1000): (1000, 4000, 0),
        ("fashion_mnist", 2000): (2000, 53000, 5000),
    }
    for (name, num_labeled), sizes in expected.items():
        info = sources.DATASETS[name]
        labels = np.arange(info.train_size) % info.num_classes
        split = data_lib.split_training_set(
            labels, info.num_classes, num_labeled, info.default_num_validation, seed=0
        )
        assert (len(split.labeled), len(split.unlabeled), len(split.validation)) == sizes
    assert sources.DATASETS["svhn_cropped"].extra_size == 531_131
    assert sources.DATASETS["stl10"].extra_size == 100_000


def test_stl10_adds_its_unlabelled_split_by_default(mock_tfds):
    data = data_lib.load_ssl_data("stl10", num_labeled=100)
    assert len(data.validation_labels) == 0 and data.extra_size == 100_000
    assert data.num_unlabeled == 900 + 100_000
    _, x_u = next(iter(data_lib.train_dataset(data, 10, 200, seed=0)))
    from_extra = np.all(x_u.numpy() == 255, axis=(1, 2, 3))
    assert from_extra.mean() > 0.9  # 100,000 of 100,900 unlabeled images are in the extra split


def test_svhn_extra_is_optional(mock_tfds):
    assert data_lib.load_ssl_data("svhn_cropped", 100, 100).extra_unlabeled is None
    data = data_lib.load_ssl_data("svhn_cropped", 100, 100, extra_unlabeled=True)
    assert data.extra_size == 531_131 and data.num_unlabeled == 800 + 531_131


def test_unlabeled_augmentations_are_independent(mock_tfds):
    data = _load("cifar10")
    _, x_u = next(iter(data_lib.train_dataset(data, 8, 16, seed=0, unlabeled_augmentations=2)))
    assert x_u.shape == (16, 2, 32, 32, 3)  # batch-major: a strategy splits along images
    assert not np.array_equal(x_u[:, 0].numpy(), x_u[:, 1].numpy())


def test_missing_tfds_data_is_one_clear_line(tmp_path):
    with pytest.raises(sources.DataNotFoundError) as error:
        sources.load_raw("cifar10", data_dir=str(tmp_path / "empty"))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"cifar10: no prepared TFDS data in {tmp_path / 'empty'}")
    assert "download_and_prepare()" in message and "--data_dir=DIR" in message


def test_training_run_on_a_tfds_dataset(mock_tfds, tmp_path):
    config = Config(
        dataset="cifar10",
        num_labeled=100,
        num_validation=100,
        batch_size=8,
        unlabeled_batch_size=8,
        train_steps=4,
        eval_every=2,
        output_dir=str(tmp_path / "run"),
    )
    results = training.run(config, verbose=0)
    assert results["steps"] == 4 and len(results["history"]) == 2
    assert (results["num_labeled"], results["num_unlabeled"]) == (100, 800)
    split = np.load(tmp_path / "run" / "split.npz")
    assert {k: len(v) for k, v in split.items()} == {
        "labeled": 100,
        "unlabeled": 800,
        "validation": 100,
    }


@pytest.fixture
def fake_tfds_load(monkeypatch, tmp_path):
    """`tfds.load` as on a machine with a network and nothing prepared: it finds no data unless
    allowed to download, and records each call's data dir and download flag."""
    calls = []

    def load(name, split, data_dir, download, as_supervised):
        calls.append((name, split, data_dir, download))
        if not download:
            raise AssertionError(f"Dataset {name}: could not find data in {data_dir}.")
        info = sources.DATASETS[name]
        images = np.zeros((FAKE_SIZES[split], *info.image_shape), np.uint8)
        labels = np.arange(FAKE_SIZES[split]) % info.num_classes
        return tf.data.Dataset.from_tensor_slices((images, labels))

    monkeypatch.setattr(tfds, "load", load)
    monkeypatch.setattr(sources, "unreachable", lambda url: None)  # a network
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "no-debian"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    return calls


def test_download_lets_tfds_fetch_what_is_not_on_this_machine(fake_tfds_load, tmp_path):
    raw = sources.load_raw("cifar10", data_dir=str(tmp_path / "mine"), download=True)
    assert raw.train_images.shape == (1000, 32, 32, 3) and raw.test_images.shape[0] == 200
    # Each split: looked for prepared (no network), then downloaded.
    mine = str(tmp_path / "mine")
    assert fake_tfds_load == [
        ("cifar10", "train", mine, False),
        ("cifar10", "train", mine, True),
        ("cifar10", "test", mine, False),
        ("cifar10", "test", mine, True),
    ]
    # Fashion-MNIST: the offline places first (none holds it here), then TFDS downloads it
    # into the TFDS data dir.
    fake_tfds_load.clear()
    raw = sources.load_fashion_mnist(None, download=True)
    assert raw.train_images.shape == (1000, 28, 28, 1)
    assert [call[3] for call in fake_tfds_load] == [False, False, True, False, True]
    assert {call[2] for call in fake_tfds_load} == {str(tmp_path / "tfds")}


def test_without_download_nothing_is_fetched_and_the_message_offers_it(fake_tfds_load):
    with pytest.raises(sources.DataNotFoundError, match="pass --download to let TFDS download"):
        sources.load_raw("svhn_cropped")
    with pytest.raises(sources.DataNotFoundError, match="or pass --download"):
        sources.load_fashion_mnist(None)
    assert all(not download for *_, download in fake_tfds_load)


def test_an_offline_download_fails_at_once_without_trying(fake_tfds_load, monkeypatch, tmp_path):
    probed = []
    why = "[Errno -3] Temporary failure in name resolution"
    monkeypatch.setattr(sources, "unreachable", lambda url: probed.append(url) or why)
    with pytest.raises(sources.DownloadError) as error:
        sources.load_raw("svhn_cropped", data_dir=str(tmp_path), download=True)
    assert str(error.value) == (
        f"svhn_cropped: --download needs a network, and ufldl.stanford.edu does not answer "
        f"within 5 s ({why}); prepare it on a machine with one and pass --data_dir"
    )
    assert probed == ["http://ufldl.stanford.edu/housenumbers/"]
    assert [call[3] for call in fake_tfds_load] == [False]  # looked for it prepared, only


def test_the_probe_reports_a_closed_port_in_time():
    start = time.monotonic()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    assert sources.unreachable(f"http://127.0.0.1:{port}/", timeout=2.0)
    assert time.monotonic() - start < 3.0


def test_a_failed_download_is_one_line(monkeypatch, tmp_path):
    def offline(*args, download, **kwargs):
        if not download:
            raise AssertionError("could not find data")
        raise ConnectionError("Failed to establish a new connection:\n [Errno 101]")

    monkeypatch.setattr(tfds, "load", offline)
    monkeypatch.setattr(sources, "unreachable", lambda url: None)
    with pytest.raises(sources.DownloadError) as error:
        sources.load_raw("cifar10", data_dir=str(tmp_path), download=True)
    assert str(error.value) == (
        f"cifar10: TFDS could not download it into {tmp_path} (ConnectionError: Failed to "
        "establish a new connection: [Errno 101])"
    )


def test_the_download_flag_reaches_the_loader():
    assert Config(download=True).split_arguments()["download"] is True
    assert Config().split_arguments()["download"] is False
