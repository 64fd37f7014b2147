"""What the package needs installed beyond its own requirements: TensorFlow, from an extra.

TensorFlow is not a plain requirement so that `pip install ns3l_tf` never replaces one that is
already there (Colab's, a CUDA build); the extras `cpu`, `gpu` and `tf` bring one. This module
imports nothing heavy, so the command lines can check before they load TensorFlow.
"""

import importlib.util

MISSING_TENSORFLOW = (
    "TensorFlow is not installed; install ns3l_tf with it: pip install 'ns3l_tf[cpu]' "
    "(CPU), 'ns3l_tf[gpu]' (Linux with an NVIDIA GPU) or 'ns3l_tf[tf]' (the standard "
    "tensorflow wheel, e.g. macOS)"
)


def tensorflow_installed() -> bool:
    """Whether `import tensorflow` can find a package (without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


MISSING_JAX = (
    "--backend=jax: JAX is not installed; pip install 'ns3l_tf[jax]' (the CPU build), or "
    "'jax[cuda12]' for NVIDIA GPUs"
)


def jax_installed() -> bool:
    """Whether `import jax` can find a package (without importing it)."""
    return importlib.util.find_spec("jax") is not None
