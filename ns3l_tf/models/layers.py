"""What any backbone needs from SSL training: auxiliary passes that leave its statistics alone.

Keras 3 updates a `BatchNormalization` layer's moving statistics on every `training=True` call,
inside a `GradientTape` and a `tf.function` alike. SSL methods make auxiliary passes (VAT's
perturbed inputs, MixMatch's label guesses and later interleaved chunks, NS³L's second view)
that must normalise with their batch's statistics but must not move the running ones: the
references run one pass's update ops only (Oliver et al. `lib/ssl_framework.py:224`, MixMatch
`libml/layers.py:71-96`). `SSLModel` does that for *any* backbone: inside
`frozen_batchnorm_statistics()` a training-mode pass runs as usual, then every non-trainable
weight of the backbone (BatchNorm's moving mean and variance, renorm statistics, any other
state a layer updates in training) is put back as the pass found it
(`preserved_statistics`). `BackboneState` finds that state, and the settings a backbone must
change under several replicas (synchronized BatchNorm moments), in any Keras model:
functional, sequential, subclassed or nested.
"""

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


@contextlib.contextmanager
def frozen_batchnorm_statistics():
    """Training-mode passes of an `SSLModel` inside this block leave the backbone's moving
    statistics (every non-trainable weight) as they were.

    Example:
      with frozen_batchnorm_statistics():
          logits_adv = model.classify(x_unlabeled + r_adv, training=True)
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


def all_layers(model: keras.layers.Layer) -> list[keras.layers.Layer]:
    """`model` and every layer inside it, at any depth (nested models and layers that hold
    layers as attributes: Keras's own traversal, `_flatten_layers`)."""
    return [model, *model._flatten_layers(include_self=False, recursive=True)]


class BackboneState:
    """The state of a backbone that SSL's auxiliary passes must not change.

    Args:
      backbone: any Keras model mapping images to logits.

    Raises:
      ValueError: a layer keeps state across calls that SSL's several passes per step would
        corrupt (a `stateful=True` recurrent layer), naming it.
    """

    def __init__(self, backbone: keras.Model):
        for layer in all_layers(backbone):
            if getattr(layer, "stateful", False):
                raise ValueError(
                    f"layer {layer.name!r} ({type(layer).__name__}) is stateful: its state "
                    "would carry from one of SSL's passes per step to the next; build it with "
                    "stateful=False"
                )
        self.backbone = backbone

    @property
    def batch_norms(self) -> list[keras.layers.BatchNormalization]:
        return [
            layer
            for layer in all_layers(self.backbone)
            if isinstance(layer, keras.layers.BatchNormalization)
        ]

    def synchronize(self) -> None:
        """Every BatchNorm computes its batch moments over all replicas (in its updating and
        its frozen passes), so replicas normalise alike and their statistics agree."""
        for layer in self.batch_norms:
            layer.synchronized = True

    @property
    def statistics(self) -> list:
        """The weights a training-mode pass may update: the non-trainable weights of trainable
        layers (BatchNorm's moving mean and variance, any counter a custom layer keeps). A
        frozen layer's (`trainable=False`) weights are left out: nothing updates them, and a
        frozen pretrained backbone would otherwise be copied whole at every auxiliary pass."""
        frozen = {
            id(w)
            for layer in all_layers(self.backbone)
            if not layer.trainable
            for w in layer.weights
        }
        return [w for w in self.backbone.non_trainable_weights if id(w) not in frozen]

    @contextlib.contextmanager
    def preserved_statistics(self):
        """The backbone's `statistics` after the block are those before it (reads before,
        assignments after: ordered by TensorFlow's automatic control dependencies)."""
        weights = self.statistics
        saved = [ops.copy(w) for w in weights]
        yield
        for weight, value in zip(weights, saved):
            weight.assign(value)


def batch_norm(momentum: float = BATCH_NORM_MOMENTUM):
    """`keras.layers.BatchNormalization` with epsilon 1e-3 and the reference momentum 0.999."""
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=BATCH_NORM_EPSILON)


@keras.saving.register_keras_serializable(package="ns3l_tf")
class BatchNorm(keras.layers.BatchNormalization):
    """The class models saved by ns3l_tf 0.1 name for their BatchNorms, so that they still
    load: plain `BatchNormalization` now (`SSLModel` keeps any backbone's statistics)."""
