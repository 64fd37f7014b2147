"""What every command line of the package shares: flag parsing, one-line errors, exit codes.

Usage errors (bad flags, a run directory that cannot take the run, missing data) exit with
code 2, runtime failures (corrupt data, divergence, a full disk) with 1, an interrupt with
128 + the signal; each prints one `error: ...` line on stderr, with the traceback only under
`--verbose` or `NS3L_VERBOSE=1`.
"""

import atexit
import json
import os
import signal
import sys

from absl import app, flags

from ns3l_tf import flagfiles, requirements
from ns3l_tf.settings import ConfigError

USAGE_ERROR = 2
RUNTIME_ERROR = 1
VERBOSE_ENV = "NS3L_VERBOSE"

_VERBOSE = flags.DEFINE_bool(
    "verbose", False, f"Show the traceback of an error (also: {VERBOSE_ENV}=1)."
)
OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Empty the run's directory first, discarding what it holds."
)
flags.DEFINE_string(
    "preset",
    None,
    "A flagfile shipped with the package, by name: its flags in place of this one (later "
    f"flags override them). One of: {', '.join(flagfiles.presets())}.",
)


def _one_line(message: str) -> str:
    return f"error: {' '.join(str(message).split())}"


def usage_error(message: str):
    """Ends the program with `error: <message>` on one stderr line and exit code 2."""
    print(_one_line(message), file=sys.stderr)
    sys.exit(USAGE_ERROR)


def runtime_error(message: str):
    """Ends the program with `error: <message>` on one stderr line and exit code 1, or
    re-raises the exception being handled under `--verbose`."""
    if verbose():
        raise  # noqa: PLE0704 (called from an except block)
    print(_one_line(message), file=sys.stderr, flush=True)
    # What the failed operation left open is closed as the program ends, and may fail again
    # (Keras's saving abandons a ZipFile, h5py an HDF5 file, whose close fails on a full disk;
    # h5py prints that traceback past `sys.unraisablehook`): the one line above has said it.
    sys.unraisablehook = lambda unraisable: None
    if sys.stderr is sys.__stderr__:  # a command's own stderr, not one a caller captures
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
    sys.exit(RUNTIME_ERROR)


def require_tensorflow() -> None:
    """Ends the program with one line saying which extra to install when TensorFlow is
    missing (exit code 2: nothing ran). Called once the flags are checked, before any
    TensorFlow is needed, so a bad flag is reported first."""
    if not requirements.tensorflow_installed():
        usage_error(requirements.MISSING_TENSORFLOW)


def use_backend(name: str) -> None:
    """Makes Keras run on `name` (a resolved `--backend`): sets `KERAS_BACKEND` before Keras
    is imported, or ends the program with one line (exit code 2) where that cannot be done."""
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != name:
        usage_error(
            f"--backend={name}: Keras was already imported on {keras.backend.backend()}; set "
            "KERAS_BACKEND before importing it"
        )
    if name == "jax" and not requirements.jax_installed():
        usage_error(requirements.MISSING_JAX)
    os.environ["KERAS_BACKEND"] = name


def verbose() -> bool:
    return (_VERBOSE.present and _VERBOSE.value) or os.environ.get(VERBOSE_ENV) == "1"


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop (which stops cleanly on its own): a
    `KeyboardInterrupt` that remembers its signal."""

    signum = signal.SIGTERM


def interrupted(message: str, signum: int | KeyboardInterrupt):
    """Ends the program with `message` on stderr and exit code 128 + the signal number:
    `signum`, or the signal of an interrupt (`Terminated`: 15; Ctrl-C's plain
    `KeyboardInterrupt`: 2)."""
    if isinstance(signum, KeyboardInterrupt):
        signum = getattr(signum, "signum", signal.SIGINT)
    print(message, file=sys.stderr)
    sys.exit(128 + int(signum))


def raise_keyboard_interrupt_on_sigterm() -> None:
    """SIGTERM, like SIGINT, raises a `KeyboardInterrupt` (`Terminated`) outside the training
    loop, which stops cleanly on either."""

    def handle(signum, frame):
        del signum, frame
        raise Terminated

    signal.signal(signal.SIGTERM, handle)


def is_chief_process(strategy: str) -> bool:
    """Whether this process writes a run (read from `TF_CONFIG`, without TensorFlow): always,
    except on the workers of a multi-worker cluster other than the chief (or worker 0). Every
    process of a JAX cluster writes one (see `process_run_dir`)."""
    if strategy != "multi_worker":
        return True
    spec = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = spec.get("task", {})
    if task.get("type") == "chief":
        return True
    return (
        task.get("type") == "worker"
        and task.get("index") == 0
        and ("chief" not in spec.get("cluster", {}))
    )


def process_run_dir(run_dir: str, strategy: str) -> str:
    """The directory this process writes its run into: `run_dir`, except on process i > 0 of
    a JAX cluster (`data_parallel` with `KERAS_DISTRIBUTION_PROCESS_ID=i`), which writes its
    own copy beside it, `<run_dir>.process<i>`.

    A JAX cluster runs one program on every process (each `model.save_weights` and each
    prediction is a collective that all of them join), so every process keeps checkpoints,
    the same ones, and resumes from its own: no storage needs to be shared.
    """
    process = os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "0")
    if strategy != "data_parallel" or process == "0":
        return run_dir
    return f"{run_dir.rstrip(os.sep)}.process{process}"


def parse_flags(argv: list[str], define_flags=None) -> list[str]:
    """absl flag parsing whose errors exit with code 2 and one line (absl's own exit with 1),
    after `--preset` and `--flagfile` are expanded (`ns3l_tf.flagfiles`: includes relative to
    the including file).

    Args:
      argv: the command line.
      define_flags: called with the expanded flags before parsing, to define flags they
        make known (`config.define_methods_flags`: those of a `--methods_module`); may
        raise `ConfigError`.
    """
    try:
        args = flagfiles.expand(argv[1:])
        if define_flags is not None:
            define_flags(args)
        return flags.FLAGS([argv[0], *args])
    except (flags.Error, flagfiles.FlagfileError, ConfigError) as error:
        usage_error(str(error))


HELP_FLAGS = ("--help", "-help", "-h", "--helpshort", "-helpshort", "-?")


def help_text(module_name: str) -> str:
    """A command line's help: its module's docstring, then its key flags (its own and those
    it adopts) with their help and defaults."""
    module = sys.modules[module_name]
    flags_help = flags.FLAGS.module_help(module)
    return (
        f"{(module.__doc__ or '').strip()}\n\nflags:\n{flags_help}\n\n"
        "--helpfull lists every flag, of Keras and absl too; --version prints the version."
    )


def flags_parser(module_name: str, define_flags=None):
    """`parse_flags` for the command line of `module_name`, answering `--help` (its
    docstring and flags, exit 0, also from a console script) and `--version` first;
    `define_flags` as in `parse_flags`.
    """

    def parse(argv: list[str]) -> list[str]:
        args = argv[1:] if "--" not in argv else argv[1 : argv.index("--")]
        if "--version" in args or "-version" in args:
            import ns3l_tf

            print(f"ns3l_tf {ns3l_tf.__version__}")
            sys.exit(0)
        if any(arg in HELP_FLAGS for arg in args):
            print(help_text(module_name))
            sys.exit(0)
        return parse_flags(argv, define_flags)

    return parse


def run(main, module_name: str, define_flags=None) -> None:
    """Runs a command line, `app.run(main)` with `flags_parser(module_name, define_flags)`,
    and ends the process with its exit code.

    The end skips the interpreter's teardown: once TensorFlow or JAX is loaded it spends about a
    second destroying objects whose work is done. The exit handlers still run (a JAX cluster's
    shutdown, logging's flush) and standard output and error are flushed; every file the
    package writes is closed before `main` returns or raises `SystemExit`. An exception other
    than `SystemExit` ends the process as usual, with its traceback.
    """
    try:
        app.run(main, flags_parser=flags_parser(module_name, define_flags))
        code = 0
    except SystemExit as exit:
        if exit.code is not None and not isinstance(exit.code, int):
            raise  # a message: Python prints it and exits with 1
        code = exit.code or 0
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def reject_arguments(argv: list[str]) -> None:
    """Usage error for positional arguments (absl leaves them in argv[1:])."""
    if len(argv) > 1:
        usage_error(f"unexpected arguments {argv[1:]}; flags look like --name=value")
