"""SSLModel: the train step's value against an independent computation, metrics, errors,
saving, and a short real training run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import SSLModel, methods, models
from ns3l_tf import data as data_lib
from ns3l_tf.models import preprocessing
from ns3l_tf.settings import ConfigError

from .methods.method_checks import fixed_batch


def _model(algorithm="ns3l", learning_rate=0.0, **kwargs):
    keras.utils.set_random_seed(0)
    model = SSLModel(models.small_cnn(), num_classes=10, algorithm=algorithm, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    model(np.zeros((1, 28, 28, 1), "float32"))
    return model


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def test_train_step_loss_is_supervised_plus_weighted_ns3l(small_data):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = _model(ns3l_threshold=0.09, ns3l_weight=0.7)
    # Independent computation: one training-mode pass over labeled ∪ unlabeled, in NumPy.
    logits = model.backbone(tf.concat([x_l, x_u], 0), training=True).numpy().astype(np.float64)
    probs = _softmax(logits)
    sup = -np.mean(np.log(probs[np.arange(16), y_l.numpy()]))
    negatives = probs[16:] < 0.09
    kept = np.clip(1 - (negatives * probs[16:]).sum(-1), 1e-8, 1)
    ns3l = np.mean(-np.log(kept))

    logs = model.train_step(((x_l, y_l), x_u))
    assert float(logs["sup_loss"]) == pytest.approx(sup, rel=1e-4)
    assert float(logs["ns3l_loss"]) == pytest.approx(ns3l, rel=1e-4)
    assert float(logs["loss"]) == pytest.approx(sup + 0.7 * ns3l, rel=1e-4)
    assert float(logs["ns3l_negatives"]) == pytest.approx(negatives.sum(-1).mean(), rel=1e-6)
    expected_accuracy = np.mean(probs[:16].argmax(-1) == y_l.numpy())
    assert float(logs["accuracy"]) == pytest.approx(expected_accuracy)
    assert ns3l > 0 and 0 < float(logs["ns3l_negatives"]) < 10


def test_train_step_updates_the_weights(small_data):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = _model(learning_rate=0.1)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.train_step(((x_l, y_l), x_u))
    changed = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(changed)


def test_threshold_is_a_variable_read_by_the_compiled_step(small_data):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = _model(ns3l_threshold=0.5)
    step = tf.function(model.train_step)
    assert float(step(((x_l, y_l), x_u))["ns3l_negatives"]) > 5
    for metric in model.metrics:
        metric.reset_state()
    model.ns3l_threshold.assign(1e-9)
    logs = step(((x_l, y_l), x_u))
    assert float(logs["ns3l_negatives"]) == 0.0 and float(logs["ns3l_loss"]) == 0.0


def test_metrics_reported_by_fit_and_evaluate(small_data):
    model = _model(preprocessing=preprocessing.standardize(small_data.mean, small_data.std))
    train_metrics = [m.name for m in model.metrics]
    assert train_metrics == [
        *("loss", "sup_loss", "ns3l_loss", "ns3l_negatives", "ns3l_negative_error"),
        *("accuracy", "error"),
    ]
    val = data_lib.eval_dataset(small_data.test_images, small_data.test_labels, 500)
    result = model.evaluate(val, verbose=0, return_dict=True)
    assert sorted(result) == ["accuracy", "error", "loss"]
    # float(): Keras 3.10 returns scalar tensors here, 3.15 floats.
    error, accuracy = float(result["error"]), float(result["accuracy"])
    assert error == pytest.approx(100 * (1 - accuracy), abs=1e-4)


@pytest.mark.parametrize("algorithm", ["ns3l", "fixmatch+ns3l"])
def test_fit_traces_the_train_step_once_on_a_model_never_called(algorithm, monkeypatch):
    # Keras builds an unbuilt model and optimizer inside the first trace, and TensorFlow
    # traces a step that creates variables twice; `fit` builds them first.
    keras.utils.set_random_seed(0)
    model = SSLModel(models.small_cnn(), num_classes=10, algorithm=algorithm, num_unlabeled=8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    assert not model.built and not model.optimizer.built
    traces = []
    original = SSLModel.train_step
    monkeypatch.setattr(
        SSLModel, "train_step", lambda self, *args: traces.append(1) or original(self, *args)
    )
    rng = np.random.default_rng(0)
    x_u = rng.uniform(0, 255, (8, *((2,) if algorithm != "ns3l" else ()), 28, 28, 1))
    unlabeled = {"images": x_u.astype("float32"), "indices": np.arange(8, dtype="int32")}
    if algorithm == "ns3l":
        unlabeled = unlabeled["images"]
    batch = ((rng.uniform(0, 255, (8, 28, 28, 1)).astype("float32"), np.arange(8) % 10), unlabeled)
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=3, verbose=0)
    assert len(traces) == 1
    assert model.optimizer.iterations.numpy() == 3


def test_a_subclassed_backbone_is_built_by_keras_in_fit():
    class Backbone(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = keras.layers.Flatten()
            self.dense = keras.layers.Dense(10)

        def call(self, x):
            return self.dense(self.flatten(x))

    model = SSLModel(Backbone(), num_classes=10)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build_for_training()  # no declared input shape: left to Keras
    assert not model.built and not model.optimizer.built
    images = np.zeros((4, 8, 8, 1), "float32")
    history = model.fit(images, np.arange(4), batch_size=4, epochs=1, verbose=0).history
    assert model.optimizer.built and np.isfinite(history["loss"][0])


def test_zero_weight_turns_ns3l_off_and_needs_no_unlabeled_data(small_data):
    x_l, y_l, _ = fixed_batch(small_data)
    model = _model(ns3l_weight=0.0)
    assert not model.uses_unlabeled_data
    logs = model.train_step((x_l, y_l))
    assert sorted(logs) == ["accuracy", "loss", "sup_loss"]
    assert float(logs["loss"]) == pytest.approx(float(logs["sup_loss"]))


def test_ns3l_without_unlabeled_batch_is_refused(small_data):
    x_l, y_l, _ = fixed_batch(small_data)
    with pytest.raises(ValueError, match="algorithm 'ns3l' needs unlabeled data"):
        _model().train_step((x_l, y_l))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"algorithm": "ns3l", "ns3l_threshold": 1.0},
            "--ns3l_threshold=1.0: must be in the open interval \\(0, 1\\)",
        ),
        ({"algorithm": "ns3l", "ns3l_weight": -1.0}, "--ns3l_weight=-1.0: must be >= 0"),
        ({"algorithm": "ns3l+vatt"}, "unknown algorithm 'ns3l\\+vatt'"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SSLModel(models.small_cnn(), num_classes=10, **kwargs)


def test_unknown_settings_and_those_of_methods_not_named_are_refused():
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['vat_epsilonn'\]"):
        SSLModel(models.small_cnn(), num_classes=10, algorithm="vat", vat_epsilonn=1.0)
    # Even at its default: VAT would train without the NS³L the caller asked for.
    with pytest.raises(
        ConfigError,
        match=r"^ns3l_weight=1.0: a setting of ns3l, which algorithm 'vat' does not name; add "
        r"it \('vat\+ns3l'\)",
    ):
        SSLModel(models.small_cnn(), num_classes=10, algorithm="vat", ns3l_weight=1.0)
    shared = {"vat_epsilon": 1.0, "ns3l_threshold": 0.05, "preprocessing": None}
    assert methods.settings_for("ns3l", shared) == {"ns3l_threshold": 0.05, "preprocessing": None}
    model = SSLModel(
        models.small_cnn(), 10, algorithm="ns3l", **methods.settings_for("ns3l", shared)
    )
    assert "vat_epsilon" not in model.get_config() and not hasattr(model, "vat_weight")


def test_default_threshold_is_the_papers_over_classes():
    model = SSLModel(models.small_cnn(num_classes=100), num_classes=100, algorithm="ns3l")
    assert float(model.ns3l_threshold.numpy()) == pytest.approx(0.004)


def test_compile_refuses_losses_and_metrics():
    model = SSLModel(models.small_cnn(), num_classes=10)
    with pytest.raises(ValueError, match="do not pass loss= to compile"):
        model.compile(optimizer="adam", loss="mse")


def test_save_and_load_round_trip(small_data, tmp_path):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = _model(ns3l_threshold=0.07, ns3l_weight=0.3, learning_rate=0.01)
    model.train_step(((x_l, y_l), x_u))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded, SSLModel) and loaded.algorithm == "ns3l"
    assert isinstance(loaded.optimizer, keras.optimizers.SGD)
    assert int(loaded.optimizer.iterations.numpy()) == 1
    assert float(loaded.ns3l_threshold.numpy()) == pytest.approx(0.07)
    assert float(loaded.ns3l_weight.numpy()) == pytest.approx(0.3)
    np.testing.assert_allclose(loaded(x_l).numpy(), model(x_l).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.large
def test_short_real_training_run_learns(small_data):
    """NS³L on a real Fashion-MNIST subset: the loss falls, test accuracy ≫ 10%."""
    keras.utils.set_random_seed(0)
    model = SSLModel(
        models.small_cnn(),
        10,
        algorithm="ns3l",
        ns3l_threshold=0.03,
        preprocessing=preprocessing.standardize(small_data.mean, small_data.std),
    )
    model.compile(optimizer=keras.optimizers.Adam(2e-3))
    train = data_lib.train_dataset(small_data, batch_size=32, unlabeled_batch_size=32, seed=0)
    history = model.fit(train, steps_per_epoch=40, epochs=5, verbose=0, shuffle=False).history
    assert history["loss"][-1] < 0.6 * history["loss"][0]
    assert history["ns3l_negatives"][-1] > history["ns3l_negatives"][0]
    test = data_lib.eval_dataset(small_data.test_images, small_data.test_labels)
    result = model.evaluate(test, verbose=0, return_dict=True)
    assert result["accuracy"] > 0.6, result  # chance is 0.1
    assert math.isfinite(result["loss"])
