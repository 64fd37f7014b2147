"""Seeded, class-balanced splits: sizes, balance, determinism, disjointness, errors."""

import numpy as np
import pytest

from ns3l_tf.data import splits


def _labels(n=3000, k=10):
    return np.random.default_rng(0).integers(0, k, size=n)


def test_sizes_balance_and_disjointness():
    labels = _labels()
    s = splits.split_training_set(labels, 10, num_labeled=200, num_validation=500, seed=3)
    assert (len(s.labeled), len(s.validation), len(s.unlabeled)) == (200, 500, 2300)
    np.testing.assert_array_equal(np.bincount(labels[s.labeled], minlength=10), [20] * 10)
    everything = np.concatenate([s.labeled, s.unlabeled, s.validation])
    np.testing.assert_array_equal(np.sort(everything), np.arange(3000))  # disjoint and complete
    for part in (s.labeled, s.unlabeled, s.validation):
        assert np.all(np.diff(part) > 0)


def test_same_seed_same_split_other_seed_other_labeled_subset():
    labels = _labels()
    a = splits.split_training_set(labels, 10, 200, 500, seed=3)
    b = splits.split_training_set(labels, 10, 200, 500, seed=3)
    c = splits.split_training_set(labels, 10, 200, 500, seed=4)
    np.testing.assert_array_equal(a.labeled, b.labeled)
    np.testing.assert_array_equal(a.unlabeled, b.unlabeled)
    assert len(np.intersect1d(a.labeled, c.labeled)) < 100


def test_validation_is_independent_of_the_labeled_seed():
    labels = _labels()
    a = splits.split_training_set(labels, 10, 200, 500, seed=1)
    b = splits.split_training_set(labels, 10, 100, 500, seed=2)
    np.testing.assert_array_equal(a.validation, b.validation)


def test_seeded_subsets_are_pinned():
    """NumPy's PCG64 draws are platform independent: a seed names one subset on every machine.

    These indices were drawn once; a change here changes every published split.
    """
    labels = np.arange(20) % 2
    s = splits.split_training_set(labels, 2, num_labeled=4, num_validation=0, seed=0)
    assert s.labeled.tolist() == [5, 7, 12, 14]
    s = splits.split_training_set(labels, 2, num_labeled=4, num_validation=4, seed=0)
    assert (s.labeled.tolist(), s.validation.tolist()) == ([5, 14, 16, 17], [2, 4, 6, 19])


@pytest.mark.parametrize(
    "num_labeled, num_validation, message",
    [
        (205, 0, "num_labeled must be a positive multiple of the 10 classes, got 205"),
        (0, 0, "num_labeled must be a positive multiple"),
        (2600, 500, "num_labeled \\+ num_validation = 3100 exceeds the 3000 training images"),
        (2400, 500, "class \\d has \\d+ training images outside validation, fewer than the 240"),
    ],
)
def test_impossible_sizes_are_refused(num_labeled, num_validation, message):
    with pytest.raises(ValueError, match=message):
        splits.split_training_set(_labels(), 10, num_labeled, num_validation, seed=0)


def test_real_fashion_mnist_split(fmnist_raw):
    s = splits.split_training_set(fmnist_raw.train_labels, 10, 2000, 5000, seed=1)
    assert (len(s.labeled), len(s.unlabeled), len(s.validation)) == (2000, 53000, 5000)
    np.testing.assert_array_equal(np.bincount(fmnist_raw.train_labels[s.labeled]), [200] * 10)
