"""Registers the package's Keras classes once Keras is imported (`keras_classes`).

Keras finds a saved model's classes only once their modules are imported (they register
themselves with `keras.saving.register_keras_serializable`). `import ns3l_tf` must stay
cheap, so that the command lines report a bad flag without importing Keras or TensorFlow;
yet `import ns3l_tf` followed by `keras.saving.load_model(path)` must find `SSLModel`.
`register_when_keras_is_imported()` gives both: with Keras already imported it imports the
modules at once; otherwise it waits, as a one-shot import hook, for the first `import keras`
and imports them right after it (KERAS_BACKEND is read then, as Keras itself reads it).
"""

import importlib
import importlib.abc
import importlib.machinery
import sys

# The modules whose import registers every class a saved ns3l_tf model names.
KERAS_CLASS_MODULES = (
    "ns3l_tf.ssl_model",
    "ns3l_tf.models.augmentation",
    "ns3l_tf.models.preprocessing",
)


def register_keras_classes() -> None:
    """Imports the modules that register the package's Keras classes (best effort: where a
    module cannot be imported, e.g. TensorFlow is missing, using it will say so)."""
    for name in KERAS_CLASS_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            return


class _AfterKerasLoader(importlib.abc.Loader):
    """Runs Keras's own loader, then registers the package's classes."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: Keras's own loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        register_keras_classes()


class _KerasImportHook(importlib.abc.MetaPathFinder):
    """Finds `keras` as the other finders would, with `_AfterKerasLoader` around its loader;
    removes itself at the first use (unless another import hook has since wrapped it)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterKerasLoader(spec.loader)
        return spec


def register_when_keras_is_imported() -> None:
    """Registers the package's Keras classes now if Keras is imported, else right after it is."""
    if sys.modules.get("keras") is not None:
        register_keras_classes()
    elif "keras" not in sys.modules and not any(
        isinstance(finder, _KerasImportHook) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _KerasImportHook())
