"""Starts the Python programs the tests run as forks of an interpreter that has imported
TensorFlow, JAX and scikit-learn once (`tests/processes.py` is its client).

A fresh `python -m ns3l_tf.train ...` spends about 4 seconds importing these libraries before
it reads a flag, and the suite starts over a hundred such processes. This server imports them
once (and with TensorFlow, Keras, on the backend in the server's `KERAS_BACKEND`) and forks
each program from that state: the program then runs in its own process, with its own pid,
arguments, working directory, environment and standard streams, as `python -m MODULE`,
`python -c CODE` or `python SCRIPT` would run it, only without those imports. A program that
sets another `KERAS_BACKEND` itself ends with exit code 1 and says why.

Run as `python -m tests.fork_server SOCKET_PATH`; it prints `ready` once it listens. Each
connection carries one program: an 8-byte length and the three standard-stream descriptors
(`socket.send_fds`), then the JSON request `{"argv": [...], "cwd": ..., "env": {...}}`, where
`argv` is the command line after the interpreter. The server answers `{"pid": N}` and, when the
program has ended, `{"returncode": N}` (negative: the signal that ended it, as `subprocess`
reports it), one JSON object per line.
"""

import atexit
import contextlib
import importlib
import json
import os
import runpy
import signal
import socket
import struct
import sys
import traceback
import types

# Imported before any fork: they are most of a fresh process's start-up, and none of them
# starts a backend, a thread pool or a device (those begin in each forked program).
# TensorFlow imports Keras too, on the backend in the server's `KERAS_BACKEND`.
PRELOADED_MODULES = ("numpy", "tensorflow", "jax", "sklearn.base", "absl.flags")
LENGTH = struct.Struct(">Q")


def _receive_request(connection):
    """The request and the three descriptors (stdin, stdout, stderr) it came with."""
    header, descriptors, _, _ = socket.recv_fds(connection, LENGTH.size, 3)
    (length,) = LENGTH.unpack(header)
    payload = b""
    while len(payload) < length:
        chunk = connection.recv(length - len(payload))
        if not chunk:
            raise ConnectionError("the client closed the connection mid-request")
        payload += chunk
    return json.loads(payload), descriptors


def _run_program(argv):
    """Runs `python ARGV...` in this process (its exit code: that of the `SystemExit` it may
    raise, else 0)."""
    if argv[0] == "-m":
        sys.argv = [argv[1], *argv[2:]]  # runpy puts the module's path in argv[0]
        sys.path[0] = os.getcwd()
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[0] == "-c":
        sys.argv = ["-c", *argv[2:]]
        sys.path[0] = ""
        main = sys.modules["__main__"] = types.ModuleType("__main__")
        exec(compile(argv[1], "<string>", "exec"), main.__dict__)  # noqa: S102
    else:
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
        runpy.run_path(argv[0], run_name="__main__")


def _exit_code(exit):
    """The exit code a fresh interpreter gives `raise SystemExit(exit.code)`."""
    if exit.code is None:
        return 0
    if isinstance(exit.code, int):
        return exit.code
    print(exit.code, file=sys.stderr)
    return 1


def _become_program(request, descriptors, closed_sockets, address):
    """In the forked child: takes the request's streams, directory and environment, runs the
    program and ends the process as the interpreter would (exit handlers run, streams
    flushed)."""
    for sock in closed_sockets:
        sock.close()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for target, descriptor in enumerate(descriptors):
        os.dup2(descriptor, target)
        os.close(descriptor)
    os.chdir(request["cwd"])
    server_env = dict(os.environ)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.modules["tests.processes"].route_subprocess_run(server_env, address)
    if "sitecustomize" in sys.modules:  # a fresh process runs it with its own environment
        importlib.reload(sys.modules["sitecustomize"])
    if "numpy" in sys.modules:  # its global generator would otherwise be the same in every fork
        sys.modules["numpy"].random.seed()
    try:
        _run_program(request["argv"])
        code = 0
    except SystemExit as exit:
        code = _exit_code(exit)
    except KeyboardInterrupt:  # as Python does: the traceback, then death by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # noqa: BLE001 (an uncaught error: its traceback and exit 1)
        traceback.print_exc()
        code = 1
    keras = sys.modules.get("keras")
    preloaded = keras.backend.backend() if keras else None
    if keras and os.environ.get("KERAS_BACKEND", preloaded) != preloaded:  # unlike a fresh run
        print(
            f"tests.fork_server: the program set KERAS_BACKEND={os.environ['KERAS_BACKEND']} "
            f"after Keras was imported on {preloaded}; start it with KERAS_BACKEND in its env",
            file=sys.stderr,
        )
        code = code or 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a stream the program closed
            stream.flush()
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


def _serve_one(connection, listener, address):
    """In a forked child that reports on one connection: forks the program, sends its pid,
    waits for it and sends its exit code."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request, descriptors = _receive_request(connection)
    pid = os.fork()
    if pid == 0:
        _become_program(request, descriptors, [connection, listener], address)
    for descriptor in descriptors:
        os.close(descriptor)
    _send_line(connection, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    _send_line(connection, {"returncode": os.waitstatus_to_exitcode(status)})


def _send_line(connection, message):
    connection.sendall(json.dumps(message).encode() + b"\n")


def serve(address):
    """Accepts programs on the Unix socket `address` until the process that started this
    server ends."""
    for name in PRELOADED_MODULES:
        with contextlib.suppress(ImportError):  # not installed: each program imports less
            importlib.import_module(name)
    importlib.import_module("tests.processes")  # routes the programs' own subprocess.run
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # reporters are reaped without a wait
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    listener.settimeout(1.0)
    print("ready", flush=True)
    while os.getppid() == parent:
        try:
            connection, _ = listener.accept()
        except TimeoutError:
            continue
        connection.settimeout(None)
        sys.stdout.flush()
        sys.stderr.flush()
        if os.fork() == 0:
            try:
                _serve_one(connection, listener, address)
            finally:
                os._exit(0)
        connection.close()


if __name__ == "__main__":
    serve(sys.argv[1])
