"""Layers and settings shared by the backbones (Oliver et al. 2018 conventions)."""

import contextlib
import threading

import keras
from keras import ops

LEAKY_RELU_SLOPE = 0.1
# TF convention: moving = momentum * moving + (1 - momentum) * batch.
BATCH_NORM_MOMENTUM = 0.999
BATCH_NORM_EPSILON = 1e-3


class _TraceState(threading.local):
    """Read when a train step is traced: a Python flag costs nothing at run time. Per thread,
    because `MirroredStrategy` traces each replica's step in its own thread, concurrently:
    one replica's frozen pass must not freeze another replica's updating pass."""

    update_moving_statistics = True


_trace_state = _TraceState()
# Read when a backbone is built: whether its BatchNorms average moments across replicas.
_synchronized = [False]


@contextlib.contextmanager
def frozen_batchnorm_statistics():
    """Training-mode passes inside this block leave every `BatchNorm`'s moving statistics alone.

    Keras 3 updates BatchNorm moving statistics on every `training=True` call. SSL methods make
    auxiliary passes (VAT's perturbed inputs, MixMatch's label guesses and later interleaved
    batches) that must still normalise with batch statistics but must not update the moving
    ones, as the reference implementations did by collecting `UPDATE_OPS` of one pass only.

    Example:
      with frozen_batchnorm_statistics():
          logits_adv = model(x_unlabeled + r_adv, training=True)
    """
    previous = _trace_state.update_moving_statistics
    _trace_state.update_moving_statistics = False
    try:
        yield
    finally:
        _trace_state.update_moving_statistics = previous


def updates_moving_statistics() -> bool:
    """False inside `frozen_batchnorm_statistics()` (in this thread)."""
    return _trace_state.update_moving_statistics


@contextlib.contextmanager
def synchronized_batchnorm(enabled: bool = True):
    """Every `batch_norm()` built inside this block computes batch moments over all replicas.

    With a `tf.distribute` strategy of several replicas, each replica would otherwise
    normalise with (and update its moving statistics from) its own shard only, so replicas
    drift apart and results depend on the number of replicas.
    """
    previous = _synchronized[0]
    _synchronized[0] = enabled
    try:
        yield
    finally:
        _synchronized[0] = previous


@keras.saving.register_keras_serializable(package="ns3l_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """BatchNormalization that honours `frozen_batchnorm_statistics()`.

    Inside the block a training-mode call normalises with the batch's own statistics (in
    float32) exactly as `BatchNormalization` does, without touching `moving_mean` and
    `moving_variance`; everywhere else it is `BatchNormalization`.
    """

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable and not updates_moving_statistics():
            x = ops.cast(inputs, "float32")
            axes = list(range(len(x.shape) - 1))
            mean, variance = ops.moments(x, axes=axes, synchronized=self.synchronized)
            y = ops.batch_normalization(
                x,
                mean,
                variance,
                axis=-1,
                offset=self.beta,
                scale=self.gamma,
                epsilon=self.epsilon,
            )
            return ops.cast(y, self.compute_dtype)
        return super().call(inputs, training=training, mask=mask)


def all_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """`model` and every layer inside it, at any depth (nested models and layers that hold
    layers as attributes: Keras's own traversal, `_flatten_layers`)."""
    return [model, *model._flatten_layers(include_self=False, recursive=True)]


def batch_norm(momentum: float = BATCH_NORM_MOMENTUM):
    """`BatchNorm` with epsilon 1e-3 and the reference momentum 0.999 by default,
    synchronized across replicas inside `synchronized_batchnorm()`."""
    return BatchNorm(momentum=momentum, epsilon=BATCH_NORM_EPSILON, synchronized=_synchronized[0])
