"""IDX reading, the Fashion-MNIST search order and the missing-data message."""

import gzip
import struct

import numpy as np
import pytest

from ns3l_tf.data import sources


def _write_idx(path, array, compress=True):
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fake_fashion_mnist(directory, value, compress=True):
    """Fashion-MNIST's sizes (60,000 and 10,000 images), every pixel `value`."""
    suffix = ".gz" if compress else ""
    images = np.full((60_000, 28, 28), value, np.uint8)
    labels = np.arange(60_000, dtype=np.uint8) % 10
    for stem, array in [
        ("train-images-idx3-ubyte", images),
        ("train-labels-idx1-ubyte", labels),
        ("t10k-images-idx3-ubyte", images[:10_000]),
        ("t10k-labels-idx1-ubyte", labels[:10_000]),
    ]:
        _write_idx(directory / (stem + suffix), array, compress)


@pytest.fixture
def no_default_locations(monkeypatch, tmp_path):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    monkeypatch.delenv(sources.DATA_DIR_ENV, raising=False)


def test_read_idx_roundtrip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.gz", array)
    _write_idx(tmp_path / "x", array, compress=False)
    np.testing.assert_array_equal(sources.read_idx(str(tmp_path / "x.gz")), array)
    np.testing.assert_array_equal(sources.read_idx(str(tmp_path / "x")), array)


def test_read_idx_rejects_other_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 16)
    with pytest.raises(sources.CorruptDataError, match="not a uint8 IDX file"):
        sources.read_idx(str(tmp_path / "bad"))


def test_data_dir_comes_before_the_environment(tmp_path, monkeypatch, no_default_locations):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write_fake_fashion_mnist(tmp_path / "a", 11)
    _write_fake_fashion_mnist(tmp_path / "b", 22, compress=False)
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "b"))
    raw = sources.load_fashion_mnist(str(tmp_path / "a"))
    assert raw.train_images.shape == (60_000, 28, 28, 1) and raw.train_images.dtype == np.uint8
    assert int(raw.train_images.max()) == 11
    assert raw.train_labels.dtype == np.int64 and raw.test_images.shape == (10_000, 28, 28, 1)
    assert raw.source["directory"] == str(tmp_path / "a")
    assert int(sources.load_fashion_mnist(None).train_images.max()) == 22  # falls back to env


def test_data_dir_is_the_only_place_searched(tmp_path, monkeypatch, no_default_locations):
    (tmp_path / "a").mkdir()
    _write_fake_fashion_mnist(tmp_path / "a", 11)
    (tmp_path / "a" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv(sources.DATA_DIR_ENV, str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    _write_fake_fashion_mnist(tmp_path / "b", 22)
    with pytest.raises(
        sources.DataNotFoundError, match=r"t10k-labels-idx1-ubyte\[\.gz\] is missing"
    ):
        sources.load_fashion_mnist(str(tmp_path / "a"))  # never the complete copy in b


def test_missing_data_error_says_where_it_looked_and_how_to_install(tmp_path, no_default_locations):
    with pytest.raises(sources.DataNotFoundError) as error:
        sources.load_fashion_mnist(None)
    message = str(error.value)
    assert "\n" not in message
    assert f"not found in {tmp_path / 'debian'} " in message
    assert f"TFDS data dir {tmp_path / 'tfds'};" in message  # $TFDS_DATA_DIR
    assert "apt-get install dataset-fashion-mnist" in message and "--data_dir" in message
    with pytest.raises(sources.DataNotFoundError) as error:
        sources.load_fashion_mnist(str(tmp_path / "nowhere"))
    message = str(error.value)  # --data_dir alone: IDX files, then as a TFDS dir
    assert f"not found in {tmp_path / 'nowhere'} (IDX files" in message
    assert f"TFDS data dir {tmp_path / 'nowhere'};" in message


def test_real_fashion_mnist_has_the_standard_sizes(fmnist_raw):
    assert fmnist_raw.train_images.shape == (60000, 28, 28, 1)
    assert fmnist_raw.test_images.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(fmnist_raw.train_labels), [6000] * 10)
