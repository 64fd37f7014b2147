"""Augmentation inside the model: redrawn at every training-mode pass, absent in inference."""

import keras
import numpy as np
import pytest

from ns3l_tf import SSLModel, models
from ns3l_tf.models.augmentation import RandomReflectTranslation, input_augmentation


def _images(n=16, size=12):
    return np.random.default_rng(0).uniform(-1, 1, (n, size, size, 2)).astype("float32")


def _shift(image, dy, dx, s=2):
    padded = np.pad(image, ((s, s), (s, s), (0, 0)), mode="reflect")  # tf.pad's REFLECT
    return padded[s + dy : s + dy + image.shape[0], s + dx : s + dx + image.shape[1]]


def test_translation_is_an_integer_reflect_shift_drawn_per_image_and_per_call():
    images = _images()
    layer = RandomReflectTranslation(2, seed=0)
    calls = [np.asarray(layer(images, training=True)) for _ in range(2)]
    offsets = []
    for call in calls:
        found = []
        for image, out in zip(images, call):
            matches = [
                (dy, dx)
                for dy in range(-2, 3)
                for dx in range(-2, 3)
                if np.array_equal(_shift(image, dy, dx), out)
            ]
            assert len(matches) == 1  # exactly one reflect-padded integer shift
            found.append(matches[0])
        assert len(set(found)) > 5  # per image
        offsets.append(found)
    assert offsets[0] != offsets[1]  # redrawn at every call
    np.testing.assert_array_equal(layer(images, training=False), images)


def test_translation_offsets_are_uniform_over_the_square():
    layer = RandomReflectTranslation(2, seed=1)
    # Pixel value = column index, so an interior pixel shows its image's column shift.
    ramp = np.tile(np.arange(16, dtype="float32")[None, :, None], (16, 1, 1))
    shifted = np.asarray(layer(np.repeat(ramp[None], 500, 0), training=True))
    counts = np.bincount(shifted[:, 8, 8, 0].astype(int) - 6, minlength=5)
    assert counts.sum() == 500 and len(counts) == 5 and counts.min() > 70  # 100 each


def test_oliver_augmentation_flips_translates_and_adds_noise_only_in_training():
    images = _images(64)
    augment = input_augmentation(max_translation=2, flip=True, noise_stddev=0.15, seed=3)
    assert [type(layer).__name__ for layer in augment.layers] == [
        "RandomFlip",
        "RandomReflectTranslation",
        "GaussianNoise",
    ]
    first, second = (np.asarray(augment(images, training=True)) for _ in range(2))
    assert not np.allclose(first, second)
    np.testing.assert_array_equal(augment(images, training=False), images)
    noise = np.asarray(input_augmentation(0, False, 0.15, seed=3)(images, training=True)) - images
    assert noise.std() == pytest.approx(0.15, rel=0.05) and abs(noise.mean()) < 0.01
    flips = np.asarray(input_augmentation(0, True, 0.0, seed=3)(images, training=True))
    flipped = [np.array_equal(f, i[:, ::-1]) for f, i in zip(flips, images)]
    kept = [np.array_equal(f, i) for f, i in zip(flips, images)]
    assert all(a or b for a, b in zip(flipped, kept)) and 16 < sum(flipped) < 48  # per image
    assert input_augmentation(0, False, 0.0) is None


def test_model_passes_see_fresh_views_in_training_and_none_in_inference():
    keras.utils.set_random_seed(0)
    model = SSLModel(
        models.small_cnn(input_shape=(12, 12, 2)),
        10,
        augmentation=input_augmentation(2, flip=False, noise_stddev=0.0, seed=0),
    )
    images = _images(8)
    train = [np.asarray(model(images, training=True)) for _ in range(2)]
    assert not np.allclose(train[0], train[1])
    infer = [np.asarray(model(images, training=False)) for _ in range(2)]
    np.testing.assert_array_equal(infer[0], infer[1])
    np.testing.assert_allclose(infer[0], model.backbone(images, training=False), rtol=1e-6)


def test_same_seed_same_draws():
    images = _images()
    draws = [
        np.asarray(input_augmentation(2, True, 0.15, seed=7)(images, training=True))
        for _ in range(2)
    ]
    np.testing.assert_array_equal(draws[0], draws[1])


@pytest.mark.parametrize("shift", [0, 3])
def test_translation_layer_round_trips_through_its_config(shift):
    layer = RandomReflectTranslation(shift, seed=4)
    again = RandomReflectTranslation.from_config(layer.get_config())
    assert (again.max_shift, again.seed) == (shift, 4)
