"""VAT: the adversarial direction's norm and strength, and the float32 requirement."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import SSLModel, losses, models
from ns3l_tf.methods.vat import unit_vectors
from ns3l_tf.models.layers import frozen_batchnorm_statistics

from . import method_checks


def test_unit_vectors_have_norm_one_per_sample():
    scales = tf.constant([1e-6, 1.0, 1e3, 1.0, 1e-3])[:, None, None, None]
    d = tf.random.stateless_normal((5, 4, 4, 2), (1, 1)) * scales
    norms = tf.norm(tf.reshape(unit_vectors(d), (5, -1)), axis=1).numpy()
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def _kl(model, x, clean_logits, r):
    with frozen_batchnorm_statistics():
        return float(losses.kl_divergence(clean_logits, model(x + r, training=True)))


def test_adversarial_perturbation_has_norm_epsilon_and_beats_random(small_data):
    model = method_checks.build("vat", vat_epsilon=2.0)
    x_l, y_l, x_u = method_checks.fixed_batch(small_data, n_unlabeled=32)
    for _ in range(30):  # a partly trained model, so predictions are not uniform
        model.train_step(((x_l, y_l), x_u))
    vat = model.base_method
    with frozen_batchnorm_statistics():
        clean = model(x_u, training=True)
    r_adv = vat.adversarial_perturbation(model, x_u, clean)
    norms = tf.norm(tf.reshape(r_adv, (32, -1)), axis=1).numpy()
    np.testing.assert_allclose(norms, 2.0, rtol=1e-4)
    random_r = 2.0 * unit_vectors(tf.random.stateless_normal(x_u.shape, (7, 7)))
    assert _kl(model, x_u, clean, r_adv) > 3 * _kl(model, x_u, clean, random_r)


def test_low_precision_backbone_is_refused(small_data):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        backbone = models.small_cnn()
    finally:
        keras.config.set_dtype_policy("float32")
    model = SSLModel(backbone, 10, algorithm="vat")
    model.compile(optimizer="adam")
    x_l, y_l, x_u = method_checks.fixed_batch(small_data)
    with pytest.raises(ValueError, match="VAT needs a float32 backbone, got bfloat16"):
        model.train_step(((x_l, y_l), x_u))
