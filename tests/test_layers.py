"""BatchNorm with frozen moving statistics for auxiliary training-mode passes."""

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf import models
from ns3l_tf.models.layers import BatchNorm, frozen_batchnorm_statistics


def _moving_statistics(model):
    return [w.numpy().copy() for w in model.non_trainable_weights]


def test_frozen_pass_normalises_like_training_but_keeps_moving_statistics():
    x = tf.random.stateless_normal((16, 5, 5, 3), (1, 2)) * 3.0 + 1.0
    layer = BatchNorm(momentum=0.9)
    layer.build(x.shape)
    layer.gamma.assign([1.0, 2.0, 0.5])
    layer.beta.assign([0.0, 1.0, -1.0])
    reference = keras.layers.BatchNormalization(momentum=0.9)
    reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    with frozen_batchnorm_statistics():
        frozen = layer(x, training=True).numpy()
    np.testing.assert_allclose(frozen, reference(x, training=True).numpy(), atol=1e-5)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), np.zeros(3))
    np.testing.assert_array_equal(layer.moving_variance.numpy(), np.ones(3))
    layer(x, training=True)  # outside the block it updates as usual
    assert not np.allclose(layer.moving_mean.numpy(), 0.0)


def test_frozen_block_holds_inside_a_traced_step():
    model = models.small_cnn()
    x = tf.random.stateless_normal((8, 28, 28, 1), (3, 4))

    @tf.function
    def step(images):
        model(images, training=True)  # updates the statistics
        with frozen_batchnorm_statistics():
            return model(images + 1.0, training=True)  # must not

    before = _moving_statistics(model)
    step(x)
    after_one = _moving_statistics(model)
    model(x, training=True)
    after_plain = _moving_statistics(model)
    assert all(not np.array_equal(a, b) for a, b in zip(before, after_one))
    # Replaying only the unfrozen pass reproduces the traced step's update exactly.
    replay = models.small_cnn()
    replay.set_weights(model.get_weights())
    for w, value in zip(replay.non_trainable_weights, before):
        w.assign(value)
    replay(x, training=True)
    for a, b in zip(_moving_statistics(replay), after_one):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(not np.array_equal(a, b) for a, b in zip(after_one, after_plain))


def test_backbones_use_the_freezable_layer():
    for model in (models.small_cnn(), models.wrn28_2()):
        norms = [x for x in model.layers if isinstance(x, keras.layers.BatchNormalization)]
        assert len(norms) >= 4 and all(type(layer) is BatchNorm for layer in norms)
