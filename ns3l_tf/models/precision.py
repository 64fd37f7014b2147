"""Low-precision backbones: mixed bfloat16 / float16 compute, float32 variables and logits.

`backbone_policy(precision)` is the dtype policy to build a backbone under. Its compute dtype
can be switched to float32, per thread and at trace time, inside `full_precision()`: VAT
computes its power-iteration pass there, because its finite-difference step ξ = 1e-6 vanishes
when the perturbed input is cast to bfloat16 or float16 (KERAS_TF_NOTES §7.3). Everything else
that must stay exact already does: variables and BatchNorm statistics are float32 under mixed
policies, BatchNorm normalises in float32, the model casts logits to float32 before any
softmax, log or loss, and the input preprocessing and augmentation layers are float32.
"""

import contextlib
import platform
import threading

import keras

from ns3l_tf.models import PRECISIONS
from ns3l_tf.models.layers import all_layers


class _Switch(threading.local):
    """Per thread: `MirroredStrategy` traces each replica in its own thread, concurrently."""

    full_precision = False


_switch = _Switch()


@keras.saving.register_keras_serializable(package="ns3l_tf")
class SwitchablePolicy(keras.DTypePolicy):
    """A mixed-precision policy (`mixed_bfloat16`, `mixed_float16`) whose compute dtype is
    float32 inside `full_precision()`."""

    @property
    def compute_dtype(self):
        return "float32" if _switch.full_precision else self._compute_dtype


@contextlib.contextmanager
def full_precision():
    """Layers with a `SwitchablePolicy` called (traced) inside this block compute in float32."""
    previous = _switch.full_precision
    _switch.full_precision = True
    try:
        yield
    finally:
        _switch.full_precision = previous


def restore_switchable(model: keras.Model) -> None:
    """Gives every mixed-precision layer of a loaded model its `SwitchablePolicy` back: Keras
    deserialises a layer's policy as a plain `DTypePolicy` of the same name, which
    `full_precision()` (VAT's power iteration, export) would not switch."""
    for layer in all_layers(model):
        policy = layer.dtype_policy
        if policy.name.startswith("mixed_") and not isinstance(policy, SwitchablePolicy):
            layer.dtype_policy = SwitchablePolicy(policy.name)


def backbone_policy(precision: str) -> keras.DTypePolicy:
    """The policy to build a backbone under: float32, or a switchable mixed policy.

    Args:
      precision: one of `ns3l_tf.models.PRECISIONS` (`float32`, `mixed_bfloat16`,
        `mixed_float16`).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    return keras.DTypePolicy("float32") if precision == "float32" else SwitchablePolicy(precision)


@contextlib.contextmanager
def policy_scope(policy: keras.DTypePolicy):
    """Layers created inside this block get `policy` (Keras's global policy, restored after)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def switches_to_float32(model: keras.Model) -> bool:
    """Whether every low-precision layer of `model` computes in float32 in `full_precision()`."""
    return all(
        isinstance(layer.dtype_policy, SwitchablePolicy) or layer.compute_dtype == "float32"
        for layer in all_layers(model)
    )


# CPU flags (Linux /proc/cpuinfo) of native bfloat16 matrix arithmetic on x86-64.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The feature flags the kernel reports for this CPU; None where it reports none (not
    Linux, or no `flags` line, as on ARM)."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            lines = [line for line in f if line.startswith("flags")]
    except OSError:
        return None
    return set(lines[0].split(":", 1)[1].split()) if lines else None


def bfloat16_emulation_warning(precision: str, accelerator: bool) -> str | None:
    """The one-line warning for `mixed_bfloat16` on an x86-64 CPU without bfloat16 units
    (AVX512_BF16 or AMX), where oneDNN and XLA emulate it and a step can be slower than in
    float32; None where it is native, an accelerator computes, or nothing is known.

    Args:
      precision: the run's `--precision`.
      accelerator: whether a GPU or TPU does the computing.
    """
    if precision != "mixed_bfloat16" or accelerator:
        return None
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    flags = cpu_flags()
    if flags is None or flags & set(BFLOAT16_CPU_FLAGS):
        return None
    return (
        "--precision=mixed_bfloat16: this CPU has no bfloat16 units (no AVX512_BF16 or AMX "
        "flag in /proc/cpuinfo), so bfloat16 is emulated and may be slower than "
        "--precision=float32"
    )
