"""tf.data streams: batch structure, determinism, augmentation; raw images throughout."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import data as data_lib
from ns3l_tf.data import augment


def _take(ds, n):
    return [tf.nest.map_structure(lambda t: t.numpy(), b) for b in ds.take(n)]


def test_paired_batch_structure(small_data):
    ds = data_lib.train_dataset(small_data, batch_size=16, unlabeled_batch_size=48, seed=0)
    (x_l, y_l), x_u = next(iter(ds))
    assert x_l.shape == (16, 28, 28, 1) and x_l.dtype == tf.uint8
    assert y_l.shape == (16,) and y_l.dtype == tf.int64
    assert x_u.shape == (48, 28, 28, 1) and x_u.dtype == tf.uint8
    assert ds.element_spec[1].shape == (48, 28, 28, 1)  # static: drop_remainder


def test_labeled_only_stream(small_data):
    ds = data_lib.train_dataset(small_data, batch_size=16, unlabeled_batch_size=0, seed=0)
    x, y = next(iter(ds))
    assert x.shape == (16, 28, 28, 1) and y.shape == (16,)


def test_stream_is_a_function_of_its_seed(small_data):
    a = _take(data_lib.train_dataset(small_data, 8, 8, seed=5), 3)
    b = _take(data_lib.train_dataset(small_data, 8, 8, seed=5), 3)
    c = _take(data_lib.train_dataset(small_data, 8, 8, seed=6), 3)
    for batch_a, batch_b in zip(a, b):
        tf.nest.map_structure(np.testing.assert_array_equal, batch_a, batch_b)
    assert not np.array_equal(a[0][1], c[0][1])


def test_labeled_stream_cycles_through_every_labeled_image(small_data):
    ds = data_lib.train_dataset(small_data, batch_size=50, unlabeled_batch_size=0, seed=0)
    labels = np.concatenate([y for _, y in _take(ds, 10)])  # 500 = one pass
    np.testing.assert_array_equal(np.bincount(labels), np.bincount(small_data.labeled_labels))


def test_each_stream_draws_from_its_own_pool(small_data):
    marked = dataclasses.replace(
        small_data,
        labeled_images=np.zeros_like(small_data.labeled_images),
        unlabeled_images=np.full_like(small_data.unlabeled_images, 255),
    )
    ds = data_lib.train_dataset(marked, batch_size=8, unlabeled_batch_size=8, seed=0)
    for (x_l, _), x_u in _take(ds, 5):
        np.testing.assert_array_equal(x_l, 0)
        np.testing.assert_array_equal(x_u, 255)


def test_augmentation_can_be_left_to_the_model(small_data):
    ds = data_lib.train_dataset(small_data, 8, 8, seed=0, max_translation=0, flip=False)
    plain = data_lib.train_dataset(small_data, 8, 8, seed=0)
    for ((x_l, _), _), ((a_l, _), _) in zip(_take(ds, 3), _take(plain, 3)):
        # Every raw image arrives as stored (the labeled pool, in some order) ...
        stored = {img.tobytes() for img in small_data.labeled_images}
        assert all(img.tobytes() in stored for img in x_l)
        # ... where the default stream translates them (Fashion-MNIST: ±2 px).
        assert not all(img.tobytes() in stored for img in a_l)


def test_translation_is_a_reflect_padded_crop_and_never_flips():
    images = tf.random.stateless_uniform((16, 28, 28, 1), (1, 2), maxval=256, dtype=tf.int32)
    images = tf.cast(images, tf.uint8)
    out = augment.augment(images, tf.constant([3, 4]), max_translation=2, flip=False).numpy()
    offsets = []
    for image, shifted in zip(images.numpy(), out):
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
        matches = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(padded[dy : dy + 28, dx : dx + 28], shifted)
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 4  # offsets drawn per image


def test_flip_flips_about_half_the_batch():
    images = tf.random.stateless_uniform((200, 4, 4, 1), (1, 2))
    out = augment.random_flip(images, tf.constant([7, 8])).numpy()
    flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images.numpy())]
    kept = [np.array_equal(o, i) for o, i in zip(out, images.numpy())]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 70 < sum(flipped) < 130


def test_eval_stream_is_the_raw_images_in_order(small_data):
    ds = data_lib.eval_dataset(small_data.test_images, small_data.test_labels, 250)
    batches = _take(ds, 10)
    assert len(batches) == 4  # 1,000 test images, nothing dropped
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), small_data.test_images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), small_data.test_labels)


def test_training_pool_statistics(small_data):
    pool = np.concatenate([small_data.labeled_images, small_data.unlabeled_images]) / 255.0
    assert small_data.mean[0] == pytest.approx(pool.mean(), rel=1e-5)
    assert small_data.std[0] == pytest.approx(pool.std(), rel=1e-5)
    assert len(small_data.unlabeled_labels) == len(small_data.unlabeled_images) == 4000
