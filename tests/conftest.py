"""Shared fixtures: real Fashion-MNIST (loaded once), small real subsets of it, and one
finished training run for the tests that read one."""

import fcntl
import os
import shutil
import struct
import sys

import numpy as np
import pytest
from absl import flags
from absl.testing import flagsaver

from ns3l_tf import data as data_lib

from . import processes

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The runs that tests start in other processes read the first 10,000 training and 1,000 test
# images of the real Fashion-MNIST (see small_fashion_mnist/sitecustomize.py).
SMALL_FASHION_MNIST = {"train": 10_000, "test": 1_000}
SMALL_FASHION_MNIST_HOOK = os.path.join(os.path.dirname(__file__), "small_fashion_mnist")
PYTHONPATH_OUTSIDE_TESTS = os.environ.get("PYTHONPATH")


@pytest.fixture(scope="session")
def fmnist_raw():
    """The whole real Fashion-MNIST (60,000 train / 10,000 test)."""
    return data_lib.sources.load_fashion_mnist()


def write_idx(path, array):
    """Writes a uint8 array as an uncompressed IDX file."""
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as f:
        f.write(header + np.asarray(array, np.uint8).tobytes())


@pytest.fixture(scope="session", autouse=True)
def small_fashion_mnist_for_started_runs(fmnist_raw, tmp_path_factory):
    """Every Python process a test starts reads `SMALL_FASHION_MNIST` by default (this process
    reads the whole dataset); a test passing --data_dir passes a copy of this one."""
    directory = tmp_path_factory.mktemp("small_fashion_mnist")
    train, test = SMALL_FASHION_MNIST["train"], SMALL_FASHION_MNIST["test"]
    write_idx(directory / "train-images-idx3-ubyte", fmnist_raw.train_images[:train, ..., 0])
    write_idx(directory / "train-labels-idx1-ubyte", fmnist_raw.train_labels[:train])
    write_idx(directory / "t10k-images-idx3-ubyte", fmnist_raw.test_images[:test, ..., 0])
    write_idx(directory / "t10k-labels-idx1-ubyte", fmnist_raw.test_labels[:test])
    patch = pytest.MonkeyPatch()
    patch.setenv("NS3L_TEST_FASHION_MNIST_DIR", str(directory))
    patch.setenv("NS3L_TEST_FASHION_MNIST_SIZES", f"{train},{test}")
    paths = [SMALL_FASHION_MNIST_HOOK, *filter(None, [PYTHONPATH_OUTSIDE_TESTS])]
    patch.setenv("PYTHONPATH", os.pathsep.join(paths))
    yield directory
    patch.undo()


def shared_by_workers(tmp_path_factory):
    """The temporary directory every xdist worker of this test run sees (the run's own
    where there are no workers)."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache_for_started_runs(tmp_path_factory):
    """The JAX processes the tests start share compiled steps through JAX's persistent cache
    (a killed run and its rerun compile the same programs): `tests/backends/test_jax_cli.py`
    took 65 s with it, 72 s without. Each xdist worker has its own cache (JAX writes an entry
    in place, so a reader in the other worker could meet a half-written one)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax_cache")))
    patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    yield
    patch.undo()


# The run `shared_run` trains once per test run: the preset, bfloat16 and a weight EMA (the
# saved model and best weights must be the weights evaluated), evaluated at steps 10 and 20.
SHARED_RUN_FLAGS = [
    "--preset=fmnist_quick",
    "--train_steps=20",
    "--eval_every=10",
    "--lr_decay_step=0",
    "--num_validation=1000",
    "--ema_decay=0.9",
    "--precision=mixed_bfloat16",
]


@pytest.fixture(scope="session")
def shared_run(small_fashion_mnist_for_started_runs, tmp_path_factory):
    """A function `(destination) → (run directory, stdout)`: a copy, at `destination`, of one
    finished `ns3l_tf.train SHARED_RUN_FLAGS` run, trained once for all the xdist workers of
    this test run (the first to need it trains it under a file lock), and the run's stdout."""
    root = shared_by_workers(tmp_path_factory)
    cache = root / "shared_run"
    with open(root / "shared_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "stdout.txt").exists():
            result = processes.run(
                [sys.executable, "-m", "ns3l_tf.train", *SHARED_RUN_FLAGS,
                 f"--output_dir={cache / 'run'}"],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr[-3000:]
            (cache / "stdout.txt").write_text(result.stdout)

    def copy(destination):
        shutil.copytree(cache / "run", destination)
        return destination, (cache / "stdout.txt").read_text()

    return copy


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


def whole_fashion_mnist_env():
    """The environment of a process that must read the whole Fashion-MNIST."""
    hook = ("NS3L_TEST_FASHION_MNIST_DIR", "NS3L_TEST_FASHION_MNIST_SIZES", "PYTHONPATH")
    env = {key: value for key, value in os.environ.items() if key not in hook}
    if PYTHONPATH_OUTSIDE_TESTS:
        env["PYTHONPATH"] = PYTHONPATH_OUTSIDE_TESTS
    return env


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
