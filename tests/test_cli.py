"""`ns3l_tf.cli.run`: a command line's exit code, output and exit handlers survive its end
without the interpreter's teardown."""

import subprocess
import sys
import textwrap

import pytest

from .conftest import REPO_ROOT

PROGRAM = textwrap.dedent(
    """
    import atexit, sys
    from ns3l_tf import cli

    class Teardown:
        def __del__(self):
            print("teardown ran", flush=True)

    kept_until_teardown = Teardown()

    def main(argv):
        atexit.register(print, "exit handler ran")
        print("unflushed output", end="")
        {ending}

    cli.run(main, __name__)
    """
)


@pytest.mark.parametrize(
    "ending, code",
    [("return None", 0), ("sys.exit(3)", 3), ("cli.usage_error('bad')", 2)],
)
def test_a_command_ends_with_its_code_output_and_exit_handlers_but_no_teardown(ending, code):
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(ending=ending)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == code, result.stderr
    assert result.stdout == "unflushed outputexit handler ran\n"
    assert result.stderr == ("error: bad\n" if code == 2 else "")
