"""The nearest-neighbour selectors' candidate negatives, computed once per run from the data.

Each unlabeled image's row of candidates depends only on the labeled set (Euclidean distance
in pixel space), so it is computed before training, in chunks of matrix products, and travels
with the image through the input pipeline (`negatives` reads it as the extra `nn_candidates`).
TensorFlow computes it; the selectors themselves (`negatives`) are backend-neutral.
"""

import numpy as np
import tensorflow as tf

from ns3l_tf.methods.ns3l import NEAREST_NEIGHBOUR_SELECTORS
from ns3l_tf.negatives import EXCLUDED_CLASSES, EXCLUDED_NEIGHBOURS, classes_to_mask


def _partial_squared_distances(chunk, labeled, labeled_sq_norms):
    """`(chunk, N_l)` squared distances less `‖u‖²`: `‖u − l‖² = ‖u‖² − 2 u·l + ‖l‖²`, and
    `‖u‖²` is the same for every `l`, so it changes no ranking of a row."""
    return labeled_sq_norms[None, :] - 2.0 * tf.matmul(chunk, labeled, transpose_b=True)


@tf.function(jit_compile=False, reduce_retracing=True)
def _image_wise_mask(chunk, labeled, labeled_sq_norms, labels, num_classes: int, excluded):
    """Candidates of each chunk row: the classes outside those of its `excluded` nearest
    labeled images, or (None) the class of its furthest labeled image alone."""
    distances = _partial_squared_distances(chunk, labeled, labeled_sq_norms)
    if excluded is None:
        return tf.one_hot(tf.gather(labels, tf.argmax(distances, axis=-1)), num_classes)
    closest = tf.math.top_k(-distances, excluded).indices
    return 1.0 - classes_to_mask(tf.gather(labels, closest), num_classes)


@tf.function(jit_compile=False, reduce_retracing=True)
def _class_wise_mask(chunk, labeled, labeled_sq_norms, labels, num_classes: int, excluded):
    """Candidates of each chunk row, classes ranked by their nearest labeled member (a class
    with none is at the largest float32): the classes outside the `excluded` nearest, or
    (None) the furthest class alone."""
    distances = _partial_squared_distances(chunk, labeled, labeled_sq_norms)
    by_class = tf.transpose(
        tf.math.unsorted_segment_min(tf.transpose(distances), labels, num_classes)
    )
    if excluded is None:
        return tf.one_hot(tf.argmax(by_class, axis=-1), num_classes)
    nearest = tf.math.top_k(-by_class, excluded).indices
    return 1.0 - classes_to_mask(nearest, num_classes)


def nearest_neighbour_candidates(
    unlabeled_images: np.ndarray,
    labeled_images: np.ndarray,
    labeled_labels: np.ndarray,
    num_classes: int,
    selector: str,
    chunk_size: int = 4096,
) -> np.ndarray:
    """The candidate negatives of every unlabeled image by a nearest-neighbour selector.

    Distances are Euclidean between raw pixel vectors (uint8 values as float32), computed in
    chunks of `chunk_size` unlabeled images against all labeled images with one matrix
    product each, so memory stays at `chunk_size × N_l` distances.

    Args:
      unlabeled_images: `(N_u, H, W, C)` uint8 images.
      labeled_images: `(N_l, H, W, C)` uint8 images.
      labeled_labels: `(N_l,)` integer labels.
      num_classes: K.
      selector: one of `methods.ns3l.NEAREST_NEIGHBOUR_SELECTORS`.
      chunk_size: unlabeled images per matrix product.

    Returns:
      `(N_u, K)` float32 0/1 mask, row i the candidates of unlabeled image i: the classes
      outside those of its 1 or 4 nearest labeled images, or the class of its furthest
      (image-wise); the classes outside its 4 nearest classes, or its furthest class
      (class-wise, a class as near as its nearest labeled member).
    """
    if selector not in NEAREST_NEIGHBOUR_SELECTORS:
        raise ValueError(
            f"unknown selector {selector!r}; allowed: {', '.join(NEAREST_NEIGHBOUR_SELECTORS)}"
        )
    labeled = tf.constant(labeled_images.reshape(len(labeled_images), -1), tf.float32)
    labeled_sq_norms = tf.reduce_sum(tf.square(labeled), axis=-1)
    labels = tf.constant(labeled_labels, tf.int32)
    if selector in EXCLUDED_CLASSES:
        chunk_mask, excluded = _class_wise_mask, EXCLUDED_CLASSES[selector]
    else:
        chunk_mask, excluded = _image_wise_mask, EXCLUDED_NEIGHBOURS[selector]
    masks = []
    for start in range(0, len(unlabeled_images), chunk_size):
        chunk = unlabeled_images[start : start + chunk_size]
        chunk = tf.constant(chunk.reshape(len(chunk), -1), tf.float32)
        mask = chunk_mask(chunk, labeled, labeled_sq_norms, labels, num_classes, excluded)
        masks.append(np.asarray(mask, np.float32))
    return np.concatenate(masks, axis=0)
