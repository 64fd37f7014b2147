"""What every command line of the package shares: flag parsing and usage errors (exit 2)."""

import sys

from absl import flags

USAGE_ERROR = 2


def usage_error(message: str):
    """Ends the program with `error: <message>` on one stderr line and exit code 2."""
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(USAGE_ERROR)


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing whose errors exit with code 2 and one line (absl's own exit with 1).

    Pass as `app.run(main, flags_parser=parse_flags)`.
    """
    try:
        return flags.FLAGS(argv)
    except flags.Error as error:
        usage_error(str(error))


def reject_arguments(argv: list[str]) -> None:
    """Usage error for positional arguments (absl leaves them in argv[1:])."""
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}; flags look like --name=value")
