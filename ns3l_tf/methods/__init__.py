"""Semi-supervised methods: one base method plus any additive terms, named by an algorithm string.

An algorithm string joins one base method and any additive terms with `+`: `"supervised"`,
`"ns3l"` (short for `"supervised+ns3l"`), `"vat+entmin+ns3l"`, `"fixmatch+ns3l"`. Each method
is one module of this package: its settings, its `register(Method(...))` line, its own
combination rules and its implementation. Importing this package imports every module in it,
so a new method is found without a list; a method of your own is one module anywhere that
registers itself, loaded with `load_methods_module` (`--methods_module` on the command
lines). Declaring a method imports no framework (`ns3l_tf.lazy`).
"""

import importlib
import pkgutil

from ns3l_tf.methods.registry import (
    BASE,
    REGISTRY,
    TERM,
    VIEW_KINDS,
    AlgorithmSpec,
    CombinationSetup,
    Method,
    MethodContext,
    check_combination,
    default_settings,
    flat_settings,
    load_methods_module,
    names,
    parse_algorithm,
    register,
    setting_owners,
    settings_for,
    split_flat,
    unregister,
    validate_settings,
)

# Not methods: the registry and the structures methods exchange with the train step.
_SUPPORT_MODULES = ("base", "registry")

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SUPPORT_MODULES:
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "BASE",
    "REGISTRY",
    "TERM",
    "VIEW_KINDS",
    "AlgorithmSpec",
    "CombinationSetup",
    "Method",
    "MethodContext",
    "check_combination",
    "default_settings",
    "flat_settings",
    "load_methods_module",
    "names",
    "parse_algorithm",
    "register",
    "setting_owners",
    "settings_for",
    "split_flat",
    "unregister",
    "validate_settings",
]
