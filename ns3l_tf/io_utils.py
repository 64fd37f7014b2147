"""Atomic file output: a reader sees the old file or the complete new one, never a half.

Files get the permissions of an ordinary new file (0666 less the process's umask), not the
0600 of a private temporary file.
"""

import errno
import json
import os
import tempfile

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()
# How the temporary files of `atomic_write` begin.
TEMPORARY_PREFIX = ".tmp-"


def atomic_write(path: str, write_fn, suffix: str = "") -> None:
    """Calls `write_fn(tmp_path)` on a temporary file beside `path`, then renames it over `path`.

    A failure (a full disk, an interrupt) removes the temporary file and leaves `path` as it
    was.

    Args:
      path: the final file.
      write_fn: writes the whole file to the path it is given.
      suffix: the temporary file's suffix, for writers that check it (".weights.h5", ".keras").
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write_fn(tmp_path)
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def os_error_message(error: OSError) -> str:
    """One line for a failed file operation: the system's reason and the file, e.g. "No space
    left on device: runs/x/model.keras". HDF5 (`.weights.h5`) reports a full disk with the C
    errno inside its message only ("errno = 28,"), which reads as the same reason here."""
    where = f": {error.filename}" if error.filename else ""
    if error.errno == errno.ENOSPC or f"errno = {errno.ENOSPC}," in str(error):
        return f"{os.strerror(errno.ENOSPC)}{where}"
    return f"{error.strerror or error}{where}"


def remove_temporaries(directory: str) -> list[str]:
    """Removes the temporary files `atomic_write` left in `directory` and its subdirectories
    when its process was killed (SIGKILL, power loss) mid-write; returns their paths. Call it
    only while no writer is live there (a run directory's lock held)."""
    removed = []
    for root, _, files in os.walk(directory):
        for name in files:
            if name.startswith(TEMPORARY_PREFIX):
                os.remove(os.path.join(root, name))
                removed.append(os.path.join(root, name))
    return removed


def write_json(path: str, obj) -> None:
    """Writes `obj` as indented, strict JSON to `path`, atomically.

    Raises:
      ValueError: `obj` holds NaN or infinity, which strict JSON cannot say.
    """

    def write(tmp_path):
        text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False)
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text + "\n")

    atomic_write(path, write, suffix=".json")


def write_text(path: str, text: str) -> None:
    """Writes `text` (UTF-8) to `path`, atomically."""

    def write(tmp_path):
        with open(tmp_path, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write, suffix=os.path.splitext(path)[1])


def write_split(path: str, split) -> None:
    """Saves a `SplitIndices` as an `.npz` of int64 `labeled`, `unlabeled`, `validation`."""
    arrays = {name: getattr(split, name) for name in ("labeled", "unlabeled", "validation")}
    atomic_write(path, lambda tmp_path: np.savez(tmp_path, **arrays), suffix=".npz")
