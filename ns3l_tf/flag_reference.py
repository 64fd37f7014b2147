"""The flag reference of `ns3l-train` and `ns3l-tune`, generated from the settings declarations.

`markdown()` is what `docs/reference/flags.md` holds (the docs' MkDocs hook writes it before
every build): one table of the run's flags, then one per registered method, each flag with its
default and help exactly as `--help` shows them. Nothing here is typed by hand.
"""

import dataclasses

from ns3l_tf import config as config_lib
from ns3l_tf import methods as methods_lib
from ns3l_tf import settings as settings_lib


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(value) -> str:
    return "(none)" if value is None else f"`{value}`"


def _table(rows) -> list[str]:
    lines = ["| flag | default | what |", "|---|---|---|"]
    lines += [
        f"| `--{name}` | {_default(default)} | {_cell(help_text)} |"
        for name, default, help_text in rows
    ]
    return lines


def markdown() -> str:
    """The whole reference page, as Markdown."""
    run_rows = [
        (field.name, field.default, field.metadata["help"])
        for field in config_lib.RUN_FIELDS.values()
    ]
    lines = [
        "# Flag reference",
        "",
        "Every flag of `ns3l-train` (`python -m ns3l_tf.train`) and `ns3l-tune`, generated from "
        "the settings declarations (`ns3l_tf.config.Config` and each method's settings class "
        "in `ns3l_tf.methods`). Flags marked *tunable* are non-trainable `keras.Variable`s of "
        "the model (`model.<flag>`), which callbacks and tuners may assign to.",
        "",
        "## The run",
        "",
        *_table(run_rows),
    ]
    for name, method in methods_lib.REGISTRY.items():
        rows = []
        for field in dataclasses.fields(method.settings):
            help_text = field.metadata["help"]
            if field.metadata.get("tunable"):
                help_text += " *Tunable.*"
            rows.append((settings_lib.flag_name(name, field), field.default, help_text))
        lines += ["", f"## `{name}` ({method.role})", "", *_table(rows)]
    return "\n".join(lines) + "\n"
