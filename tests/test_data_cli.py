"""`python -m ns3l_tf.inspect_data`: the split summary and the augmentation grid PNG."""

import sys

import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import data as data_lib
from ns3l_tf.config import Config
from ns3l_tf.inspect_data import augmentation_grid, describe

from . import processes
from .conftest import REPO_ROOT, whole_fashion_mnist_env


def test_describe_lists_sizes_counts_and_digest(small_data):
    text = describe(small_data, Config())
    assert "labeled     500\n" in text and "unlabeled   4000\n" in text
    assert "validation  500\n" in text and "test        1000\n" in text
    counts = np.bincount(small_data.labeled_labels, minlength=10)
    assert "labeled per class  " + " ".join(f"{k}:{n}" for k, n in enumerate(counts)) in text
    assert small_data.labeled_digest() in text
    assert "preprocessing      standardize (inside the model)" in text
    assert "inside the model, every pass: translate ±2 px (reflect), no flips" in text
    text = describe(small_data, Config(algorithm="mixmatch", unlabeled_batch_size=64))
    assert "augmentation       in the pipeline: translate ±2 px (reflect), no flips" in text


def test_grid_holds_originals_then_augmentations(small_data):
    grid = augmentation_grid(small_data, columns=3, rows=2, seed=0, max_translation=2, flip=False)
    scale = 192 // 28
    assert grid.shape == (3 * 30 * scale, 3 * 30 * scale, 1) and grid.dtype == np.uint8
    first = grid[scale : 29 * scale : scale, scale : 29 * scale : scale, 0]  # top-left cell
    np.testing.assert_array_equal(first, small_data.labeled_images[0, :, :, 0])


@pytest.mark.large
def test_inspection_command_on_real_fashion_mnist(tmp_path):
    png = tmp_path / "grid.png"
    result = processes.run(
        [
            sys.executable,
            "-m",
            "ns3l_tf.inspect_data",
            "--num_labeled=2000",
            "--seed=1",
            f"--png={png}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=whole_fashion_mnist_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = data_lib.load_ssl_data("fashion_mnist", 2000, seed=1)
    assert "labeled per class  " + " ".join(f"{k}:200" for k in range(10)) in result.stdout
    assert "unlabeled   53000\n" in result.stdout
    assert expected.labeled_digest() in result.stdout
    image = tf.io.decode_png(png.read_bytes()).numpy()
    assert image.shape == (5 * 30 * 6, 12 * 30 * 6, 1)


def test_inspection_command_usage_error():
    result = processes.run(
        [sys.executable, "-m", "ns3l_tf.inspect_data", "--num_labeled=15"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --num_labeled=15: must be a positive multiple of the 10 classes of fashion_mnist"
    )
