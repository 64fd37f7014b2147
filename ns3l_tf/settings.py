"""Declared settings: each component states its settings once, everything else is derived.

A component (a method, the run itself) declares its settings as a frozen dataclass whose
fields are made with `setting(default, help, check=...)`. From that one declaration come the
absl flags (`<prefix>_<field>`, e.g. `--vat_epsilon`), the keyword arguments of `SSLModel`
(the same names), the entries of `get_config` and `results.json`, the validation messages, and
which values are tunable (held in non-trainable `keras.Variable`s that callbacks and tuners
may assign to). This module imports no TensorFlow, so flags are checked before it loads.

    @dataclasses.dataclass(frozen=True)
    class VATSettings:
        epsilon: float = setting(6.0, "perturbation norm per image", check=positive)
        weight: float = setting(0.3, "weight lambda_2", check=non_negative(), tunable=True)
"""

import dataclasses
import typing
from collections.abc import Callable
from typing import Any

# A check returns None for an allowed value, else what is allowed ("must be > 0").
Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A setting's value is not allowed; the message names the flag and what is allowed."""


def setting(
    default,
    help_text: str,
    *,
    check: Check | None = None,
    tunable: bool = False,
    defines_run: bool = True,
    default_for: Callable[[int], Any] | None = None,
    search: "SearchRange | None" = None,
):
    """A settings-dataclass field.

    Args:
      default: the default value (None for "derived from the data", said in `help_text`).
      help_text: the flag's help.
      check: validates a non-None value; returns None or a message such as "must be > 0".
      tunable: held in a non-trainable `keras.Variable` by `SSLModel`, so callbacks and
        tuners can change it during training (loss weights, NS³L's threshold).
      defines_run: whether the value is part of what a run computes (a run directory refuses
        a rerun that changes it); False for where and how it runs (paths, devices, batch size
        of evaluation, checkpoint frequency).
      default_for: for a None default, the value it stands for with K classes (NS³L's
        T = 0.4 / K); `resolved` fills it in, and results files record the resolved value.
      search: the range `ns3l-tune` searches by default (a `SearchRange`).
    """
    metadata = {
        "help": help_text,
        "check": check,
        "tunable": tunable,
        "defines_run": defines_run,
        "default_for": default_for,
        "search": search,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class SearchRange:
    """A log-uniform search range `[low, high]`; with `per_class`, of the value times K (a
    threshold that scales with 1/K, searched alike for 10 and 100 classes)."""

    low: float
    high: float
    per_class: bool = False

    def __post_init__(self):
        if not 0.0 < self.low < self.high:
            raise ValueError(f"need 0 < low < high, got {self.low}, {self.high}")


def positive(value) -> str | None:
    return None if value > 0 else "must be > 0"


def non_negative(note: str = "") -> Check:
    """`value >= 0`; `note` is appended in parentheses to the message."""
    message = "must be >= 0" + (f" ({note})" if note else "")
    return lambda value: None if value >= 0 else message


def open_unit_interval(value) -> str | None:
    return None if 0.0 < value < 1.0 else "must be in the open interval (0, 1)"


def unit_interval_from_zero(value) -> str | None:
    return None if 0.0 <= value < 1.0 else "must be in [0, 1)"


def one_of(choices) -> Check:
    """`value` is one of `choices` (a sequence of names)."""
    return lambda value: None if value in choices else f"allowed: {', '.join(choices)}"


def field_type(field: dataclasses.Field) -> type:
    """The field's value type, with `X | None` read as X."""
    return next(t for t in typing.get_args(field.type) or (field.type,) if t is not type(None))


def flag_name(prefix: str, field: dataclasses.Field) -> str:
    """`<prefix>_<field>`, or the bare field name without a prefix."""
    return f"{prefix}_{field.name}" if prefix else field.name


def flat(prefix: str, values) -> dict[str, Any]:
    """A settings instance as `{flag name: value}`."""
    return {flag_name(prefix, f): getattr(values, f.name) for f in dataclasses.fields(values)}


def from_flat(prefix: str, settings_class: type, flat_values: dict):
    """The `settings_class` instance whose fields are `flat_values[<prefix>_<field>]`, with
    the declared defaults for the others; the used keys are removed from `flat_values`."""
    names = {flag_name(prefix, f): f.name for f in dataclasses.fields(settings_class)}
    return settings_class(**{names[k]: flat_values.pop(k) for k in list(flat_values) if k in names})


def validate(prefix: str, values) -> None:
    """Raises `ConfigError("--<flag>=<value>: <what is allowed>")` at the first bad field."""
    for field in dataclasses.fields(values):
        check, value = field.metadata.get("check"), getattr(values, field.name)
        message = check(value) if check is not None and value is not None else None
        if message:
            raise ConfigError(f"--{flag_name(prefix, field)}={value}: {message}")


def resolved(values, num_classes: int):
    """`values` with each None field that declares `default_for` resolved for K classes."""
    derived = {
        f.name: f.metadata["default_for"](num_classes)
        for f in dataclasses.fields(values)
        if getattr(values, f.name) is None and f.metadata.get("default_for") is not None
    }
    return dataclasses.replace(values, **derived) if derived else values


def searchable_fields(settings_class: type) -> dict[str, SearchRange]:
    """`{field name: its declared SearchRange}` of the fields declared searchable."""
    return {
        f.name: f.metadata["search"]
        for f in dataclasses.fields(settings_class)
        if f.metadata.get("search") is not None
    }


def tunable_fields(settings_class: type) -> tuple[str, ...]:
    """Names of the fields declared `tunable`."""
    return tuple(f.name for f in dataclasses.fields(settings_class) if f.metadata.get("tunable"))
