"""Runs survive interruption, refuse wrong data and never report a broken run as a result.

Fault injection on tiny budgets: SIGKILL at a random step after the first checkpoint and
SIGTERM, each resumed and compared with an uninterrupted run; corrupt, truncated, mislengthed
and missing IDX files; a diverging run; refused reruns; two live runs; a full disk.
"""

import gzip
import json
import os
import random
import shutil
import signal
import stat
import struct
import sys
import time

import numpy as np
import pytest

from ns3l_tf import io_utils
from ns3l_tf.data import sources
from ns3l_tf.run_dir import RunDirectory

from . import processes
from .conftest import REPO_ROOT, tensorboard_points

# 24 steps of 16 + 16 images, evaluated every 8 steps, a checkpoint every 4.
TINY = [
    "--flagfile=flags/fmnist_quick.cfg",
    "--train_steps=24",
    "--eval_every=8",
    "--checkpoint_every=4",
    "--lr_decay_step=16",
    "--batch_size=16",
    "--unlabeled_batch_size=16",
    "--num_validation=1000",
    "--deterministic",
]


def _command(output_dir, *flags):
    return [sys.executable, "-m", "ns3l_tf.train", *TINY, f"--output_dir={output_dir}", *flags]


def _train(output_dir, *flags, timeout=600):
    return processes.run(
        _command(output_dir, *flags), cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _start(output_dir, *flags):
    return processes.Popen(
        _command(output_dir, *flags), cwd=REPO_ROOT, stdout=processes.PIPE,
        stderr=processes.PIPE, text=True,
    )  # fmt: skip


def _wait_for_checkpoint(output_dir, process, timeout=300):
    state = os.path.join(output_dir, "checkpoints", "state.json")
    deadline = time.time() + timeout
    while not os.path.exists(state):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint"
        time.sleep(0.05)


def _results(output_dir):
    with open(os.path.join(output_dir, "results.json")) as f:
        return json.load(f)


def _figures(results):
    """What must not depend on an interruption: every evaluation's errors and averages."""
    timing = ("seconds", "resumed_at_steps", "preprocessing_seconds")
    figures = {k: v for k, v in results.items() if k not in timing}
    figures["flags"] = {k: v for k, v in results["flags"].items() if k != "output_dir"}
    return figures


def _weights(output_dir):
    import ns3l_tf

    model = ns3l_tf.load_model(os.path.join(output_dir, "model.keras"), compile=False)
    return [np.asarray(v) for v in model.variables]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("reference") / "run"
    result = _train(output_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.mark.large
def test_sigkill_then_the_same_command_resumes_to_the_same_weights_and_results(
    uninterrupted, tmp_path
):
    output_dir = tmp_path / "run"
    process = _start(output_dir)
    _wait_for_checkpoint(output_dir, process)
    time.sleep(random.Random(0).uniform(0.0, 0.5))  # a random step after the first checkpoint
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (output_dir / "results.json").exists()
    killed_at = json.loads((output_dir / "checkpoints" / "state.json").read_text())["step"]

    resumed = _train(output_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {killed_at}" in resumed.stderr
    results = _results(output_dir)
    assert results["resumed_at_steps"] == [killed_at]
    assert _figures(results) == _figures(_results(uninterrupted))
    for got, want in zip(_weights(output_dir), _weights(uninterrupted), strict=True):
        np.testing.assert_array_equal(got, want)
    # One TensorBoard point per step and curve, as in the unbroken run.
    points = tensorboard_points(output_dir / "tensorboard")
    assert points == tensorboard_points(uninterrupted / "tensorboard")
    assert ("validation", "error", 24) in points


@pytest.mark.large
def test_sigterm_checkpoints_the_current_step_and_resumes(uninterrupted, tmp_path):
    output_dir = tmp_path / "run"
    process = _start(output_dir)
    _wait_for_checkpoint(output_dir, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM
    last = stderr.strip().splitlines()[-1]
    step = json.loads((output_dir / "checkpoints" / "state.json").read_text())["step"]
    assert last == f"interrupted at step {step}; run the same command to resume"
    assert not (output_dir / "results.json").exists()

    resumed = _train(output_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _figures(_results(output_dir)) == _figures(_results(uninterrupted))


@pytest.mark.large
def test_a_finished_run_says_so_other_flags_are_refused_overwrite_starts_again(
    uninterrupted, tmp_path
):
    output_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, output_dir)
    again = _train(output_dir)
    assert again.returncode == 0 and again.stdout.startswith("finished already: test error")
    assert again.stderr == ""  # no TensorFlow imported: nothing else was done

    other = _train(output_dir, "--seed=1", "--ns3l_threshold=0.05")
    assert other.returncode == 2
    assert other.stderr.strip().splitlines() == [
        f"error: --output_dir={output_dir}: holds a run with other flags "
        "(--ns3l_threshold=0.03→0.05, --seed=0→1); pass the same flags to resume it, "
        "--overwrite to start again, or choose another directory"
    ]
    fresh = _train(
        output_dir,
        "--seed=1",
        "--overwrite",
        "--train_steps=8",
        "--eval_every=8",
        "--lr_decay_step=0",
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert _results(output_dir)["flags"]["seed"] == 1 and _results(output_dir)["steps"] == 8


@pytest.mark.large
def test_a_second_live_run_into_the_directory_is_refused(tmp_path):
    output_dir = tmp_path / "run"
    first = _start(output_dir, "--train_steps=400", "--eval_every=200")
    try:
        while not (output_dir / "config.json").exists():
            assert first.poll() is None
            time.sleep(0.05)
        second = _train(output_dir, "--train_steps=400", "--eval_every=200")
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: --output_dir={output_dir}: in use by another run (pid {first.pid}); wait "
            "for it or choose another directory"
        ]
    finally:
        first.kill()
        first.communicate()


@pytest.mark.large
def test_a_diverging_run_stops_at_its_step_with_no_results(tmp_path):
    output_dir = tmp_path / "run"
    result = _train(output_dir, "--learning_rate=1e9")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged: the loss is not finite at step ")
    assert "Traceback" not in result.stderr
    assert set(os.listdir(output_dir)) <= {
        ".lock",
        "checkpoints",
        "config.json",
        "split.npz",
        "tensorboard",
    }  # no results.json, no model.keras
    state = output_dir / "checkpoints" / "state.json"
    assert not state.exists() or all(
        np.isfinite(r["loss"]) for r in json.loads(state.read_text())["history"]
    )


def _write_idx(path, array):
    header = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion_mnist_copy(small_fashion_mnist_for_started_runs, tmp_path_factory):
    """The tests' small Fashion-MNIST, gzipped as Debian ships it."""
    directory = tmp_path_factory.mktemp("fmnist")
    for path in small_fashion_mnist_for_started_runs.iterdir():
        (directory / f"{path.name}.gz").write_bytes(gzip.compress(path.read_bytes(), 1))
    return directory


def _broken_copy(source, tmp_path, name, content):
    directory = tmp_path / "data"
    shutil.copytree(source, directory)
    path = directory / name
    if content is None:
        path.unlink()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        _write_idx(path, content)
    return directory


LABELS = "train-labels-idx1-ubyte.gz"
BROKEN = [
    ("not gzip", LABELS, b"not a gzip file at all", 1, "train-labels-idx1-ubyte.gz: cannot be"),
    ("truncated", LABELS, "truncate", 1, "train-labels-idx1-ubyte.gz: cannot be read"),
    (
        "mislengthed",
        LABELS,
        np.zeros(999),
        1,
        "train-labels-idx1-ubyte.gz: holds 999 labels for the 10000 images of "
        "train-images-idx3-ubyte.gz",
    ),
    (
        "short of its header",
        "t10k-labels-idx1-ubyte.gz",
        "short",
        1,
        "holds 990 bytes of data where its header's shape 1000 needs 1000",
    ),
    ("missing", "t10k-images-idx3-ubyte.gz", None, 2, "t10k-images-idx3-ubyte[.gz] is missing"),
]


@pytest.mark.parametrize("case, name, content, code, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_data_is_one_line_and_never_a_fallback(
    case, name, content, code, message, fashion_mnist_copy, tmp_path
):
    if isinstance(content, str) and content == "truncate":
        data = (fashion_mnist_copy / name).read_bytes()
        content = data[: len(data) // 2]
    elif isinstance(content, str) and content == "short":
        with gzip.open(fashion_mnist_copy / name) as f:
            data = f.read()
        content = gzip.compress(data[:-10])
    directory = _broken_copy(fashion_mnist_copy, tmp_path, name, content)
    result = _train(tmp_path / "run", f"--data_dir={directory}")
    assert result.returncode == code, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    # Nothing but the lock: no config.json, so a retry with other flags is not refused.
    assert os.listdir(tmp_path / "run") == [".lock"]


@pytest.mark.large
def test_a_run_that_failed_on_missing_data_takes_the_corrected_retry(fashion_mnist_copy, tmp_path):
    directory = _broken_copy(fashion_mnist_copy, tmp_path, "t10k-images-idx3-ubyte.gz", None)
    failed = _train(tmp_path / "run", f"--data_dir={directory}")
    assert failed.returncode == 2 and os.listdir(tmp_path / "run") == [".lock"]
    retried = _train(tmp_path / "run", f"--data_dir={fashion_mnist_copy}", "--seed=5",
                     "--train_steps=8", "--eval_every=8", "--lr_decay_step=0")  # fmt: skip
    assert retried.returncode == 0, retried.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 5


def test_the_files_read_and_their_digests_are_recorded():
    directory = sources.DEBIAN_FASHION_MNIST_DIR
    raw = sources.load_fashion_mnist(directory)
    assert raw.source["directory"] == directory
    with open(os.path.join(directory, LABELS), "rb") as f:
        import hashlib

        assert raw.source["sha256"][LABELS] == hashlib.sha256(f.read()).hexdigest()
    assert len(raw.source["sha256"]) == 4


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--seed=-1"], "error: --seed=-1: must be >= 0"),
        (["--checkpoint_every=3"], "error: --checkpoint_every=3: must divide --eval_every=8"),
        (["--output_dir=/proc/ns3l_tf_run"], "error: --output_dir=/proc/ns3l_tf_run: cannot be"),
    ],
)
def test_usage_errors_are_one_line_before_anything_loads(flags, message, tmp_path):
    result = _train(tmp_path / "run", *flags)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    result = _train(path)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: --output_dir={path}: is a file, not a directory"


def test_files_honour_the_umask_and_json_is_strict(tmp_path):
    old = os.umask(0o027)
    try:
        assert io_utils._umask() == 0o027 and os.umask(0o027) == 0o027  # reading keeps it
    finally:
        os.umask(old)
    assert 0o666 & ~old == io_utils.FILE_MODE  # this process's umask, read at import
    io_utils.write_json(str(tmp_path / "a.json"), {"x": 1.5})
    assert stat.S_IMODE(os.stat(tmp_path / "a.json").st_mode) == io_utils.FILE_MODE != 0o600
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        io_utils.write_json(str(tmp_path / "b.json"), {"loss": float("nan")})
    assert os.listdir(tmp_path) == ["a.json"]  # nothing half-written


def test_run_directory_records_its_flags_and_names_what_differs(tmp_path):
    run = RunDirectory(str(tmp_path / "run")).open({"seed": 0, "algorithm": "ns3l"})
    run.close()
    with pytest.raises(ValueError, match=r"other flags \(--seed=0→1\)"):
        RunDirectory(str(tmp_path / "run")).open({"seed": 1, "algorithm": "ns3l"})
    again = RunDirectory(str(tmp_path / "run")).open({"seed": 1, "algorithm": "ns3l"}, True)
    assert again.saved_flags() == {"seed": 1, "algorithm": "ns3l"}
    again.close()


def test_temporary_files_of_a_killed_writer_are_removed_when_the_run_reopens(tmp_path):
    run = RunDirectory(str(tmp_path / "run")).open({"seed": 0})
    run.close()
    # What SIGKILL during `atomic_write` leaves: its temporary files, beside kept files.
    (tmp_path / "run" / "checkpoints").mkdir()
    left = [tmp_path / "run" / ".tmp-ab12.json", tmp_path / "run" / "checkpoints" / ".tmp-x.h5"]
    for path in left:
        path.write_text("half")
    (tmp_path / "run" / "checkpoints" / "state.json").write_text("{}")
    RunDirectory(str(tmp_path / "run")).open({"seed": 0}).close()
    assert not any(path.exists() for path in left)
    assert (tmp_path / "run" / "checkpoints" / "state.json").read_text() == "{}"
    assert (tmp_path / "run" / "config.json").exists()


@pytest.mark.large
def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    made = processes.run(
        # Room for the split's indices (80 KB) and the first checkpoint (800 KB), not for the
        # best weights: HDF5 reports the full disk in its own words, with a traceback of its own
        # as the file it left open is closed at exit.
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
    )
    if made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    try:
        result = _train(mount / "run")
        assert result.returncode == 1, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: No space left on device"), last
        leftovers = [n for _, _, files in os.walk(mount) for n in files if n.startswith(".tmp-")]
        assert leftovers == []
        assert not (mount / "run" / "results.json").exists()
    finally:
        processes.run(["umount", str(mount)], check=True)


def test_a_full_disk_reads_alike_from_the_system_and_from_hdf5():
    hdf5 = OSError(
        "Can't synchronously write data (file write failed: time = Mon Dec 7 06:37:05 2026 , "
        "filename = '/r/checkpoints/.tmp-i.weights.h5', file descriptor = 5, errno = 28, "
        "error message = 'No space left on device', buf = 0x5, total write size = 145800)"
    )
    assert io_utils.os_error_message(hdf5) == "No space left on device"
    system = OSError(28, "No space left on device", "runs/x/model.keras")
    assert io_utils.os_error_message(system) == "No space left on device: runs/x/model.keras"
    denied = OSError(13, "Permission denied", "runs/x")
    assert io_utils.os_error_message(denied) == "Permission denied: runs/x"
