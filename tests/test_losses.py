"""NS³L loss, negatives mask and cross-entropy against hand-computed values and gradients."""

import math

import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import losses


def test_negatives_mask_marks_classes_below_threshold():
    targets = np.array([[0.7, 0.28, 0.02], [0.04, 0.05, 0.91]], "float32")
    mask = losses.ns3l_negatives(targets, 0.05).numpy()
    np.testing.assert_array_equal(mask, [[0, 0, 1], [1, 0, 0]])  # 0.05 is not < 0.05


def test_ns3l_loss_matches_hand_computation():
    probs = np.array([[0.7, 0.28, 0.02], [0.5, 0.49, 0.01]], "float32")
    # Negatives at T=0.05: class 2 in both rows.
    expected = (-math.log(1 - 0.02) - math.log(1 - 0.01)) / 2
    assert float(losses.ns3l_loss(probs, probs, 0.05)) == pytest.approx(expected, rel=1e-6)


def test_ns3l_loss_takes_negatives_from_targets_and_mass_from_probs():
    targets = np.array([[0.01, 0.9, 0.09]], "float32")  # negative: class 0 only
    probs = np.array([[0.3, 0.5, 0.2]], "float32")
    assert float(losses.ns3l_loss(targets, probs, 0.05)) == pytest.approx(-math.log(0.7), rel=1e-6)


def test_ns3l_loss_without_negatives_is_zero():
    probs = np.array([[0.4, 0.3, 0.3]], "float32")
    assert float(losses.ns3l_loss(probs, probs, 0.1)) == 0.0


def test_ns3l_gradient_with_respect_to_probs():
    targets = tf.constant([[0.01, 0.9, 0.09], [0.6, 0.02, 0.38]])
    probs = tf.Variable([[0.3, 0.5, 0.2], [0.5, 0.1, 0.4]])
    with tf.GradientTape() as tape:
        loss = losses.ns3l_loss(targets, probs, 0.05)
    grad = tape.gradient(loss, probs).numpy()
    # d/dμ_bk of mean_b -log(1 - Σ_neg μ_b) = [k negative] / (B · (1 - Σ_neg μ_b)).
    expected = [[1 / (2 * 0.7), 0, 0], [0, 1 / (2 * 0.9), 0]]
    np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_ns3l_gradient_with_respect_to_logits():
    logits = tf.Variable([[2.0, 0.5, -3.0, -1.0]])
    with tf.GradientTape() as tape:
        probs = tf.nn.softmax(logits)
        loss = losses.ns3l_loss(probs, probs, 0.1)
    grad = tape.gradient(loss, logits).numpy()[0]
    mu = tf.nn.softmax(logits).numpy()[0]
    positive = mu >= 0.1
    # loss = -log Σ_pos μ  ⇒  ∂/∂z_j = μ_j − [j ∈ pos] μ_j / Σ_pos μ.
    expected = mu - positive * mu / mu[positive].sum()
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    assert positive.tolist() == [True, True, False, False]


def test_all_mass_on_negatives_gives_finite_loss_and_gradient():
    logits = tf.Variable([[0.0, 0.0, 0.0, 0.0]])  # every class at 0.25 < T = 0.3
    with tf.GradientTape() as tape:
        probs = tf.nn.softmax(logits)
        loss = losses.ns3l_loss(probs, probs, 0.3)
    grad = tape.gradient(loss, logits)
    assert float(loss) == pytest.approx(-math.log(losses.NEGATIVE_MASS_EPSILON), rel=1e-6)
    assert np.all(np.isfinite(grad.numpy()))


def test_mask_never_receives_gradient():
    targets = tf.Variable([[0.01, 0.9, 0.09]])
    probs = tf.Variable([[0.3, 0.5, 0.2]])
    with tf.GradientTape(persistent=True) as tape:
        mask = losses.ns3l_negatives(targets, 0.05)
        loss = losses.ns3l_loss(targets, probs, 0.05)
    assert tape.gradient(mask, targets) is None
    assert tape.gradient(loss, targets) is None


def test_shared_targets_and_probs_differentiate_only_the_probs_path():
    probs = tf.Variable([[0.3, 0.66, 0.04]])
    with tf.GradientTape() as tape:
        loss = losses.ns3l_loss(probs, probs, 0.05)  # q = μ, as in the train step
    grad = tape.gradient(loss, probs).numpy()
    np.testing.assert_allclose(grad, [[0, 0, 1 / 0.96]], rtol=1e-6)


def test_negative_sampling_loss_accepts_any_mask():
    probs = np.array([[0.1, 0.2, 0.3, 0.4]], "float32")
    mask = np.array([[1, 0, 1, 0]], "float32")
    assert float(losses.negative_sampling_loss(mask, probs)) == pytest.approx(
        -math.log(0.6), rel=1e-5
    )


def test_threshold_may_be_a_variable():
    probs = np.array([[0.7, 0.28, 0.02]], "float32")
    threshold = tf.Variable(0.05)
    assert float(losses.ns3l_loss(probs, probs, threshold)) == pytest.approx(
        -math.log(0.98), rel=1e-5
    )
    threshold.assign(0.5)
    assert float(losses.ns3l_loss(probs, probs, threshold)) == pytest.approx(
        -math.log(0.7), rel=1e-5
    )


def test_cross_entropy_matches_hand_computation():
    logits = np.array([[2.0, 0.0], [0.0, 1.0]], "float32")
    labels = np.array([0, 0])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.e)) / 2
    assert float(losses.cross_entropy(labels, logits)) == pytest.approx(expected, rel=1e-6)


def test_entropy_value_and_sign():
    probs = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], "float32")
    assert float(losses.entropy(probs)) == pytest.approx(math.log(2) / 2, rel=1e-6)
    uniform = np.full((1, 4), 0.25, "float32")
    assert float(losses.entropy(uniform)) == pytest.approx(math.log(4), rel=1e-6)
    # Minimising it sharpens: the gradient step raises the largest probability.
    logits = tf.Variable([[1.0, 0.5, 0.0]])
    with tf.GradientTape() as tape:
        value = losses.entropy(tf.nn.softmax(logits))
    stepped = tf.nn.softmax(logits - 0.1 * tape.gradient(value, logits)).numpy()
    assert stepped[0, 0] > tf.nn.softmax(logits).numpy()[0, 0]


def test_kl_divergence_matches_hand_computation_and_detaches_the_target():
    target = tf.Variable([[math.log(0.5), math.log(0.25), math.log(0.25)]])
    logits = tf.Variable([[math.log(0.25), math.log(0.25), math.log(0.5)]])
    with tf.GradientTape(persistent=True) as tape:
        value = losses.kl_divergence(target, logits)
    expected = 0.5 * math.log(2) + 0.25 * 0 + 0.25 * math.log(0.5)
    assert float(value) == pytest.approx(expected, rel=1e-6)
    assert tape.gradient(value, target) is None
    # ∂KL/∂z = softmax(z) − p.
    np.testing.assert_allclose(tape.gradient(value, logits), [[-0.25, 0.0, 0.25]], atol=1e-6)


def test_soft_cross_entropy_equals_sparse_for_one_hot_targets():
    logits = np.array([[2.0, 0.0], [0.0, 1.0]], "float32")
    one_hot = np.array([[1.0, 0.0], [1.0, 0.0]], "float32")
    sparse = losses.cross_entropy(np.array([0, 0]), logits)
    assert float(losses.soft_cross_entropy(one_hot, logits)) == pytest.approx(float(sparse))


def test_pseudo_label_mask_and_loss():
    targets = np.array([[0.96, 0.04], [0.9, 0.1], [0.01, 0.99]], "float32")
    logits = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]], "float32")
    value, mask = losses.pseudo_label_loss(targets, logits, 0.95)
    np.testing.assert_array_equal(mask.numpy(), [1.0, 0.0, 1.0])
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 3
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_sharpen_matches_hand_computation():
    sharpened = losses.sharpen(np.array([[0.6, 0.3, 0.1]], "float32"), 0.5).numpy()
    np.testing.assert_allclose(sharpened, [[0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46]], rtol=1e-5)


def test_squared_error_divides_by_classes_too():
    target = np.array([[1.0, 0.0, 0.0, 0.0]], "float32")
    probs = np.array([[0.5, 0.5, 0.0, 0.0]], "float32")
    assert float(losses.squared_error(target, probs)) == pytest.approx(0.5 / 4)
