"""Without TensorFlow: `PairedBatches` pairs and orders the streams as the tf.data pipeline
does, and a JAX-only environment trains on real Fashion-MNIST through it."""

import json
import os
import subprocess
import sys
import types

import numpy as np
import pytest

from ns3l_tf.data.numpy_batches import PairedBatches

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_data(num_labeled=6, num_unlabeled=10):
    """Image k of each pool is filled with its id (labeled 0…, unlabeled 100…), so a batch
    says which images it holds; label = id % 3."""
    ids = np.arange(num_labeled)
    unlabeled_ids = 100 + np.arange(num_unlabeled)
    return types.SimpleNamespace(
        labeled_images=np.repeat(ids, 4).reshape(-1, 2, 2, 1).astype(np.uint8),
        labeled_labels=ids % 3,
        unlabeled_images=np.repeat(unlabeled_ids, 4).reshape(-1, 2, 2, 1).astype(np.uint8),
        unlabeled_labels=unlabeled_ids % 3,
        extra_unlabeled=None,
    )


def ids(images):
    """`(B, 2, 2, 1)` images of `tiny_data` → their ids."""
    return images[:, 0, 0, 0].astype(int).tolist()


def test_each_pass_takes_every_image_once_and_batches_run_across_passes():
    stream = PairedBatches(tiny_data(), batch_size=4, unlabeled_batch_size=4, seed=3)
    labeled = [stream[i][0] for i in range(3)]  # 12 positions: passes 0 and 1 over 6 images
    order = sum((ids(x) for x, _ in labeled), [])
    assert sorted(order[:6]) == list(range(6)) and sorted(order[6:]) == list(range(6))
    assert order[:6] != order[6:]  # shuffled afresh on every pass
    for x, y in labeled:
        assert y.dtype == np.int64 and y.tolist() == [k % 3 for k in ids(x)]
    unlabeled = sum((ids(stream[i][1]) for i in range(5)), [])  # 20 positions, 2 passes
    assert sorted(unlabeled[:10]) == list(range(100, 110)) == sorted(unlabeled[10:])


def test_a_batch_depends_only_on_the_seed_and_its_step():
    data = tiny_data()
    stream = PairedBatches(data, 4, 4, seed=3)
    again = PairedBatches(data, 4, 4, seed=3)
    resumed = PairedBatches(data, 4, 4, seed=3, first_step=5)
    for step in range(5, 9):
        (x, y), u = stream[step]
        (x_again, y_again), u_again = again[step]
        (x_resumed, y_resumed), u_resumed = resumed[step - 5]
        np.testing.assert_array_equal(x, x_again)
        np.testing.assert_array_equal(x, x_resumed)
        np.testing.assert_array_equal(u, u_resumed)
        np.testing.assert_array_equal(y, y_resumed)
    other = PairedBatches(data, 4, 4, seed=4)
    assert [ids(other[i][0][0]) for i in range(3)] != [ids(stream[i][0][0]) for i in range(3)]


def test_views_repeat_each_image_and_extras_travel_with_it():
    data = tiny_data()
    extras = {"labels": data.unlabeled_labels, "indices": np.arange(10)}
    stream = PairedBatches(data, 2, 4, seed=0, unlabeled_augmentations=2, unlabeled_extras=extras)
    _, unlabeled = stream[1]
    assert unlabeled["images"].shape == (4, 2, 2, 2, 1)
    np.testing.assert_array_equal(unlabeled["images"][:, 0], unlabeled["images"][:, 1])
    held = ids(unlabeled["images"][:, 0])
    assert unlabeled["indices"].tolist() == [k - 100 for k in held]
    assert unlabeled["labels"].tolist() == [k % 3 for k in held]
    labeled_only = PairedBatches(data, 2, seed=0)[0]
    assert len(labeled_only) == 2 and labeled_only[0].shape == (2, 2, 2, 1)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": 0}, "batch sizes must be positive (the unlabeled one may be 0), got 0"),
        ({"unlabeled_augmentations": 0}, "unlabeled_augmentations=0: must be >= 1"),
        (
            {"unlabeled_extras": {"labels": np.zeros(3)}},
            "unlabeled_extras['labels'] has 3 rows for 10 unlabeled images",
        ),
        ({"extra": True}, "the extra unlabeled split is a tf.data stream"),
    ],
)
def test_bad_arguments_are_one_line_errors(change, message):
    data = tiny_data()
    if change.pop("extra", False):
        data.extra_unlabeled = object()
    arguments = {"batch_size": 2, "unlabeled_batch_size": 2, **change}
    with pytest.raises(ValueError) as error:
        PairedBatches(data, **arguments)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.large
def test_a_jax_only_environment_trains_on_fashion_mnist(tmp_path):
    pytest.importorskip("jax")
    result = subprocess.run(
        [sys.executable, os.path.join(HERE, "no_tensorflow_fit.py"), str(tmp_path)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["backend"] == "jax" and found["tensorflow_loaded"] == []
    # The IDX files (the tests' small copy), read by NumPy.
    assert found["source"] == os.environ["NS3L_TEST_FASHION_MNIST_DIR"]
    assert found["asked"] == [0, 1, 2, 3, 4, 5]  # the second epoch continues the stream
    first, second = found["losses"]
    assert np.isfinite(first) and second < first
    assert found["weights_changed"] == found["weights"]
    assert 0 < found["ns3l_negatives"] < 10 and 0 <= found["error"] <= 100
    assert found["reloaded_predicts_alike"]
    assert found["tfds_error"].startswith("cifar10: read through TFDS, which needs TensorFlow")


@pytest.mark.large
def test_the_step_time_benchmark_times_jax_without_tensorflow(tmp_path):
    """The GPU machines to plan for have JAX alone: the step-time benchmark runs there."""
    pytest.importorskip("jax")
    argv = [
        "--models=small_cnn",
        "--algorithms=supervised,ns3l",
        "--precisions=float32",
        "--xla=true",
        "--steps=1",
        "--batch_size=4",
        f"--results_dir={tmp_path}",
    ]
    script = os.path.join(os.path.dirname(os.path.dirname(HERE)), "benchmarks", "step_time.py")
    run = (
        f"import sys, runpy; sys.path.insert(0, {HERE!r}); import refuse_tensorflow; "
        f"sys.path.insert(0, {os.path.dirname(script)!r}); "
        f"sys.argv = [{script!r}, *{argv!r}]; runpy.run_path({script!r}, run_name='__main__')"
    )
    result = subprocess.run(
        [sys.executable, "-c", run],
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "step_time.json").read_text())
    rows = report["rows"]
    assert [(r["backend"], r["algorithm"]) for r in rows] == [
        ("jax", "supervised"),
        ("jax", "ns3l"),
    ]
    assert all(r["seconds_per_step"] > 0 and r["gflops_per_step"] > 0 for r in rows)
    # NS3L's second forward pass of the unlabeled images costs more than supervised's step.
    assert rows[1]["gflops_per_step"] > rows[0]["gflops_per_step"]
    machine = report["machines"]["jax"] if "machines" in report else report["machine"]
    assert "no GPU" in machine and "TF " not in machine and "JAX " in machine
