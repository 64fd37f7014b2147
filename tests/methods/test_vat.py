"""VAT: the adversarial direction's norm and strength, and the float32 requirement."""

import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import losses
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


@pytest.mark.large
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


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def test_loss_puts_the_adversarial_prediction_first_and_entmin_takes_it(small_data, monkeypatch):
    # Oliver et al.: VAT's loss is KL(p(x + r_adv) ‖ p(x)) and the entropy penalty is taken on
    # the adversarial output, with a constant weight (no warm-up).
    model = method_checks.build(
        "vat+entmin", learning_rate=0.0, vat_weight=0.5, entmin_weight=0.2, rampup_steps=1000
    )
    x_l, y_l, x_u = method_checks.fixed_batch(small_data, n_unlabeled=16)
    r_adv = 0.3 * tf.random.stateless_normal(x_u.shape, (5, 5))
    monkeypatch.setattr(type(model.base_method), "adversarial_perturbation", lambda *a: r_adv)
    with frozen_batchnorm_statistics():
        clean = _softmax(model.backbone(tf.concat([x_l, x_u], 0), training=True).numpy()[16:])
        adversarial = _softmax(model.backbone(x_u + r_adv, training=True).numpy())
    expected_vat = np.mean(np.sum(adversarial * np.log(adversarial / clean), axis=-1))
    expected_entropy = np.mean(-np.sum(adversarial * np.log(adversarial), axis=-1))

    logs = model.train_step(((x_l, y_l), x_u))
    assert float(logs["vat_loss"]) == pytest.approx(expected_vat, rel=1e-4)
    assert float(logs["entmin_loss"]) == pytest.approx(expected_entropy, rel=1e-4)
    vat_rampup = float(np.exp(-5.0))  # step 0 of a 1,000-step warm-up
    assert float(logs["loss"]) == pytest.approx(
        float(logs["sup_loss"]) + 0.5 * vat_rampup * expected_vat + 0.2 * expected_entropy,
        rel=1e-4,
    )
