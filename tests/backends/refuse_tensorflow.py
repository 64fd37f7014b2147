"""Imported first, this makes `tensorflow` and `tensorflow_datasets` absent, as in an
environment with JAX alone (many GPU and TPU images): every import finder stops finding them,
so `import` raises ModuleNotFoundError and `importlib.util.find_spec` answers None, as where
they are not installed. (A None entry in `sys.modules` would block the import too, but Keras
reads the mere name in `sys.modules` as TensorFlow being loaded.)"""

import importlib.abc
import sys

BLOCKED = ("tensorflow", "tensorflow_datasets")


class _Hiding(importlib.abc.MetaPathFinder):
    """An import finder that finds what `finder` finds, except the blocked packages."""

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            return None
        return self.finder.find_spec(name, path, target)

    def invalidate_caches(self):
        if hasattr(self.finder, "invalidate_caches"):
            self.finder.invalidate_caches()


sys.meta_path[:] = [_Hiding(finder) for finder in sys.meta_path]


def loaded() -> list[str]:
    """The blocked packages that were imported all the same (none, if blocking held)."""
    return [name for name in BLOCKED if name in sys.modules]
