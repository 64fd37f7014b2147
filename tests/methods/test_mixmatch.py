"""MixMatch's pieces: interleaving, MixUp with λ′ ≥ 0.5, label guessing."""

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf import losses
from ns3l_tf.methods.mixmatch import interleave, mixup, symmetric_beta
from ns3l_tf.models.layers import frozen_batchnorm_statistics

from . import method_checks


def test_interleave_mixes_every_chunk_and_is_its_own_inverse():
    chunks = [tf.fill((6, 2), float(c)) for c in range(3)]  # chunk c holds only c
    mixed = interleave(chunks)
    np.testing.assert_array_equal(mixed[0][:, 0].numpy(), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(mixed[1][:, 0].numpy(), [1, 1, 0, 0, 1, 1])
    np.testing.assert_array_equal(mixed[2][:, 0].numpy(), [2, 2, 2, 2, 0, 0])
    for restored, original in zip(interleave(mixed), chunks):
        np.testing.assert_array_equal(restored.numpy(), original.numpy())


def test_mixup_keeps_each_sample_closest_to_its_origin():
    n = 64
    inputs = tf.reshape(tf.range(n, dtype=tf.float32), (n, 1, 1, 1)) * tf.ones((1, 2, 2, 1))
    targets = tf.eye(n)

    mixed_x, mixed_y, lam = mixup(inputs, targets, 0.75, keras.random.SeedGenerator(0))
    lam, mixed_x, mixed_y = lam.numpy(), mixed_x.numpy(), mixed_y.numpy()
    assert lam.min() >= 0.5 and lam.max() <= 1.0 and lam.std() > 0.05
    np.testing.assert_allclose(mixed_y.sum(axis=1), 1.0, rtol=1e-6)
    for i in range(n):
        partner = np.argmax(np.where(np.arange(n) == i, -1, mixed_y[i]))
        own = mixed_y[i, i]
        assert own >= 0.5 - 1e-6
        if own < 1 - 1e-6:  # mixed with another sample: inputs mix with the same λ′
            np.testing.assert_allclose(own, lam[i], rtol=1e-5)
            np.testing.assert_allclose(
                mixed_x[i, 0, 0, 0], lam[i] * i + (1 - lam[i]) * partner, rtol=1e-4
            )


def test_guesses_are_sharpened_mean_predictions_one_batchnorm_batch_per_augmentation(small_data):
    model = method_checks.build("mixmatch")
    _, _, x_u = method_checks.fixed_batch(small_data, 8, 8, augmentations=2)
    guesses = model.base_method.guess_labels(model, x_u).numpy()
    with frozen_batchnorm_statistics():
        # As the reference's guess_label: each augmentation a batch of its own (2 × 8).
        probs = tf.stack([tf.nn.softmax(model(x_u[:, k], training=True)) for k in (0, 1)], 1)
        joint = tf.nn.softmax(
            tf.reshape(model(tf.reshape(x_u, (16, 28, 28, 1)), training=True), (8, 2, 10))
        )
    expected = losses.sharpen(tf.reduce_mean(probs, axis=1), 0.5).numpy()
    np.testing.assert_allclose(guesses, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(guesses.sum(axis=1), 1.0, rtol=1e-5)
    # One joint batch of 16 normalises with other statistics: a different guess.
    one_batch = losses.sharpen(tf.reduce_mean(joint, axis=1), 0.5).numpy()
    assert np.abs(one_batch - guesses).max() > 1e-4


def test_symmetric_beta_matches_beta_moments_and_compiles_with_xla():
    draws = symmetric_beta(20000, 0.75, keras.random.SeedGenerator(1)).numpy()
    assert draws.min() > 0 and draws.max() < 1
    assert abs(draws.mean() - 0.5) < 0.01
    assert abs(draws.var() - 1 / (4 * (2 * 0.75 + 1))) < 0.005  # Beta(a, a): 1 / (4 (2a + 1))
    assert abs(np.mean(draws < 0.1) - 0.1415) < 0.01  # I_0.1(0.75, 0.75), by quadrature

    @tf.function(jit_compile=True)
    def mix(x, y):
        return mixup(x, y, 0.75, generator)

    generator = keras.random.SeedGenerator(2)
    mixed_x, mixed_y, lam = mix(tf.random.normal((12, 4, 4, 1)), tf.eye(12))
    assert mixed_x.shape == (12, 4, 4, 1) and float(tf.reduce_min(lam)) >= 0.5
