"""`SSLModel`'s steps on JAX: the stateful step code inside a `keras.StatelessScope`.

`keras.Model.fit` on JAX calls `train_step(state, data)` with `state = (trainable,
non_trainable, optimizer, metrics)` variable values and jit-compiles it. Here every variable
the step reads (weights, BatchNorm statistics, seed generators' states, the tunable loss
weights, the optimizer's step counter) is mapped to its value in a `StatelessScope`, so the
methods' ordinary Keras code (`classify`, `assign` in `preserved_statistics`, seeded random
draws) reads and writes the traced state; the new non-trainable values are read back from
the scope. Under `keras.distribution` the step sees the global batch, sharded over devices.
"""

import contextlib

import jax
import keras
import numpy as np


def num_replicas_in_sync() -> int:
    """1: a JAX step computes the global-batch mean itself, however the batch is sharded."""
    return 1


def all_gather(x):
    """`x`: a JAX step sees the whole global batch."""
    return x


def input_gradient(fn, x):
    """`∇ₓ fn(x)` by `jax.grad` (nested inside the step's own `jax.value_and_grad`)."""
    return jax.grad(fn)(x)


def variable_creation_scope(model):
    """No scope: `keras.distribution` lays out each variable as it is created."""
    return contextlib.nullcontext()


def variable_groups(model):
    """The model's variables in the order of a train step's state."""
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
        model.metrics_variables,
    )


def state_of(model) -> tuple:
    """The values of the model's variables as a train step's `state`."""
    return tuple([v.value for v in group] for group in variable_groups(model))


def make_train_function(model, dataset, strategy=None):
    """`() → logs`: one `train_step` on the next batch of `dataset` (a `tf.data.Dataset` or
    any iterable of NumPy batches), jit-compiled where `model.jit_compile`.

    The model's variables hold the new state after every step, so callbacks read and assign
    them as on TensorFlow (a tuner's or schedule's `model.ns3l_weight.assign(...)` takes
    effect at the next step). Under a `keras.distribution` distribution each batch is laid
    out over its devices along the batch axis. `strategy` (TensorFlow's) is ignored.
    """
    del strategy
    batches = (
        dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator") else iter(dataset)
    )
    step = jax.jit(model.train_step) if model.jit_compile else model.train_step
    distribution = keras.distribution.distribution()

    def place(array):
        array = np.asarray(array)
        if distribution is None:
            return array
        return keras.distribution.distribute_tensor(
            array, distribution.get_data_layout(array.shape)
        )

    def train_function():
        logs, state = step(state_of(model), keras.tree.map_structure(place, next(batches)))
        for variables, values in zip(variable_groups(model), state):
            for variable, value in zip(variables, values):
                variable.assign(value)
        return logs

    return train_function


def _values_after(scope, variables, before):
    """The scope's value of each variable, or its value on entry where the step left it."""
    after = [scope.get_current_value(v) for v in variables]
    return [b if a is None else a for a, b in zip(after, before)]


def train_step(model, state, data):
    """One optimizer step; returns `(logs, new_state)`."""
    trainable, non_trainable, optimizer_values, metrics_values = state
    optimizer_mapping = list(zip(model.optimizer.variables, optimizer_values))

    def loss_and_updates(trainable_values, non_trainable_values):
        mapping = [
            *zip(model.trainable_variables, trainable_values),
            *zip(model.non_trainable_variables, non_trainable_values),
            *optimizer_mapping,
        ]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            loss, values, accuracy_inputs = model.compute_ssl_losses(data)
            scaled_loss = model.optimizer.scale_loss(loss)
        new_non_trainable = _values_after(
            scope, model.non_trainable_variables, non_trainable_values
        )
        return scaled_loss, (values, accuracy_inputs, new_non_trainable)

    grad_fn = jax.value_and_grad(loss_and_updates, has_aux=True)
    (_, (values, accuracy_inputs, non_trainable)), gradients = grad_fn(trainable, non_trainable)
    trainable, optimizer_values = model.optimizer.stateless_apply(
        optimizer_values, gradients, trainable
    )
    with keras.StatelessScope(
        state_mapping=list(zip(model.metrics_variables, metrics_values))
    ) as scope:
        logs = model.update_train_metrics(values, accuracy_inputs)
    metrics_values = _values_after(scope, model.metrics_variables, metrics_values)
    return logs, (trainable, non_trainable, optimizer_values, metrics_values)


def test_step(model, state, data):
    """Updates the evaluation metrics on `(images, labels)`; returns `(logs, new_state)`."""
    trainable, non_trainable, metrics_values = state
    mapping = [
        *zip(model.trainable_variables, trainable),
        *zip(model.non_trainable_variables, non_trainable),
        *zip(model.metrics_variables, metrics_values),
    ]
    with keras.StatelessScope(state_mapping=mapping) as scope:
        logs = model.update_test_metrics(data[0], data[1])
    metrics_values = _values_after(scope, model.metrics_variables, metrics_values)
    return logs, (trainable, non_trainable, metrics_values)
