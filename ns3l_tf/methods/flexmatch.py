"""FlexMatch (Zhang et al. 2021) as a base method: FixMatch with curriculum class-wise
thresholds, following USB's implementation (microsoft/Semi-supervised-learning
`semilearn/algorithms/flexmatch/flexmatch.py` and `utils.py`)."""

import dataclasses

from ns3l_tf.lazy import lazy
from ns3l_tf.methods.base import (
    BaseOutputs,
    Contribution,
    Term,
    forward_weak_and_strong,
    weak_and_strong_outputs,
)
from ns3l_tf.methods.registry import BASE, Method, register
from ns3l_tf.settings import ConfigError, non_negative, setting, unit_interval_from_zero

keras = lazy("keras")
ops = lazy("keras.ops")
backend = lazy("ns3l_tf.backend")
losses = lazy("ns3l_tf.losses")


@dataclasses.dataclass(frozen=True)
class FlexMatchSettings:
    """FlexMatch (Zhang et al. 2021)."""

    threshold: float = setting(
        0.95,
        "FlexMatch's upper threshold tau, scaled per class by its learning effect (USB: p_cutoff).",
        check=unit_interval_from_zero,
    )
    weight: float = setting(
        1.0, "FlexMatch's unlabeled weight lambda_u.", check=non_negative(), tunable=True
    )
    warmup: bool = setting(
        True,
        "Threshold warm-up: learning effects are normalised by the count of unused images too "
        "while those are the most (USB: thresh_warmup).",
    )


def learning_effects(selected_labels, num_classes: int, warmup: bool, previous):
    """FlexMatch's class-wise learning effects σ_c (USB `flexmatch/utils.py:24-35`).

    Args:
      selected_labels: `(N_u,)` int: each unlabeled image's last confident pseudo-label, −1
        where it never had one.
      num_classes: K.
      warmup: normalise by the largest count among the K classes *and* the unused images
        (−1); else among the classes only.
      previous: `(K,)` the effects so far, kept while every image has the same entry (at
        the start: all −1).

    Returns:
      `(K,)` float32 `count_c / max count`.
    """
    # [unused, class 0, ..., class K−1]; a sum of one-hots, as XLA (JAX) needs static shapes.
    counts = ops.sum(ops.one_hot(selected_labels + 1, num_classes + 1), axis=0)
    class_counts = counts[1:]
    largest = ops.max(counts) if warmup else ops.max(class_counts)
    effects = class_counts / ops.maximum(largest, 1.0)
    all_alike = ops.max(counts) >= ops.cast(ops.shape(selected_labels)[0], "float32")
    return ops.where(all_alike, previous, effects)


class FlexMatch:
    """FixMatch's loss with a threshold per class: `τ · σ_c / (2 − σ_c)` for the class c of
    the weak view's argmax (USB's "convex" mapping, `utils.py:53`).

    σ_c, the class's learning effect, counts the unlabeled images whose last pseudo-label
    above τ was c. So the method keeps each unlabeled image's last confident pseudo-label
    (`selected_labels`, `(N_u,)`, −1 until it has one) and σ (`(K,)`) across steps: the model
    owns them as `flexmatch_selected_labels` and `flexmatch_learning_effects`, so they are
    saved with it, restored on resume and carried through a JAX step. Each step masks with σ
    as it stood before the step, then records the batch's confident pseudo-labels and
    recomputes σ (`utils.py:38-61`). Logs `flexmatch_mask` (the share of unlabeled images
    used) and `flexmatch_used` (the share of the pool with a pseudo-label so far).

    The per-image state needs every batch's `indices` (positions in the in-memory unlabeled
    pool). On several TensorFlow replicas each records the whole global batch's pseudo-labels
    (`backend.all_gather`), so every replica keeps the same state (the variables aggregate as
    `only_first_replica`); a JAX step sees the global batch itself.

    Args:
      settings: `FlexMatchSettings`: `threshold` τ (0.95), `weight` λ_u (1.0), `warmup`.
      context: a `MethodContext`: K and N_u (`num_unlabeled`, required).

    Raises:
      ConfigError: N_u is not known.
    """

    loss_names = ("sup_loss", "flexmatch_loss")
    metric_names = ("flexmatch_mask", "flexmatch_used")
    extras_read = ("indices",)
    extras_required = ("indices",)

    def __init__(self, settings, context):
        if context.num_unlabeled is None:
            raise ConfigError(
                "flexmatch keeps a pseudo-label per unlabeled image: build SSLModel with "
                "num_unlabeled= (the size of the unlabeled pool)"
            )
        self.threshold = settings.threshold
        self.weight = settings.weight
        self.warmup = settings.warmup
        self.num_classes = context.num_classes
        self.selected_labels = keras.Variable(
            -ops.ones((context.num_unlabeled,), "int32"),
            trainable=False,
            aggregation="only_first_replica",  # every replica computes the same update
            name="flexmatch_selected_labels",
        )
        self.learning_effects = keras.Variable(
            ops.zeros((context.num_classes,)),
            trainable=False,
            aggregation="only_first_replica",
            name="flexmatch_learning_effects",
        )
        self.state_variables = {
            "selected_labels": self.selected_labels,
            "learning_effects": self.learning_effects,
        }

    def class_thresholds(self, pseudo_labels):
        """`(B_u,)` thresholds `τ σ_c / (2 − σ_c)` of the images' pseudo-labels c."""
        effects = ops.take(self.learning_effects.value, pseudo_labels)
        return self.threshold * effects / (2.0 - effects)

    def record(self, weak_probs, indices):
        """Records the confident (≥ τ) pseudo-labels of the images at `indices`, then σ;
        every replica records the whole global batch's."""
        weak_probs, indices = backend.all_gather(weak_probs), backend.all_gather(indices)
        confident = ops.max(weak_probs, axis=-1) >= self.threshold
        current = ops.take(self.selected_labels.value, indices)
        labels = ops.where(confident, ops.cast(ops.argmax(weak_probs, axis=-1), "int32"), current)
        selected = ops.scatter_update(self.selected_labels.value, indices[:, None], labels)
        self.selected_labels.assign(selected)
        self.learning_effects.assign(
            learning_effects(selected, self.num_classes, self.warmup, self.learning_effects.value)
        )
        return selected

    def __call__(self, model, x_labeled, y_labeled, x_unlabeled, unlabeled_extras) -> BaseOutputs:
        labeled_logits, weak_probs, strong_logits = forward_weak_and_strong(
            model, x_labeled, x_unlabeled, "FlexMatch"
        )
        thresholds = self.class_thresholds(ops.argmax(weak_probs, axis=-1))
        unlabeled_loss, mask = losses.confident_cross_entropy(weak_probs, strong_logits, thresholds)
        selected = self.record(weak_probs, ops.cast(unlabeled_extras["indices"], "int32"))
        contribution = Contribution(
            losses={"flexmatch_loss": Term(unlabeled_loss, self.weight)},
            metrics={
                "flexmatch_mask": ops.mean(mask),
                "flexmatch_used": ops.mean(ops.cast(selected >= 0, "float32")),
            },
        )
        return weak_and_strong_outputs(
            labeled_logits, y_labeled, weak_probs, strong_logits, contribution
        )


def check_flexmatch(spec, values, setup) -> None:
    """FlexMatch's combination rule: its per-image state needs the pool in memory."""
    if spec.base == "flexmatch" and setup.streamed_unlabeled:
        raise ConfigError(
            "--extra_unlabeled: flexmatch keeps a pseudo-label per unlabeled image, and the "
            "extra split is streamed without positions; turn it off"
        )


register(
    Method(
        "flexmatch",
        BASE,
        FlexMatchSettings,
        FlexMatch,
        unlabeled_views=("weak", "strong"),
        gives_second_view=False,
        augments_in_pipeline=True,
        check=check_flexmatch,
    )
)
