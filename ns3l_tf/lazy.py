"""Modules imported on first use, so that declaring a method costs no framework import.

A method module declares its settings and registers itself at import, which flag parsing
needs; its implementation runs only once a model is built. Binding `ops = lazy("keras.ops")`
at module level lets that implementation read like ordinary Keras code while importing Keras
(and its backend, TensorFlow or JAX) only when `ops.softmax` is first looked up.
"""

import importlib
import sys
import types


class LazyModule(types.ModuleType):
    """A stand-in for module `name` that imports it on the first attribute lookup."""

    def __getattr__(self, attribute: str):
        # A module imported already is read from `sys.modules`: lookups inside a traced
        # train step then call no import machinery (AutoGraph warns that it cannot convert
        # `importlib._bootstrap._gcd_import`).
        module = sys.modules.get(self.__name__) or importlib.import_module(self.__name__)
        return getattr(module, attribute)


def lazy(name: str) -> LazyModule:
    """The module `name` (e.g. `"keras.ops"`), imported when first used."""
    return LazyModule(name)
