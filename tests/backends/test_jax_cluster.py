"""A JAX cluster of two processes (`--strategy=data_parallel` with Keras's
`KERAS_DISTRIBUTION_*` variables, CPU collectives over Gloo on localhost): it trains as one
process with two devices does, each process writes its own run, and after kill -9 of both the
same commands resume from the step both hold."""

import json
import os
import signal
import sys
import time

import numpy as np
import pytest

from .. import processes
from ..conftest import REPO_ROOT
from ..test_distribute import _free_ports

TINY = [
    "--flagfile=flags/fmnist_quick.cfg",
    "--backend=jax",
    "--strategy=data_parallel",
    "--ns3l_views=1",  # one view: a smaller step to compile in each of the five processes
    "--train_steps=4",
    "--eval_every=2",
    "--checkpoint_every=1",
    "--lr_decay_step=0",
    "--batch_size=16",
    "--unlabeled_batch_size=16",
    "--num_validation=500",
    "--deterministic",
]


def _start(output_dir, env):
    return processes.Popen(
        [sys.executable, "-m", "ns3l_tf.train", *TINY, f"--output_dir={output_dir}"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=processes.PIPE,
        stderr=processes.PIPE,
        text=True,
    )


def _start_cluster(output_dir):
    (port,) = _free_ports(1)
    return [
        _start(
            output_dir,
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"localhost:{port}",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                "KERAS_DISTRIBUTION_PROCESS_ID": str(index),
            },
        )
        for index in range(2)
    ]


def _finish(processes, timeout=500):
    """Each process's stderr once all have ended; if one fails, the other is killed (it would
    wait for its peer until the coordination service times out)."""
    deadline = time.time() + timeout
    while any(p.poll() is None for p in processes):
        if any(p.returncode not in (None, 0) for p in processes) or time.time() > deadline:
            for p in processes:
                p.kill()
        time.sleep(0.1)
    errors = [p.communicate()[1] for p in processes]
    for p, stderr in zip(processes, errors):
        assert p.returncode == 0, stderr[-3000:]
    return errors


def _results(output_dir):
    return json.loads((output_dir / "results.json").read_text())


def _weights(output_dir):
    with np.load(output_dir / "checkpoints" / _state(output_dir)["file"]) as arrays:
        return [arrays[k] for k in sorted(arrays.files)]


def _state(output_dir):
    return json.loads((output_dir / "checkpoints" / "state.json").read_text())


@pytest.mark.large
def test_two_jax_processes_train_as_two_devices_of_one_and_resume_after_kill(tmp_path):
    pytest.importorskip("jax")
    one = tmp_path / "one_process"
    _finish([_start(one, {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})])

    cluster = tmp_path / "cluster"
    processes = _start_cluster(cluster)
    while not (cluster / "checkpoints" / "state.json").exists():
        assert all(p.poll() is None for p in processes), processes[0].communicate()[1][-3000:]
        time.sleep(0.05)
    for p in processes:
        p.send_signal(signal.SIGKILL)
        p.communicate()
    assert not (cluster / "results.json").exists()

    errors = _finish(_start_cluster(cluster))  # the same commands
    steps = [int(e.split("resuming at step ")[1].split()[0]) for e in errors]
    assert steps[0] == steps[1] and 0 < steps[0] < 4
    runs = [cluster, tmp_path / "cluster.process1"]  # process 1 writes its own run beside
    for run in runs:
        results = _results(run)
        assert results["num_replicas"] == 2 and results["backend"] == "jax"
        assert results["resumed_at_steps"] == steps[:1]
        # One process with two devices computes the same: errors alike to the image (one
        # image is 0.01 points of the test split; the cluster's evaluation sums in float64,
        # `Model.evaluate` in float32).
        for got, want in zip(results["history"], _results(one)["history"], strict=True):
            assert got["step"] == want["step"]
            for key in ("val_error", "test_error"):
                assert got[key] == pytest.approx(want[key], abs=1e-3), (run.name, key)
        for got, want in zip(_weights(run), _weights(one), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert (run / "model.keras").exists() and (run / "evaluation.json").exists()


@pytest.mark.parametrize(
    "variables, message",
    [
        (
            {"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "0"},
            "--strategy=data_parallel on several processes: set "
            "KERAS_DISTRIBUTION_JOB_ADDRESSES too",
        ),
        (
            {
                "KERAS_DISTRIBUTION_JOB_ADDRESSES": "localhost:1",
                "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
                "KERAS_DISTRIBUTION_PROCESS_ID": "2",
            },
            "--strategy=data_parallel: KERAS_DISTRIBUTION_NUM_PROCESSES=2 and "
            "KERAS_DISTRIBUTION_PROCESS_ID=2 must be whole numbers with 0 <= process id < "
            "processes",
        ),
    ],
)
def test_an_incomplete_cluster_is_one_line_naming_the_variables(variables, message, monkeypatch):
    from ns3l_tf import distribute

    for name in distribute.JAX_CLUSTER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(distribute.StrategyError) as error:
        distribute._join_jax_cluster()
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    "strategy, process, expected",
    [
        ("data_parallel", None, "runs/a"),
        ("data_parallel", "0", "runs/a"),
        ("data_parallel", "3", "runs/a.process3"),
        ("default", "3", "runs/a"),
    ],
)
def test_process_i_of_a_jax_cluster_writes_beside_the_run(strategy, process, expected, monkeypatch):
    from ns3l_tf import cli

    monkeypatch.delenv("KERAS_DISTRIBUTION_PROCESS_ID", raising=False)
    if process is not None:
        monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", process)
    assert cli.process_run_dir("runs/a", strategy) == expected
