"""Flagfiles and presets: the shipped flagfiles by name, and includes relative to their file.

absl reads `--flagfile=PATH` relative to the current directory, also inside a flagfile, so a
flagfile that includes another works from one directory only. `expand` replaces every
`--flagfile=PATH` and `--preset=NAME` of a command line by the flags they hold, in place (a
flag given later still overrides), before absl parses it:

- `--preset=NAME` is the package's `ns3l_tf/flags/NAME.cfg` (`presets()` lists them), so an
  installed package runs `ns3l-train --preset=fmnist_2000` from any directory;
- a `--flagfile=PATH` line inside a flagfile is read relative to that file's directory (then,
  as absl did, relative to the current directory).

File format (absl's): one flag per line; blank lines and lines starting with `#` or `//` are
comments.
"""

import os

PRESETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flags")


class FlagfileError(ValueError):
    """A flagfile or preset cannot be read; the message names it, and the line."""


def presets() -> list[str]:
    """Names of the shipped flagfiles (`ns3l_tf/flags/*.cfg`), sorted."""
    return sorted(f[: -len(".cfg")] for f in os.listdir(PRESETS_DIR) if f.endswith(".cfg"))


def preset_path(name: str) -> str:
    """The shipped flagfile `name`.

    Raises:
      FlagfileError: no such preset (the message lists them).
    """
    path = os.path.join(PRESETS_DIR, f"{name}.cfg")
    if not name or os.sep in name or not os.path.isfile(path):
        raise FlagfileError(f"--preset={name}: no such preset; allowed: {', '.join(presets())}")
    return path


def _split(arg: str, name: str) -> str | None:
    """The value of `--name=value` (or `-name=value`), else None."""
    for prefix in (f"--{name}=", f"-{name}="):
        if arg.startswith(prefix):
            return arg[len(prefix) :]
    return None


def _read(path: str, including: tuple[str, ...]) -> list[str]:
    """The flags of the flagfile `path`, its includes expanded; `including` are the files
    that include it (to refuse a cycle)."""
    real = os.path.realpath(path)
    if real in including:
        raise FlagfileError(f"{path}: includes itself (through {' -> '.join(including)})")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as error:
        raise FlagfileError(f"--flagfile={path}: cannot be read ({error.strerror})") from None
    args = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "//")):
            continue
        if not line.startswith("-"):
            raise FlagfileError(f"{path} line {number}: {line!r} is not a flag (--name=value)")
        include = _split(line, "flagfile")
        if include is None:
            args.append(line)
            continue
        candidates = [os.path.join(os.path.dirname(path), include), include]
        found = next((c for c in candidates if os.path.isfile(c)), None)
        if found is None:
            raise FlagfileError(
                f"{path} line {number}: --flagfile={include}: no such file (looked in "
                f"{os.path.dirname(path) or '.'} and the current directory)"
            )
        args += _read(found, (*including, real))
    return args


def expand(args: list[str]) -> list[str]:
    """Command-line arguments with every `--flagfile=PATH` and `--preset=NAME` (or
    `--flagfile PATH`, `--preset NAME`) replaced by the flags the file holds, in place.

    Raises:
      FlagfileError: a missing or unreadable file, an unknown preset, a line that is not a
        flag, or a file that includes itself.
    """
    expanded, index = [], 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":  # absl: the arguments after it are not flags
            return expanded + args[index - 1 :]
        if arg in ("--preset", "-preset", "--flagfile", "-flagfile"):
            # `--preset NAME`, `--flagfile PATH`: the next argument is the value.
            if index == len(args) or args[index].startswith("-"):
                raise FlagfileError(f"{arg}: needs a value ({arg}=...)")
            arg, index = f"{arg}={args[index]}", index + 1
        preset, flagfile = _split(arg, "preset"), _split(arg, "flagfile")
        if preset is not None:
            expanded += _read(preset_path(preset), ())
        elif flagfile is not None:
            expanded += _read(flagfile, ())
        else:
            expanded.append(arg)
    return expanded
