"""NS³L's second view: q from the base method's pass, μ from a second pass over the same
labeled + unlabeled batch with a fresh augmentation and frozen BatchNorm statistics."""

import keras
import numpy as np
import pytest

from ns3l_tf import SSLModel, models
from ns3l_tf.config import Config, ConfigError
from ns3l_tf.models.layers import frozen_batchnorm_statistics

from . import method_checks


@keras.saving.register_keras_serializable(package="ns3l_tf_tests")
class CountingShift(keras.layers.Layer):
    """A stand-in augmentation whose n-th training call adds n · 0.5 (eager steps only)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, inputs, training=False):
        shift = 0.5 * self.calls
        self.calls += 1
        return inputs + shift


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def test_second_view_against_an_independent_computation(small_data):
    keras.utils.set_random_seed(0)
    model = SSLModel(
        models.small_cnn(),
        10,
        algorithm="ns3l",
        ns3l_threshold=0.08,
        ns3l_views=2,
        augmentation=CountingShift(),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    x_l, y_l, x_u = method_checks.fixed_batch(small_data)
    both = np.concatenate([x_l, x_u])
    with frozen_batchnorm_statistics():
        first = _softmax(model.backbone(both + 0.0, training=True).numpy())  # view 1: +0
        second = _softmax(model.backbone(both + 0.5, training=True).numpy())  # view 2: +0.5
    q, mu = first[16:], second[16:]
    negatives = q < 0.08
    expected = np.mean(-np.log(np.clip(1 - (negatives * mu).sum(-1), 1e-8, 1)))
    assert 0 < negatives.sum(-1).mean() < 10
    one_view = np.mean(-np.log(np.clip(1 - (negatives * q).sum(-1), 1e-8, 1)))
    assert abs(expected - one_view) > 1e-3  # the views differ, so the test can tell them apart

    logs = model.train_step(((x_l, y_l), x_u))
    assert model.augmentation.calls == 2  # the base method's pass and the second view
    assert float(logs["ns3l_loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(logs["ns3l_negatives"]) == pytest.approx(negatives.sum(-1).mean(), rel=1e-6)


def test_second_view_updates_batchnorm_once_and_trains(small_data, monkeypatch):
    method_checks.check_one_step(
        "ns3l", small_data, ("sup_loss", "ns3l_loss"), monkeypatch, ns3l_views=2
    )


def test_views_are_checked():
    with pytest.raises(ConfigError, match=r"--ns3l_views=3: must be 1 or 2"):
        Config(ns3l_views=3)
    with pytest.raises(ConfigError, match=r"--ns3l_views=2: mixmatch's rows are mixtures"):
        Config(algorithm="mixmatch+ns3l", ns3l_views=2)
