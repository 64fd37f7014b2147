"""A base method of a user's own, in one file outside the package, reached from every command
line with `--methods_module`: trained, killed and resumed, rerun into its directory, and
evaluated."""

import json
import os
import signal
import sys
import textwrap

import pytest

from .. import processes
from ..conftest import REPO_ROOT
from .lab_methods import LAB_METHODS


def _command(module, *argv, cwd):
    """`(argv, env)` of `python -m module argv` that can import the modules in `cwd` (and
    reads the tests' small Fashion-MNIST, whose hook is on the tests' `PYTHONPATH`)."""
    paths = [str(cwd), REPO_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return [sys.executable, "-m", module, *argv], env


def _run(module, *argv, cwd):
    command, env = _command(module, *argv, cwd=cwd)
    return processes.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_an_unknown_methods_module_is_one_usage_line(tmp_path):
    result = _run("ns3l_tf.train", "--methods_module=no_such_lab.methods", cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "error: --methods_module=no_such_lab.methods: cannot import it (No module named"
        )
    )


@pytest.mark.large
def test_a_base_method_of_ones_own_trains_resumes_reruns_and_evaluates_from_the_cli(tmp_path):
    from ..test_reliability import _wait_for_checkpoint

    (tmp_path / "lab_methods.py").write_text(textwrap.dedent(LAB_METHODS))
    output_dir = tmp_path / "run"
    train = [
        "--methods_module=lab_methods",
        "--algorithm=smoothed",
        "--smoothed_epsilon=0.2",
        "--train_steps=6",
        "--eval_every=2",
        "--checkpoint_every=1",
        "--batch_size=16",
        "--num_labeled=100",
        "--num_validation=500",
        f"--output_dir={output_dir}",
    ]
    command, env = _command("ns3l_tf.train", *train, cwd=tmp_path)
    process = processes.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=processes.PIPE, stderr=processes.PIPE
    )
    _wait_for_checkpoint(output_dir, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not (output_dir / "results.json").exists()
    killed_at = json.loads((output_dir / "checkpoints" / "state.json").read_text())["step"]

    result = _run("ns3l_tf.train", *train, cwd=tmp_path)  # the same command resumes
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at step {killed_at}" in result.stderr
    results = json.loads((output_dir / "results.json").read_text())
    assert results["resumed_at_steps"] == [killed_at]
    assert results["flags"]["methods_module"] == "lab_methods"
    assert results["flags"]["smoothed_epsilon"] == 0.2
    assert [r["step"] for r in results["history"]] == [2, 4, 6]
    assert all(r["smoothed_loss"] > 0 for r in results["history"])
    saved = json.loads((output_dir / "config.json").read_text())
    assert saved["algorithm"] == "smoothed" and saved["smoothed_epsilon"] == 0.2

    again = _run("ns3l_tf.train", *train, cwd=tmp_path)  # its directory, its flags: accepted
    assert again.returncode == 0 and "finished already" in again.stdout, again.stderr[-2000:]
    other = _run("ns3l_tf.train", *train, "--smoothed_epsilon=0.3", cwd=tmp_path)
    assert other.returncode == 2 and "--smoothed_epsilon=0.2→0.3" in other.stderr

    evaluated = _run("ns3l_tf.evaluate", f"--run_dir={output_dir}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert f"{results['test_error']:.2f}%" in evaluated.stdout
