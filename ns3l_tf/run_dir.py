"""A run directory: one configuration, one live run at a time, finished once results.json exists.

    run = RunDirectory(config.run_dir)
    run.check_usable()                    # before anything loads: a file? not writable?
    run.open(config.run_defining_values(), overwrite=False)   # lock; refuse other flags
    if run.finished(): ...                # results.json: the run is done

`config.json` records the flags that define the run when it starts; a later command into the
same directory with other values of them is refused (naming them) unless it asks to
overwrite, which empties the directory first. `.lock` is held (an advisory `flock`) for the
life of the process, so a second live run into the directory is refused, and a killed run
leaves no stale lock. This module imports no TensorFlow.
"""

import fcntl
import json
import os
import shutil

from ns3l_tf import io_utils
from ns3l_tf.settings import ConfigError

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
MODEL_FILE = "model.keras"
LOCK_FILE = ".lock"


class RunDirError(ConfigError):
    """The run directory cannot take this run; the message names the flag and why."""


class DamagedFileError(RuntimeError):
    """A file a run wrote cannot be read back (truncated, not JSON, not a `.keras` archive);
    the message names it. A runtime failure (exit code 1), not a usage error."""


def read_json(path: str) -> dict:
    """The JSON object in `path`, a file the package wrote.

    Raises:
      DamagedFileError: it is not valid UTF-8 JSON holding an object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DamagedFileError(
            f"{path}: damaged, not valid JSON ({error}); --overwrite starts the run again"
        ) from None
    if not isinstance(value, dict):
        raise DamagedFileError(f"{path}: damaged, holds a {type(value).__name__}, not an object")
    return value


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def differences(saved: dict, wanted: dict, defaults: dict | None = None) -> list[str]:
    """`--flag=saved→wanted` for each flag whose value differs (or exists on one side only).

    A flag that `saved` lacks (one added to the package after the run started) and that
    `wanted` holds at its value in `defaults` is no difference: the run computed that default.
    """
    defaults = defaults or {}
    keys = sorted(set(saved) | set(wanted))
    return [
        f"--{k}={saved.get(k, '(unset)')}→{wanted.get(k, '(unset)')}"
        for k in keys
        if saved.get(k) != wanted.get(k)
        and not (k not in saved and k in defaults and wanted.get(k) == defaults[k])
    ]


class RunDirectory:
    """The directory of one run.

    Args:
      path: the directory (created when the run starts).
      flag: the flag that named it, for messages (`output_dir`, `tune_dir`).
    """

    def __init__(self, path: str, flag: str = "output_dir"):
        self.path = path
        self.flag = flag
        self._lock = None
        self._flags = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def check_usable(self) -> None:
        """Creates the directory, or raises `RunDirError` if the path is a file or cannot be
        created or written (checked from the flags alone, before any data loads)."""
        prefix = f"--{self.flag}={self.path}"
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunDirError(f"{prefix}: is a file, not a directory")
        existing = _nearest_existing(self.path)
        if not os.path.isdir(existing):
            raise RunDirError(f"{prefix}: {existing} is a file, not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise RunDirError(f"{prefix}: {existing} is not writable")
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as error:
            raise RunDirError(f"{prefix}: cannot be created ({error.strerror})") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunDirError(f"{prefix}: is not writable")

    def open(
        self,
        flags: dict,
        overwrite: bool = False,
        record: bool = True,
        defaults: dict | None = None,
    ) -> "RunDirectory":
        """Locks the directory and checks (or records) the flags that define the run.

        Args:
          flags: `{flag: value}` that define the run (JSON-serialisable).
          overwrite: empty the directory first (after taking the lock).
          record: write `config.json` now for a new run; False defers it to `record_flags()`
            (the command line records them once the data has loaded, so that a run that
            fails on its data leaves nothing that would refuse the corrected retry).

        Raises:
          RunDirError: another live run holds it, or it holds a run with other flags.
        """
        self.check_usable()
        self._lock = open(self.file(LOCK_FILE), "a+")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            owner = self._lock.read().strip() or "unknown"
            self._lock.close()
            self._lock = None
            raise RunDirError(
                f"--{self.flag}={self.path}: in use by another run (pid {owner}); wait for it "
                "or choose another directory"
            ) from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        io_utils.remove_temporaries(self.path)  # of a writer killed mid-write: the lock is ours
        if overwrite:
            self.clear()
        saved = self.saved_flags()
        self._flags = flags
        if saved is None:
            if record:
                self.record_flags()
        elif changed := differences(saved, flags, defaults):
            raise RunDirError(
                f"--{self.flag}={self.path}: holds a run with other flags ({', '.join(changed)}); "
                "pass the same flags to resume it, --overwrite to start again, or choose "
                "another directory"
            )
        return self

    def record_flags(self) -> None:
        """Writes the flags given to `open` as `config.json`, unless it exists."""
        if not os.path.exists(self.file(CONFIG_FILE)):
            io_utils.write_json(self.file(CONFIG_FILE), self._flags)

    def saved_flags(self) -> dict | None:
        """The flags recorded when the run started, or None for a new directory."""
        path = self.file(CONFIG_FILE)
        return read_json(path) if os.path.exists(path) else None

    def clear(self) -> None:
        """Removes everything in the directory but the lock."""
        for name in os.listdir(self.path):
            if name == LOCK_FILE:
                continue
            path = self.file(name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def finished(self) -> dict | None:
        """`results.json` of a finished run, or None."""
        path = self.file(RESULTS_FILE)
        return read_json(path) if os.path.exists(path) else None

    def close(self) -> None:
        """Releases the lock."""
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


def finished_model_path(path: str) -> str:
    """The `model.keras` of the finished run in `path`.

    Raises:
      RunDirError: no such directory, or no finished run in it (naming which).
    """
    if not os.path.isdir(path):
        raise RunDirError(f"--run_dir={path}: no such directory")
    model = os.path.join(path, MODEL_FILE)
    if not os.path.isfile(model) or not os.path.isfile(os.path.join(path, RESULTS_FILE)):
        started = os.path.isfile(os.path.join(path, CONFIG_FILE))
        state = "has not finished: train it to the end" if started else "is not a run directory"
        raise RunDirError(f"--run_dir={path}: no {MODEL_FILE} (the run {state})")
    return model
