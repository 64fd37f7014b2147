"""The programs `tests.processes` forks see what a fresh interpreter would give them."""

import json
import os
import signal
import subprocess
import sys

import pytest

from . import processes

pytestmark = [
    pytest.mark.large,  # a server's start (about 5 s): the large tests' machinery
    pytest.mark.skipif(
        os.environ.get(processes.FRESH_PROCESSES_ENV) == "1", reason="fresh processes asked for"
    ),
]

REPORT = (
    "import json, os, sys\n"
    "print(json.dumps({'argv': sys.argv, 'cwd': os.getcwd(), 'path0': sys.path[0],\n"
    "                  'env': os.environ.get('CHOSEN'), 'pid': os.getpid(),\n"
    "                  'name': __name__}))\n"
    "print('to stderr', file=sys.stderr)\n"
)


def _report(result):
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_code_gets_its_arguments_directory_environment_and_streams(tmp_path):
    env = {**os.environ, "CHOSEN": "yes"}
    result = processes.run(
        [sys.executable, "-c", REPORT, "a", "b"], cwd=tmp_path, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    report = _report(result)
    assert report["argv"] == ["-c", "a", "b"]
    assert report["cwd"] == str(tmp_path)
    assert report["path0"] == ""
    assert report["env"] == "yes"
    assert report["name"] == "__main__"
    assert report["pid"] != os.getpid()
    assert result.stderr == "to stderr\n"
    assert isinstance(result, subprocess.CompletedProcess)


def test_a_script_and_a_module_run_as_python_runs_them(tmp_path):
    script = tmp_path / "report.py"
    script.write_text(REPORT)
    result = processes.run([sys.executable, str(script), "x"], capture_output=True, text=True)
    report = _report(result)
    assert report["argv"] == [str(script), "x"]
    assert report["path0"] == str(tmp_path)
    (tmp_path / "reporting.py").write_text(REPORT)
    report = _report(
        processes.run([sys.executable, "-m", "reporting", "y"], cwd=tmp_path, capture_output=True,
                      text=True, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    )  # fmt: skip
    assert report["argv"] == [str(tmp_path / "reporting.py"), "y"]
    assert report["name"] == "__main__"


@pytest.mark.parametrize(
    "code, returncode, stderr_end",
    [
        ("import sys; sys.exit(3)", 3, ""),
        ("import sys; sys.exit('error: bad flag')", 1, "error: bad flag\n"),
        ("raise ValueError('boom')", 1, "ValueError: boom\n"),
        ("raise KeyboardInterrupt", -signal.SIGINT, "KeyboardInterrupt\n"),
        ("import atexit; atexit.register(print, 'exit handler ran')", 0, ""),
    ],
)
def test_exit_codes_and_messages_are_the_interpreters(code, returncode, stderr_end):
    result = processes.run([sys.executable, "-c", code], capture_output=True, text=True)
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, fresh.returncode) == (returncode, returncode)
    assert result.stderr.endswith(stderr_end) and fresh.stderr.endswith(stderr_end)
    assert result.stdout == fresh.stdout


def test_a_started_program_can_be_signalled_and_times_out():
    process = processes.Popen(
        [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        stdout=processes.PIPE, stderr=processes.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline() == "started\n"
    assert process.poll() is None
    with pytest.raises(processes.TimeoutExpired):
        process.wait(timeout=0.2)
    process.send_signal(signal.SIGKILL)
    assert process.communicate() == ("", "")
    assert process.returncode == -signal.SIGKILL
    with pytest.raises(processes.TimeoutExpired):
        processes.run([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)


def test_a_program_that_sets_another_backend_itself_is_refused():
    code = "import os; os.environ['KERAS_BACKEND'] = 'jax'; import keras"
    result = processes.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "tests.fork_server: the program set KERAS_BACKEND=jax after Keras was imported on "
        "tensorflow; start it with KERAS_BACKEND in its env"
    )


def test_each_program_draws_its_own_numpy_numbers():
    code = "import numpy as np; print(np.random.randint(1 << 30))"
    draws = {processes.run([sys.executable, "-c", code], capture_output=True).stdout for _ in "ab"}
    assert len(draws) == 2


def test_other_commands_and_options_start_a_fresh_interpreter():
    result = processes.run([sys.executable, "-S", "-c", "import sys; print(sys.flags.no_site)"],
                           capture_output=True, text=True)  # fmt: skip
    assert result.stdout == "1\n"
    with processes.Popen(["true"]) as process:
        assert isinstance(process, subprocess.Popen)


NESTED = (
    "import json, subprocess, sys\n"
    "nested = subprocess.run([sys.executable, '-c', 'import sys; print(\"tensorflow\" in "
    "sys.modules)'], capture_output=True, text=True, check=True)\n"
    "echo = subprocess.run(['echo', 'plain'], capture_output=True, text=True)\n"
    "fed = subprocess.run([sys.executable, '-c', 'print(input())'], input='fed',\n"
    "                     capture_output=True, text=True)\n"
    "print(json.dumps([nested.stdout.strip(), echo.stdout.strip(), fed.stdout.strip()]))\n"
)


def test_a_programs_own_python_programs_are_forked_too():
    # Forked from the server that forked the program (TensorFlow already imported); other
    # commands, and options a fork does not take (input=), run as subprocess runs them.
    result = processes.run([sys.executable, "-c", NESTED], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["True", "plain", "fed"]
    fresh = subprocess.run([sys.executable, "-c", NESTED], capture_output=True, text=True)
    assert json.loads(fresh.stdout) == ["False", "plain", "fed"]
