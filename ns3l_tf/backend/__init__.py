"""The only framework code of the train step: gradients, replicas and state, per Keras backend.

Methods, losses and `SSLModel`'s sum of terms are written once in `keras.ops`; what differs
between TensorFlow and JAX is how a gradient is taken and where the model's state lives:

- TensorFlow (`tensorflow.py`): stateful steps under `tf.GradientTape`; a `tf.distribute`
  strategy runs one step per replica on its share of the global batch.
- JAX (`jax.py`): stateless steps as in keras.io's "Customizing what happens in fit() with
  JAX": the same stateful code runs inside a `keras.StatelessScope` that maps every variable
  to its traced value, `jax.value_and_grad` differentiates it, and the optimizer and metrics
  update through `stateless_apply` and the scope. `keras.distribution` shards the global batch.

Each module provides `train_step`, `test_step`, `input_gradient`, `all_gather`,
`num_replicas_in_sync` and `variable_creation_scope`;
`steps()` is the one for the running backend (`KERAS_BACKEND`, read when Keras is imported).
"""

import importlib
import sys

import keras

BACKENDS = ("tensorflow", "jax")


def name() -> str:
    """The running Keras backend: `tensorflow` or `jax`."""
    return keras.backend.backend()


def steps():
    """The module of the running backend's train step, test step and input gradient.

    Raises:
      ValueError: Keras runs on a backend the package has no train step for (e.g. torch).
    """
    if name() not in BACKENDS:
        raise ValueError(
            f"Keras runs on the {name()!r} backend; ns3l_tf trains on {' or '.join(BACKENDS)} "
            "(set KERAS_BACKEND, or --backend, before Keras is imported)"
        )
    module = f"ns3l_tf.backend.{name()}"
    # From `sys.modules` once imported: `train_step` calls this while AutoGraph traces it,
    # and AutoGraph warns that it cannot convert the import machinery.
    return sys.modules.get(module) or importlib.import_module(module)


def input_gradient(fn, x):
    """`∇ₓ fn(x)` for a scalar-valued `fn` of one tensor `x` (VAT's power iteration)."""
    return steps().input_gradient(fn, x)


def all_gather(x):
    """The global batch's rows of a per-replica tensor `x` `(B, ...)`: every replica's `x`
    concatenated (TensorFlow replicas), or `x` itself (one replica; JAX's global step). For
    state that every replica must update alike (FlexMatch's per-image pseudo-labels)."""
    return steps().all_gather(x)


def num_replicas_in_sync() -> int:
    """Replicas that each run the train step on a share of the global batch (1 on JAX, where
    one step sees the whole, sharded global batch)."""
    return steps().num_replicas_in_sync()
