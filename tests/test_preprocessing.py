"""Preprocessing inside the model: standardisation, [−1, 1] and GCN + ZCA, fitted on training
images, saved with the model, so a reloaded model takes raw images."""

import keras
import numpy as np
import pytest

from ns3l_tf import SSLModel, models
from ns3l_tf.models import preprocessing


def test_standardize_and_rescale_map_raw_pixels():
    raw = np.array([0, 51, 255], np.uint8).reshape(1, 3, 1, 1)
    standardized = preprocessing.standardize([0.25], [0.5])(raw)
    np.testing.assert_allclose(np.ravel(standardized), [-0.5, -0.1, 1.5], rtol=1e-5)
    np.testing.assert_allclose(np.ravel(preprocessing.rescale()(raw)), [-1.0, -0.6, 1.0])


def _correlated_images(n=4000, seed=0):
    """8×8×3 uint8 images whose pixels share a few strong random factors (so their covariance
    is far from identity)."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(size=(n, 6)) @ rng.normal(size=(6, 192)) + rng.normal(size=(n, 192))
    return np.clip(128 + 20 * factors, 0, 255).astype(np.uint8).reshape(n, 8, 8, 3)


def test_gcn_makes_each_image_zero_mean_with_norm_55():
    flat = _correlated_images(50).reshape(50, -1).astype(np.float64)
    normalized = np.asarray(preprocessing.global_contrast_normalize(flat))
    np.testing.assert_allclose(normalized.mean(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=1), 55.0, rtol=1e-9)


def test_zca_whitened_training_images_have_near_identity_covariance():
    images = _correlated_images()
    raw_correlation = np.corrcoef(images.reshape(len(images), -1), rowvar=False)
    assert np.abs(raw_correlation - np.eye(192)).max() > 0.5  # strongly correlated pixels
    layer = preprocessing.fit_gcn_zca(images)
    whitened = np.asarray(layer(images)).reshape(len(images), -1)
    covariance = np.cov(whitened, rowvar=False)
    # Identity but for the 0.1·I the reference adds to the covariance (eigenvalues S / (S + 0.1),
    # here > 0.94) and the direction GCN removes (every image's mean: eigenvalue 0); before
    # whitening the eigenvalues spread 100-fold.
    eigenvalues = np.linalg.eigvalsh(covariance)
    assert eigenvalues[0] < 1e-6 and eigenvalues[1] > 0.94 and eigenvalues[-1] < 1.0
    raw = np.linalg.eigvalsh(np.cov(images.reshape(len(images), -1), rowvar=False))
    assert raw.max() / raw.min() > 100
    assert np.abs(covariance - np.diag(np.diag(covariance))).max() < 0.02
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-3)


def test_zca_layer_is_gcn_then_the_reference_transform():
    images = _correlated_images(300)
    layer = preprocessing.fit_gcn_zca(images)
    flat = np.asarray(preprocessing.global_contrast_normalize(images.reshape(300, -1) * 1.0))
    covariance = np.cov(flat, rowvar=False)
    u, s, _ = np.linalg.svd(covariance + 0.1 * np.eye(192))
    reference = (flat - flat.mean(axis=0)) @ (u @ np.diag(1.0 / np.sqrt(s + 1e-10)) @ u.T)
    np.testing.assert_allclose(
        np.asarray(layer(images[:20])).reshape(20, -1), reference[:20], atol=2e-3
    )


@pytest.mark.parametrize("kind", ["standardize", "rescale", "gcn_zca"])
def test_saved_model_takes_raw_images(kind, tmp_path):
    images = _correlated_images(500)
    layer = {
        "standardize": lambda: preprocessing.standardize([0.5, 0.4, 0.6], [0.2, 0.25, 0.3]),
        "rescale": preprocessing.rescale,
        "gcn_zca": lambda: preprocessing.fit_gcn_zca(images),
    }[kind]()
    keras.utils.set_random_seed(0)
    model = SSLModel(models.small_cnn(input_shape=(8, 8, 3)), 10, preprocessing=layer)
    model.compile(optimizer="adam")
    expected = np.asarray(model(images[:32]))
    np.testing.assert_allclose(expected, model.backbone(layer(images[:32])), rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(np.asarray(loaded(images[:32])), expected, rtol=1e-5, atol=1e-6)
