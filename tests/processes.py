"""`run` and `Popen` as in `subprocess`, for the Python programs the tests start: a program
runs in a process forked from a server that has already imported TensorFlow, JAX and
scikit-learn (`tests/fork_server.py`), about 4 seconds sooner than a fresh interpreter.

What a program sees is what `python -m MODULE` / `python -c CODE` / `python SCRIPT` would
give it: its own process and pid (to signal or kill), arguments, working directory,
environment and standard streams; its exit code, or minus the signal that ended it. One
server runs per xdist worker, per Keras backend (the program's `--backend` flag, else its
`KERAS_BACKEND`) and per environment, apart from the variables read only when a program runs
(`RUN_TIME_VARIABLES`): a variable read while those libraries import takes effect as it would
in a fresh process.

A forked program's own `subprocess.run` of a Python program (a benchmark starting its training
runs) is forked too, from the server that forked it where the environments agree
(`route_subprocess_run`).

Tests that check what a program imports, or that time a start-up, use `subprocess` itself.
`NS3L_TEST_FRESH_PROCESSES=1` makes these functions start fresh interpreters too.
"""

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from . import fork_server

FRESH_PROCESSES_ENV = "NS3L_TEST_FRESH_PROCESSES"
PIPE, DEVNULL, STDOUT = subprocess.PIPE, subprocess.DEVNULL, subprocess.STDOUT
TimeoutExpired, CompletedProcess = subprocess.TimeoutExpired, subprocess.CompletedProcess

# Read by the package or by Keras when a program runs, never while the server's preloaded
# libraries import; a request may change them without a server of its own.
RUN_TIME_VARIABLES = frozenset(
    {
        "PYTEST_CURRENT_TEST",
        "TF_CONFIG",
        "KERAS_DISTRIBUTION_JOB_ADDRESSES",
        "KERAS_DISTRIBUTION_NUM_PROCESSES",
        "KERAS_DISTRIBUTION_PROCESS_ID",
        "NS3L_DATA_DIR",
        "XLA_FLAGS",  # read when a program first starts a JAX backend
    }
)
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Server:
    """A `tests.fork_server` process started with `env`, listening on a socket in a
    temporary directory."""

    def __init__(self, env):
        self._directory = tempfile.mkdtemp(prefix="ns3l-fork-server-")
        self.address = os.path.join(self._directory, "socket")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.fork_server", self.address],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._ready = False
        self._owner = os.getpid()

    def wait_until_ready(self):
        if not self._ready:
            line = self._process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(
                    f"tests.fork_server did not start (exit code {self._process.poll()}); "
                    f"set {FRESH_PROCESSES_ENV}=1 to run without it"
                )
            self._ready = True
        return self.address

    def stop(self):
        if self._owner != os.getpid():  # a fork of this process leaves its parent's servers
            return
        self._process.kill()
        self._process.wait()
        for name in os.listdir(self._directory):
            os.remove(os.path.join(self._directory, name))
        os.rmdir(self._directory)


_servers = {}
_servers_lock = threading.Lock()
_subprocess_run = subprocess.run  # `route_subprocess_run` replaces subprocess.run in programs
_SUPPORTED_OPTIONS = frozenset({"cwd", "env", "stdin", "stdout", "stderr", "text"})


def _server_key(env):
    return frozenset((k, v) for k, v in env.items() if k not in RUN_TIME_VARIABLES)


def _server_for(env):
    """The address of a server started with `env`, started by this process unless it is the
    server that forked this program."""
    key = _server_key(env)
    with _servers_lock:
        if key not in _servers:
            _servers[key] = _Server(env)
        return _servers[key].wait_until_ready()


class _ForkingServer:
    """The server that forked this program, as `_servers` holds the ones a process starts."""

    def __init__(self, address):
        self.address = address

    def wait_until_ready(self):
        return self.address

    def stop(self):
        pass


def route_subprocess_run(server_env, server_address):
    """Called in each forked program by the server (started with `server_env`, listening at
    `server_address`) that forked it: the Python programs it starts with `subprocess.run`
    are forked too, from that server where their environments agree."""
    _servers[_server_key(server_env)] = _ForkingServer(server_address)
    subprocess.run = run


@atexit.register
def _stop_servers():
    for server in _servers.values():
        server.stop()
    _servers.clear()


def _forkable(args):
    """Whether `args` is `python -m MODULE ...`, `python -c CODE ...` or `python SCRIPT ...`
    with this interpreter and no interpreter options."""
    if os.environ.get(FRESH_PROCESSES_ENV) == "1" or len(args) < 2:
        return False
    if os.fspath(args[0]) != sys.executable:
        return False
    first = os.fspath(args[1])
    return first in ("-m", "-c") and len(args) > 2 or not first.startswith("-")


def _backend(args, env):
    """The Keras backend the program runs on: its `--backend` flag, else `KERAS_BACKEND`.
    (TensorFlow imports Keras, so a server imports Keras on that backend; a program that
    chooses another one in a flagfile or in its code must say so in `env`, or it is refused
    with "Keras was already imported on ...".)"""
    for arg in args:
        if os.fspath(arg).startswith("--backend="):
            return os.fspath(arg).split("=", 1)[1]
    return env.get("KERAS_BACKEND", "tensorflow")


class ForkedProcess:
    """The `subprocess.Popen` interface (the parts the tests use) for a program forked by a
    `tests.fork_server`."""

    def __init__(self, args, *, cwd=None, env=None, stdin=None, stdout=None, stderr=None,
                 text=False):  # fmt: skip
        self.args = args
        self.returncode = None
        self.stdout = self.stderr = None
        self._received = b""
        self._readers = None
        env = dict(os.environ if env is None else env)
        server_env = {**env, "KERAS_BACKEND": _backend(args, env)}
        streams, ours = self._streams(stdin, stdout, stderr, text)
        self._connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._connection.connect(_server_for(server_env))
            request = json.dumps(
                {
                    "argv": [os.fspath(a) for a in args[1:]],
                    "cwd": os.path.abspath(os.fspath(cwd or os.getcwd())),
                    "env": env,
                }
            ).encode()
            socket.send_fds(self._connection, [fork_server.LENGTH.pack(len(request))], streams)
            self._connection.sendall(request)
        finally:
            for descriptor in ours:
                os.close(descriptor)
        self.pid = json.loads(self._line(timeout=None))["pid"]

    def _streams(self, stdin, stdout, stderr, text):
        """The program's three descriptors, and those of them this process closes once they
        are sent; a piped stream's read end becomes `self.stdout` / `self.stderr`."""
        if stdin == PIPE:
            raise ValueError("stdin=PIPE is not supported by tests.processes")
        sent, ours = [], []
        for index, (name, spec) in enumerate(
            (("stdin", stdin), ("stdout", stdout), ("stderr", stderr))
        ):
            if spec is None:
                descriptor = index  # inherited, as subprocess does
            elif name == "stderr" and spec == STDOUT:
                descriptor = sent[1]
            elif spec == DEVNULL:
                descriptor = os.open(os.devnull, os.O_RDWR)
                ours.append(descriptor)
            elif spec == PIPE:
                read_end, descriptor = os.pipe()
                ours.append(descriptor)
                pipe = open(read_end, "r" if text else "rb")  # noqa: SIM115 (closed by communicate)
                setattr(self, name, pipe)
            else:
                descriptor = spec if isinstance(spec, int) else spec.fileno()
            sent.append(descriptor)
        return sent, ours

    def _line(self, timeout):
        """The server's next JSON line; `None` if none came within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._received:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._connection.settimeout(remaining)
            try:
                chunk = self._connection.recv(4096)
            except (TimeoutError, BlockingIOError):  # none within the timeout (0: at once)
                return None
            if not chunk:
                raise RuntimeError(f"tests.fork_server lost the program {self.args!r}")
            self._received += chunk
        line, self._received = self._received.split(b"\n", 1)
        return line

    def _exit_code_within(self, timeout):
        """The exit code once the program has ended within `timeout` seconds, else `None`."""
        if self.returncode is None:
            line = self._line(timeout)
            if line is None:
                return None
            self.returncode = json.loads(line)["returncode"]
            self._connection.close()
        return self.returncode

    def poll(self):
        return self._exit_code_within(0)

    def wait(self, timeout=None):
        if self._exit_code_within(timeout) is None:
            raise TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, timeout=None):
        """Reads the piped streams to their end and waits for the program; returns
        `(stdout, stderr)`, `None` for a stream that is not piped."""
        if self._readers is None:
            self._readers = {}
            for name in ("stdout", "stderr"):
                pipe = getattr(self, name)
                if pipe is not None:
                    result = []
                    thread = threading.Thread(target=lambda p=pipe, r=result: r.append(p.read()))
                    thread.daemon = True
                    thread.start()
                    self._readers[name] = (thread, result)
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining():
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        for thread, _ in self._readers.values():
            thread.join(remaining())
            if thread.is_alive():
                raise TimeoutExpired(self.args, timeout)
        if self._exit_code_within(remaining()) is None:
            raise TimeoutExpired(self.args, timeout)
        outputs = {name: result[0] for name, (_, result) in self._readers.items()}
        for name in ("stdout", "stderr"):
            pipe = getattr(self, name)
            if pipe is not None:
                pipe.close()
        return outputs.get("stdout"), outputs.get("stderr")

    def send_signal(self, signal_number):
        if self.returncode is None:
            os.kill(self.pid, signal_number)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        for name in ("stdout", "stderr"):
            pipe = getattr(self, name)
            if pipe is not None and self._readers is None:
                pipe.close()
        self.wait()


def Popen(args, **kwargs):  # noqa: N802 (named as subprocess.Popen, which it stands in for)
    """`subprocess.Popen(args, **kwargs)`, forked from a preloaded interpreter where `args`
    runs a Python program with this interpreter."""
    if not _forkable(args) or set(kwargs) - _SUPPORTED_OPTIONS:
        return subprocess.Popen(args, **kwargs)
    return ForkedProcess(args, **kwargs)


def run(args, *, capture_output=False, timeout=None, check=False, **kwargs):
    """`subprocess.run(args, ...)`, forked from a preloaded interpreter where `args` runs a
    Python program with this interpreter."""
    if not _forkable(args) or set(kwargs) - _SUPPORTED_OPTIONS:
        return _subprocess_run(
            args, capture_output=capture_output, timeout=timeout, check=check, **kwargs
        )
    if capture_output:
        kwargs.update(stdout=PIPE, stderr=PIPE)
    process = Popen(args, **kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    result = CompletedProcess(args, process.returncode, stdout, stderr)
    if check:
        result.check_returncode()
    return result
