"""Atomic file output: a reader sees the old file or the complete new one, never a half."""

import json
import os
import tempfile

import numpy as np


def atomic_write(path: str, write_fn, suffix: str = "") -> None:
    """Calls `write_fn(tmp_path)` on a temporary file beside `path`, then renames it over `path`.

    Args:
      path: the final file.
      write_fn: writes the whole file to the path it is given.
      suffix: the temporary file's suffix, for writers that check it (".weights.h5", ".keras").
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    try:
        write_fn(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise


def write_json(path: str, obj) -> None:
    """Writes `obj` as indented JSON to `path`, atomically."""

    def write(tmp_path):
        with open(tmp_path, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

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
