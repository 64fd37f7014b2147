"""Seeded, class-balanced labeled / unlabeled / validation splits of a training set."""

import dataclasses

import numpy as np

# The validation split is drawn with this fixed seed, independent of the labeled seed, so
# every run of a dataset is validated (and its test error selected) on the same images.
VALIDATION_SEED = 0


@dataclasses.dataclass(frozen=True)
class SplitIndices:
    """Sorted, disjoint int64 indices into the training split.

    Attributes:
      labeled: `(num_labeled,)`, `num_labeled / K` per class.
      unlabeled: every training index that is neither labeled nor validation.
      validation: `(num_validation,)`, fixed for a dataset whatever the labeled seed.
    """

    labeled: np.ndarray
    unlabeled: np.ndarray
    validation: np.ndarray


def split_training_set(
    labels: np.ndarray, num_classes: int, num_labeled: int, num_validation: int, seed: int
) -> SplitIndices:
    """Holds out a fixed validation set, then draws a class-balanced labeled subset by `seed`.

    Args:
      labels: `(N,)` integer labels of the whole training split.
      num_classes: K; `num_labeled` must be a multiple of it.
      num_labeled: labeled images, `num_labeled / K` per class.
      num_validation: images held out for validation (0 for none).
      seed: draws the labeled subset; the same seed gives the same subset on every machine
        (NumPy's PCG64 generator).

    Raises:
      ValueError: if the sizes are impossible, naming the numbers involved.
    """
    labels = np.asarray(labels)
    if num_labeled <= 0 or num_labeled % num_classes:
        raise ValueError(
            f"num_labeled must be a positive multiple of the {num_classes} classes, "
            f"got {num_labeled}"
        )
    if num_validation < 0 or num_validation + num_labeled > len(labels):
        raise ValueError(
            f"num_labeled + num_validation = {num_labeled + num_validation} exceeds the "
            f"{len(labels)} training images"
        )
    order = np.random.default_rng(VALIDATION_SEED).permutation(len(labels))
    validation, pool = order[:num_validation], order[num_validation:]

    rng = np.random.default_rng(seed)
    per_class = num_labeled // num_classes
    labeled = []
    for k in range(num_classes):
        candidates = np.sort(pool[labels[pool] == k])
        if len(candidates) < per_class:
            raise ValueError(
                f"class {k} has {len(candidates)} training images outside validation, "
                f"fewer than the {per_class} labeled per class asked for"
            )
        labeled.append(rng.choice(candidates, size=per_class, replace=False))
    labeled = np.sort(np.concatenate(labeled))
    unlabeled = np.setdiff1d(pool, labeled)  # sorted
    return SplitIndices(
        labeled=labeled.astype(np.int64),
        unlabeled=unlabeled.astype(np.int64),
        validation=np.sort(validation).astype(np.int64),
    )
