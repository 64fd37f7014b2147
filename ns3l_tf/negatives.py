"""Negative selectors: which classes NS³L treats as negatives of each unlabeled sample.

Every selector gives a `(batch, classes)` float32 0/1 mask, 1.0 where the class is a negative
of the sample; `losses.negative_sampling_loss` turns any such mask into the NS³L loss. The
variants are those of the paper's Section 5 (Table 5), whose caption says "the number after the
dash indicates the number of negative labels per sample selected":

- `threshold`: the classes whose target probability is below T (the paper's method, default).
- `uniform` ("Uniform - P"): P distinct classes drawn uniformly over all K, afresh per sample
  and step (may include the true class).
- `oracle` ("Oracle - P"): P distinct classes drawn uniformly over the K − 1 *wrong* classes.
  It reads the hidden true labels of the unlabeled pool: a diagnostic bound, not a method.
- `nn_exclude` ("Exclude class of NN - 1"): P (default 1) classes drawn uniformly, afresh per
  step, from those other than the class of the nearest labeled image.
- `nn_exclude4` ("Exclude 4 nearest classes with NN - 1"): P classes drawn from those other
  than the classes of the 4 nearest labeled images (1 to 4 classes are excluded, as
  neighbours may share a class).
- `nn_furthest` ("Furthest class with NN - 1"): the class of the furthest labeled image.
- `nn_exclude_all`, `nn_exclude4_all`: *every* class outside the 1 / 4 nearest neighbours'
  (9 and ~8.4 negatives on Fashion-MNIST; an earlier reading of the table).

The table's labels ("Exclude 4 nearest *classes*", "*Furthest class* with NN") also read
class-wise: rank the classes by the distance from the image to their nearest labeled member.
`nn_exclude4` and `nn_furthest` are the image-wise reading (the classes of the 4 nearest
labeled *images*, 1 to 4 classes; the class of the single furthest labeled *image*); these two
are the class-wise one (the first row, "Exclude class of NN", is the same under both):

- `nn_exclude4_classes`: P classes drawn from those other than the 4 classes nearest by that
  ranking (always exactly 4 excluded).
- `nn_furthest_class`: the class whose nearest labeled member is furthest.

A nearest-neighbour selector's *candidates* are fixed for a run:
`nearest_neighbours.nearest_neighbour_candidates` computes them once (Euclidean distance in
pixel space, batched matrix products; that module alone needs TensorFlow) and the input
pipeline carries each image's row with the image as the extra `nn_candidates`
(`train_dataset(unlabeled_extras=...)`). Which combinations of selector, method and data work
is decided by NS³L's own rules (`ns3l_tf.methods.ns3l.check_ns3l`).

    selector = NegativeSelector("uniform", num_classes=10, count=3, seed_generator=gen)
    mask = selector(targets, extras={})  # (batch, 10), three ones per row
"""

from keras import ops, random

from ns3l_tf import losses
from ns3l_tf.methods.ns3l import NEAREST_NEIGHBOUR_SELECTORS, SELECTORS

# Nearest labeled images whose classes each image-wise rule excludes (None: the furthest's).
EXCLUDED_NEIGHBOURS = {
    "nn_exclude": 1,
    "nn_exclude_all": 1,
    "nn_exclude4": 4,
    "nn_exclude4_all": 4,
    "nn_furthest": None,
}
# Nearest classes (by their nearest labeled member) each class-wise rule excludes (None: the
# furthest class).
EXCLUDED_CLASSES = {"nn_exclude4_classes": 4, "nn_furthest_class": None}
# Selectors that draw P of their candidate classes per sample and step.
DRAWING = ("uniform", "oracle", "nn_exclude", "nn_exclude4", "nn_exclude4_classes")


def classes_to_mask(classes, num_classes: int):
    """`(batch, P)` class indices → `(batch, K)` float32 mask, 1.0 where a class is listed."""
    return ops.minimum(ops.sum(ops.one_hot(classes, num_classes), axis=-2), 1.0)


def draw_negatives(candidates, count: int, seed):
    """`count` distinct classes per row, drawn uniformly from the row's candidate classes.

    Args:
      candidates: `(B, K)` 0/1 float mask with at least `count` ones per row.
      count: P.
      seed: an int or a `keras.random.SeedGenerator`.

    Returns:
      `(B, K)` float32 mask with exactly P ones per row, all among the candidates.
    """
    candidates = ops.cast(candidates, "float32")
    scores = random.uniform(ops.shape(candidates), seed=seed)
    scores = scores - 2.0 * (1.0 - candidates)  # a non-candidate never wins
    return classes_to_mask(ops.top_k(scores, count)[1], candidates.shape[-1])


def uniform_negatives(batch_size: int, num_classes: int, count: int, seed):
    """`count` distinct classes per sample, uniform over all `num_classes` (P ones per row)."""
    return draw_negatives(ops.ones((batch_size, num_classes)), count, seed)


def oracle_negatives(labels, num_classes: int, count: int, seed):
    """`count` distinct classes per sample, uniform over the classes that are not its label.

    Args:
      labels: `(B,)` integer true labels.
      num_classes: K.
      count: P in [1, K − 1].
      seed: an int or a `keras.random.SeedGenerator`.

    Returns:
      `(B, K)` float32 mask with exactly P ones per row and a zero at each true label.
    """
    return draw_negatives(1.0 - ops.one_hot(labels, num_classes), count, seed)


def negative_error(negatives, labels):
    """Fraction (in %) of samples whose negatives include their true class.

    Args:
      negatives: `(B, K)` 0/1 mask.
      labels: `(B,)` integer true labels.
    """
    hits = ops.take_along_axis(negatives, ops.expand_dims(ops.cast(labels, "int32"), -1), -1)
    return 100.0 * ops.mean(ops.cast(hits, "float32"))


class NegativeSelector:
    """Chooses the negatives of the rows of an unlabeled batch, by one of `methods.ns3l.SELECTORS`.

    Called with the base method's detached targets `(B, K)` and `extras`, the per-image
    tensors the input pipeline carried with the unlabeled batch: `labels` `(B,)` (hidden true
    labels, for `oracle`) and `nn_candidates` `(B, K)` (the nearest-neighbour selectors'
    precomputed candidates).

    Args:
      name: one of `methods.ns3l.SELECTORS`.
      num_classes: K.
      threshold: T for `threshold` (a float or a non-trainable `keras.Variable`).
      count: P for the selectors that draw (`DRAWING`).
      seed_generator: a `keras.random.SeedGenerator` for the drawing selectors.
    """

    def __init__(self, name, num_classes, threshold=None, count=1, seed_generator=None):
        if name not in SELECTORS:
            raise ValueError(f"unknown negatives {name!r}; allowed: {', '.join(SELECTORS)}")
        self.name = name
        self.num_classes = num_classes
        self.threshold = threshold
        self.count = count
        self.seed_generator = seed_generator

    @property
    def required_extras(self) -> tuple[str, ...]:
        """The per-image tensors this selector needs from the pipeline."""
        if self.name == "oracle":
            return ("labels",)
        if self.name in NEAREST_NEIGHBOUR_SELECTORS:
            return ("nn_candidates",)
        return ()

    def __call__(self, targets, extras):
        """`(B, K)` targets and the extras → `(B, K)` float32 negatives mask."""
        missing = [key for key in self.required_extras if key not in extras]
        if missing:
            raise ValueError(
                f"{self.name} negatives need the unlabeled batch's {missing[0]!r}: feed "
                f"unlabeled batches as dicts {{'images': ..., {missing[0]!r}: ...}} "
                "(train_dataset(unlabeled_extras=...) builds them)"
            )
        if self.name == "threshold":
            return ops.cast(losses.ns3l_negatives(targets, self.threshold), "float32")
        if self.name == "uniform":
            batch_size = ops.shape(targets)[0]
            return uniform_negatives(batch_size, self.num_classes, self.count, self.seed_generator)
        if self.name == "oracle":
            return oracle_negatives(
                extras["labels"], self.num_classes, self.count, self.seed_generator
            )
        candidates = ops.cast(extras["nn_candidates"], "float32")
        if self.name in DRAWING:
            return draw_negatives(candidates, self.count, self.seed_generator)
        return candidates
