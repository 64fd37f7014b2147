"""`ns3l-train --backend=jax`: trains, records its backend, and resumes after kill -9 to the
same weights and results as an uninterrupted JAX run."""

import json
import random
import signal
import sys
import time

import numpy as np
import pytest

from .. import processes
from .. import test_reliability as reliability
from ..conftest import REPO_ROOT


@pytest.fixture(scope="module")
def uninterrupted_jax(tmp_path_factory):
    pytest.importorskip("jax")
    output_dir = tmp_path_factory.mktemp("jax_reference") / "run"
    result = reliability._train(output_dir, "--backend=jax")
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir


@pytest.mark.large
def test_a_jax_run_records_its_backend(uninterrupted_jax):
    results = reliability._results(uninterrupted_jax)
    assert results["backend"] == "jax" and results["flags"]["backend"] == "jax"
    assert set(results["versions"]) == {"tensorflow", "keras", "jax"}
    assert [r["step"] for r in results["history"]] == [8, 16, 24]
    assert all(0.0 < r["test_error"] < 100.0 for r in results["history"])
    assert results["history"][-1]["ns3l_negatives"] > 0  # the NS3L term ran


@pytest.mark.large
def test_sigkill_then_rerun_resumes_a_jax_run_bit_for_bit(uninterrupted_jax, tmp_path):
    output_dir = tmp_path / "run"
    process = reliability._start(output_dir, "--backend=jax")
    reliability._wait_for_checkpoint(output_dir, process)
    time.sleep(random.Random(1).uniform(0.0, 0.5))
    process.send_signal(signal.SIGKILL)
    process.communicate()
    killed_at = json.loads((output_dir / "checkpoints" / "state.json").read_text())["step"]

    resumed = reliability._train(output_dir, "--backend=jax")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming at step {killed_at}" in resumed.stderr
    results = reliability._results(output_dir)
    assert results["resumed_at_steps"] == [killed_at]
    assert reliability._figures(results) == reliability._figures(
        reliability._results(uninterrupted_jax)
    )
    for got, want in zip(
        reliability._weights(output_dir), reliability._weights(uninterrupted_jax), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_backend_and_strategy_errors_are_one_line(tmp_path):
    cases = [
        (["--backend=torch"], "--backend=torch: unknown backend; allowed: tensorflow, jax"),
        (
            ["--backend=tensorflow", "--strategy=data_parallel"],
            "--strategy=data_parallel: not on --backend=tensorflow; allowed there: default, "
            "mirrored, multi_worker",
        ),
        (
            ["--backend=jax", "--strategy=mirrored"],
            "--strategy=mirrored: not on --backend=jax; allowed there: default, data_parallel",
        ),
    ]
    for flags, message in cases:
        result = reliability._train(tmp_path / "run", *flags)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == f"error: {message}"
        assert not (tmp_path / "run").exists()


@pytest.mark.large
def test_a_two_trial_bayesian_search_on_jax(tmp_path):
    pytest.importorskip("jax")
    tune_dir = tmp_path / "search"
    command = [
        sys.executable,
        "-m",
        "ns3l_tf.tune",
        *[f for f in reliability.TINY if not f.startswith(("--checkpoint_every", "--determ"))],
        "--train_steps=4",
        "--eval_every=2",
        "--lr_decay_step=0",
        "--backend=jax",
        "--max_trials=2",
        f"--tune_dir={tune_dir}",
    ]
    result = processes.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = json.loads((tune_dir / "trials.json").read_text())["trials"]
    assert len(trials) == 2
    for trial in trials:
        assert 0.05 / 10 <= trial["ns3l_threshold"] <= 2.0 / 10
        assert 0.1 <= trial["ns3l_weight"] <= 10.0 and 0.0 < trial["val_error"] < 100.0
    assert (tune_dir / "best.cfg").read_text().count("--ns3l_threshold=") == 1
