"""Shared fixtures: real Fashion-MNIST (loaded once) and small real subsets of it."""

import os

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from ns3l_tf import data as data_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def fmnist_raw():
    """The whole real Fashion-MNIST (60,000 train / 10,000 test)."""
    return data_lib.sources.load_fashion_mnist()


@pytest.fixture(scope="session")
def small_data(fmnist_raw):
    """A real subset: 500 labeled, 4,000 unlabeled, 500 validation, 1,000 test images."""
    raw = data_lib.RawData(
        train_images=fmnist_raw.train_images[:5000],
        train_labels=fmnist_raw.train_labels[:5000],
        test_images=fmnist_raw.test_images[:1000],
        test_labels=fmnist_raw.test_labels[:1000],
    )
    info = data_lib.DATASETS["fashion_mnist"]
    return data_lib.ssl_data_from_raw(info, raw, num_labeled=500, num_validation=500, seed=0)


@pytest.fixture
def saved_flags():
    """Parses nothing yet; restores every absl flag after the test."""
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    with flagsaver.flagsaver():
        yield flags.FLAGS


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def tensorboard_points(log_dir):
    """Every scalar point of the TensorBoard logs under `log_dir` (a `pathlib.Path`):
    `[(subdirectory, tag, step), …]`, sorted."""
    import tensorflow as tf

    points = []
    for path in sorted(log_dir.rglob("*tfevents*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    points.append((path.parent.name, value.tag, event.step))
    return sorted(points)
