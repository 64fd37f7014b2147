"""Any Keras backbone trains correctly: keras.applications and hand-built models with plain
`BatchNormalization`, under every method's auxiliary passes."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import SSLModel
from ns3l_tf.models import preprocessing

from .methods.method_checks import check_statistics_come_from_one_pass

SHAPE = (32, 32, 3)


def hand_built():
    """A functional model with a plain BatchNormalization (fast-moving statistics)."""
    images = keras.Input(SHAPE)
    x = keras.layers.Conv2D(8, 3, padding="same")(images)
    x = keras.layers.BatchNormalization(momentum=0.5)(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(10)(x), name="hand_built")


def mobilenet_v3_small():
    return keras.applications.MobileNetV3Small(
        input_shape=SHAPE, weights=None, classes=10, classifier_activation=None
    )


def resnet50():
    return keras.applications.ResNet50(
        input_shape=SHAPE, weights=None, classes=10, classifier_activation=None
    )


BACKBONES = {"hand_built": hand_built, "mobilenet_v3_small": mobilenet_v3_small}
BACKBONES["resnet50"] = resnet50
ALGORITHMS = {
    "vat+ns3l": {"vat_epsilon": 1.0},
    "mixmatch+ns3l": {"mixmatch_rampup_steps": 0},
    "ns3l": {"ns3l_views": 2},
}


def _batch(algorithm, n=8, seed=0):
    rng = np.random.default_rng(seed)
    x_l = rng.uniform(0, 255, (n, *SHAPE)).astype("float32")
    shape = (n, 2, *SHAPE) if algorithm.startswith("mixmatch") else (n, *SHAPE)
    x_u = rng.uniform(0, 255, shape).astype("float32")
    return (tf.constant(x_l), tf.constant(np.arange(n) % 10)), tf.constant(x_u)


def _model(backbone, algorithm, learning_rate=0.0, **kwargs):
    keras.utils.set_random_seed(0)
    model = SSLModel(
        BACKBONES[backbone](), 10, algorithm=algorithm, seed=0, **ALGORITHMS[algorithm], **kwargs
    )
    # SGD: its update traces in half the time of Adam's for ResNet50's 320 variables.
    model.compile(optimizer=keras.optimizers.SGD(learning_rate, momentum=0.9))
    model(np.zeros((1, *SHAPE), "float32"))
    return model


@pytest.mark.large
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_auxiliary_passes_leave_any_backbones_statistics_to_the_updating_pass(
    backbone, algorithm, monkeypatch
):
    model, replay = _model(backbone, algorithm), _model(backbone, algorithm)
    check_statistics_come_from_one_pass(model, replay, _batch(algorithm), monkeypatch)


@pytest.mark.large
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_any_backbone_trains_and_round_trips(backbone, tmp_path):
    # ResNet50 overshoots at 0.01 on some CPUs (an AMX machine: loss 5.35 -> 5.45 over the two
    # epochs; 4.37 -> 3.79 at 0.001): its 16-image batch statistics make SGD steps large.
    model = _model(backbone, "ns3l", learning_rate=0.001 if backbone == "resnet50" else 0.01)
    stream = tf.data.Dataset.from_tensors(_batch("ns3l", n=16)).repeat()
    history = model.fit(stream, steps_per_epoch=3, epochs=2, verbose=0).history
    assert history["loss"][-1] < history["loss"][0], history["loss"]
    model.save(tmp_path / "model.keras")
    import ns3l_tf

    loaded = ns3l_tf.load_model(str(tmp_path / "model.keras"))
    images = _batch("ns3l")[0][0]
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-4, atol=1e-5)


def test_a_softmax_head_is_refused():
    softmax = keras.applications.MobileNetV3Small(input_shape=SHAPE, weights=None, classes=10)
    with pytest.raises(ValueError, match="ends in a softmax .* classifier_activation=None"):
        SSLModel(softmax, 10)


def test_a_stateful_layer_is_refused():
    images = keras.Input(batch_shape=(4, 8, 8, 3))
    x = keras.layers.Reshape((8, 24))(images)
    x = keras.layers.LSTM(4, stateful=True)(x)
    model = keras.Model(images, keras.layers.Dense(10)(x))
    with pytest.raises(ValueError, match="layer 'lstm' .*is stateful"):
        SSLModel(model, 10)


def test_a_backbone_that_scales_its_own_inputs_gets_raw_images():
    # MobileNetV3 rescales 0-255 images itself: with the package's preprocessing too, warn.
    with pytest.warns(UserWarning, match="scales its inputs itself .* preprocessing=None"):
        SSLModel(mobilenet_v3_small(), 10, preprocessing=preprocessing.rescale())
    # Given the raw images of the package's pipeline, its own first layer maps them to [-1, 1].
    model = SSLModel(mobilenet_v3_small(), 10)
    raw = np.zeros((1, *SHAPE), "float32")
    raw[0, 1], raw[0, 2] = 127.5, 255.0
    first = keras.Model(model.backbone.input, model.backbone.layers[1].output)
    np.testing.assert_allclose(np.asarray(first(raw))[0, :3, 0, 0], [-1.0, 0.0, 1.0], atol=1e-6)


class TrainingCallCounter(keras.layers.Layer):
    """Counts its training-mode calls in a non-trainable weight: state a custom layer may keep
    and update, as BatchNorm updates its moving statistics."""

    def build(self, input_shape):
        self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False)

    def call(self, inputs, training=False):
        if training:
            self.calls.assign_add(1.0)
        return inputs


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_only_the_updating_pass_changes_a_custom_layers_state_in_fit(algorithm):
    # One compiled fit step: the auxiliary passes run in the graph like the updating pass, and
    # their restores must be ordered after their reads (automatic control dependencies).
    keras.utils.set_random_seed(0)
    images = keras.Input(SHAPE)
    counter = TrainingCallCounter()
    frozen = keras.layers.Dense(4, trainable=False)
    x = keras.layers.GlobalAveragePooling2D()(frozen(counter(images)))
    backbone = keras.Model(images, keras.layers.Dense(10)(x))
    model = SSLModel(backbone, 10, algorithm=algorithm, seed=0, **ALGORITHMS[algorithm])
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    # The frozen layer's kernel and bias are no state to restore; the counter is.
    assert [w.path for w in model._backbone_state.statistics] == [counter.calls.path]
    model.fit(
        tf.data.Dataset.from_tensors(_batch(algorithm)).repeat(), steps_per_epoch=1, verbose=0
    )
    assert float(counter.calls) == 1.0


def test_a_backbone_without_its_own_scaling_gets_the_packages_preprocessing():
    backbone = keras.applications.MobileNetV3Small(
        input_shape=SHAPE, weights=None, classes=10, include_preprocessing=False,
        classifier_activation=None,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no double-scaling warning
        model = SSLModel(backbone, 10, preprocessing=preprocessing.rescale())
    raw = np.array([0.0, 127.5, 255.0], "float32").reshape(1, 3, 1, 1) * np.ones((1, 3, 1, 3))
    np.testing.assert_allclose(np.asarray(model.preprocess(raw))[0, :, 0, 0], [-1.0, 0.0, 1.0])


def test_models_saved_with_the_former_batchnorm_class_still_load():
    layer = keras.saving.deserialize_keras_object(
        {
            "module": "ns3l_tf.models.layers",
            "class_name": "BatchNorm",
            "config": {"name": "batch_norm", "momentum": 0.99, "epsilon": 0.001},
            "registered_name": "ns3l_tf>BatchNorm",
        }
    )
    assert isinstance(layer, keras.layers.BatchNormalization) and layer.momentum == 0.99
