"""MkDocs hook: writes `docs/reference/flags.md` from the settings declarations before a build,
so the flag reference is never typed by hand (run `make docs`)."""

import os

from ns3l_tf import flag_reference


def on_pre_build(config, **kwargs):
    path = os.path.join(config["docs_dir"], "reference", "flags.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = flag_reference.markdown()
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return  # unchanged: no rebuild loop under `mkdocs serve`
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
