"""`SSLModel`: a Keras model whose train step sums a base SSL method and additive terms."""

import dataclasses

import keras
import tensorflow as tf
from keras import ops

from ns3l_tf import losses, methods, schedules
from ns3l_tf import negatives as negatives_lib
from ns3l_tf.metrics import ErrorRate

# The paper's threshold scales with 1/K: T = 0.04 for 10 classes, 0.004 for 100.
DEFAULT_THRESHOLD_NUMERATOR = 0.4


# Hyperparameters held in non-trainable Variables (a callback or tuner may assign to them) and
# plain ones, fixed when the train step is traced.
TUNABLE = (
    "ns3l_threshold",
    "ns3l_weight",
    "pseudo_label_weight",
    "vat_weight",
    "entmin_weight",
    "mixmatch_weight",
)
FIXED_HYPERPARAMETERS = (
    "pseudo_label_threshold",
    "vat_epsilon",
    "vat_xi",
    "mixmatch_temperature",
    "mixmatch_alpha",
    "mixmatch_rampup_steps",
    "rampup_steps",
    "negatives",
    "num_negatives",
    "seed",
)


def default_ns3l_threshold(num_classes: int) -> float:
    """The paper's NS³L threshold for `num_classes` classes: 0.4 / K."""
    return DEFAULT_THRESHOLD_NUMERATOR / num_classes


def _split_batch(data):
    """`((x_l, y_l), x_u)` or `(x_l, y_l)` → `(x_l, y_l, x_u or None, side)`.

    `x_u` may be a dict `{"images": x_u, **side}` whose other entries are per-image tensors
    (hidden `labels`, precomputed `negatives`); `side` is that dict without the images.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2:
        first, second = data
        if not (isinstance(first, (tuple, list)) and len(first) == 2):
            return first, second, None, {}
        if isinstance(second, dict):
            if "images" not in second:
                raise ValueError(
                    "an unlabeled batch given as a dict needs an 'images' entry; got keys "
                    f"{sorted(second)}"
                )
            side = {k: v for k, v in second.items() if k != "images"}
            return first[0], first[1], second["images"], side
        return first[0], first[1], second, {}
    raise ValueError(
        "SSLModel.fit expects batches ((x_labeled, y_labeled), x_unlabeled) or, for the "
        f"supervised algorithm, (x_labeled, y_labeled); got {type(data).__name__}"
    )


@keras.saving.register_keras_serializable(package="ns3l_tf")
class SSLModel(keras.Model):
    """Semi-supervised classifier around any backbone that maps images to logits.

    `train_step` takes batches `((x_l, y_l), x_u)`: `x_l` `(B_l, H, W, C)` float images,
    `y_l` `(B_l,)` integer labels, `x_u` `(B_u, H, W, C)` unlabeled images (the supervised
    algorithm also accepts plain `(x_l, y_l)`). `x_u` may also be a dict `{"images": x_u,
    "labels": (B_u,), "negatives": (B_u, K)}` carrying the hidden true labels (read only by
    the `oracle` selector and the `ns3l_negative_error` diagnostic) and precomputed
    nearest-neighbour negatives. The loss is

        sup_loss + Σ_terms weight · term   (e.g. sup_loss + λ₁ · ns3l_loss),

    averaged over the global batch under a `tf.distribute` strategy. `fit` logs `loss`, every
    named term, `accuracy` (on the labeled batch), `ns3l_negatives` (mean negatives per
    unlabeled sample) and, given hidden labels, `ns3l_negative_error` (% of unlabeled samples
    whose negatives include their true class); `evaluate` logs `loss`, `accuracy` and
    `error` (percent).

    Args:
      backbone: a Keras model mapping `(batch, H, W, C)` images to `(batch, num_classes)`
        logits.
      num_classes: K.
      algorithm: one base method (`supervised`, `pseudo_label`, `vat`, `mixmatch`) and any
        additive terms (`entmin`, `ns3l`) joined by `+`, e.g. `"ns3l"` (=
        `"supervised+ns3l"`), `"vat+entmin"`, `"vat+ns3l"`, `"mixmatch+ns3l"`. MixMatch takes
        unlabeled batches of shape `(B_u, 2, H, W, C)` (two augmentations).
      ns3l_threshold: T in (0, 1); None means the paper's 0.4 / K. A non-trainable Variable,
        so callbacks and tuners can assign to it.
      ns3l_weight: λ₁ ≥ 0; 0 removes the NS³L term (and, for the supervised base, the
        unlabeled forward pass). Also a non-trainable Variable.
      negatives: how NS³L picks negatives (`ns3l_tf.negatives.SELECTORS`): `threshold`
        (default), `uniform`, `oracle` (needs hidden labels), `nn_exclude`, `nn_exclude4`,
        `nn_furthest` (need precomputed masks). Only `threshold` works with MixMatch.
      num_negatives: P, negatives per sample for `uniform` and `oracle`.
      pseudo_label_threshold: Pseudo-Label's confidence threshold (0.95).
      pseudo_label_weight: Pseudo-Label's weight (1.0), a Variable.
      vat_epsilon: VAT's ε, the perturbation norm per image (6.0 CIFAR, 1.0 SVHN).
      vat_xi: VAT's finite-difference step ξ (1e-6).
      vat_weight: VAT's weight λ₂ (0.3), a Variable.
      entmin_weight: entropy minimisation's weight (0.1), a Variable.
      mixmatch_weight: MixMatch's λ₃ (75 CIFAR-10, 250 SVHN, 50 STL-10, 150 CIFAR-100), a
        Variable.
      mixmatch_temperature: MixMatch's sharpening temperature (0.5).
      mixmatch_alpha: MixMatch's Beta(α, α) MixUp parameter (0.75).
      mixmatch_rampup_steps: steps of MixMatch's linear warm-up of λ₃ (16,384 = 1,024 kimg
        at batch 64).
      rampup_steps: steps of Oliver et al.'s sigmoid warm-up `exp(−5(1 − t/t_w)²)` of every
        unlabeled term's weight (Pseudo-Label, VAT, EntMin, NS³L); 0 for none.
      seed: seeds the model's own randomness (VAT's directions); None draws one.
      **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:
      model = SSLModel(ns3l_tf.models.small_cnn(), num_classes=10, algorithm="ns3l",
                       ns3l_threshold=0.03, ns3l_weight=1.0)
      model.compile(optimizer=keras.optimizers.Adam(1e-3))
      model.fit(train_ds, steps_per_epoch=500, epochs=10, validation_data=val_ds)
    """

    def __init__(
        self,
        backbone: keras.Model,
        num_classes: int,
        algorithm: str = "supervised",
        ns3l_threshold: float | None = None,
        ns3l_weight: float = 1.0,
        *,
        pseudo_label_threshold: float = 0.95,
        pseudo_label_weight: float = 1.0,
        vat_epsilon: float = 6.0,
        vat_xi: float = 1e-6,
        vat_weight: float = 0.3,
        entmin_weight: float = 0.1,
        mixmatch_weight: float = 75.0,
        mixmatch_temperature: float = 0.5,
        mixmatch_alpha: float = 0.75,
        mixmatch_rampup_steps: int = 16384,
        rampup_steps: int = 0,
        negatives: str = "threshold",
        num_negatives: int = 1,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if ns3l_threshold is None:
            ns3l_threshold = default_ns3l_threshold(num_classes)
        if not 0.0 < ns3l_threshold < 1.0:
            raise ValueError(f"ns3l_threshold must be in (0, 1), got {ns3l_threshold}")
        if ns3l_weight < 0.0:
            raise ValueError(f"ns3l_weight must be >= 0, got {ns3l_weight}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.algorithm = algorithm
        tunable = {
            "ns3l_threshold": ns3l_threshold,
            "ns3l_weight": ns3l_weight,
            "pseudo_label_weight": pseudo_label_weight,
            "vat_weight": vat_weight,
            "entmin_weight": entmin_weight,
            "mixmatch_weight": mixmatch_weight,
        }
        for name in TUNABLE:
            setattr(
                self, name, keras.Variable(tunable[name], "float32", trainable=False, name=name)
            )
        self.pseudo_label_threshold = pseudo_label_threshold
        self.vat_epsilon = vat_epsilon
        self.vat_xi = vat_xi
        self.mixmatch_temperature = mixmatch_temperature
        self.mixmatch_alpha = mixmatch_alpha
        self.mixmatch_rampup_steps = mixmatch_rampup_steps
        self.rampup_steps = rampup_steps
        self.negatives = negatives
        self.num_negatives = num_negatives
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.negative_selector = negatives_lib.NegativeSelector(
            negatives, num_classes, self.ns3l_threshold, num_negatives, self.seed_generator
        )

        spec = methods.parse_algorithm(algorithm)
        term_names = spec.active_terms(ns3l_weight)
        self._uses_unlabeled_data = spec.needs_unlabeled(ns3l_weight)
        self.base_method = methods.BASE_METHODS[spec.base](self)
        if negatives != "threshold" and not self.base_method.rows_are_unlabeled_images:
            raise ValueError(
                f"negatives={negatives!r} chooses negatives per unlabeled image, but "
                f"{spec.base}'s rows are mixtures of images; use negatives='threshold'"
            )
        self._reads_unlabeled_side = "ns3l" in term_names and (
            self.base_method.rows_are_unlabeled_images
        )
        self.additive_terms = [methods.ADDITIVE_TERMS[t](self) for t in term_names]

        components = [self.base_method, *self.additive_terms]
        self._trackers = {"loss": keras.metrics.Mean(name="loss")}
        for component in components:
            for name in (*component.loss_names, *component.metric_names):
                self._trackers[name] = keras.metrics.Mean(name=name)
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._error = ErrorRate(name="error")

    @property
    def uses_unlabeled_data(self) -> bool:
        """True when the train step needs `((x_l, y_l), x_u)` batches."""
        return self._uses_unlabeled_data

    @property
    def unlabeled_side_keys(self) -> tuple[str, ...]:
        """Per-image entries of dict unlabeled batches that the train step reads: `labels`
        (for the negative-error diagnostic; required by `oracle`) and `negatives` (required
        by the nearest-neighbour selectors). Empty when NS³L is off or rows are mixed."""
        if not self._reads_unlabeled_side:
            return ()
        return ("labels", *(k for k in self.negative_selector.required_side if k != "labels"))

    @property
    def unlabeled_augmentations(self) -> int:
        """Augmentations per unlabeled image the train step expects (2 for MixMatch)."""
        return self.base_method.unlabeled_augmentations

    def consistency_rampup(self, step):
        """Oliver et al.'s warm-up factor of the unlabeled terms at optimizer step `step`."""
        return schedules.sigmoid_rampup(step, self.rampup_steps)

    def mixmatch_rampup(self, step):
        """MixMatch's linear warm-up factor of λ₃ at optimizer step `step`."""
        return schedules.linear_rampup(step, self.mixmatch_rampup_steps)

    def call(self, images, training=False):
        """`(batch, H, W, C)` images → `(batch, K)` float32 logits."""
        return ops.cast(self.backbone(images, training=training), "float32")

    @property
    def metrics(self):
        # Our own trackers only: compile()'s loss tracker would duplicate the name "loss".
        return [*self._trackers.values(), self._accuracy, self._error]

    def compile(self, optimizer="adam", **kwargs):
        """Like `keras.Model.compile`, but the model owns its losses and metrics."""
        for key in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            if kwargs.get(key) is not None:
                raise ValueError(
                    f"SSLModel computes its own losses and metrics; do not pass {key}= to "
                    "compile (pass only optimizer=, and optionally jit_compile=)"
                )
        super().compile(optimizer=optimizer, **kwargs)

    def compile_from_config(self, config):
        """Restores the optimizer when loading a `.keras` file (Keras skips custom compiles)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)  # so its saved state loads

    def train_step(self, data):
        x_labeled, y_labeled, x_unlabeled, side = _split_batch(data)
        if self.uses_unlabeled_data and x_unlabeled is None:
            raise ValueError(
                f"algorithm {self.algorithm!r} needs unlabeled data: fit() on batches "
                "((x_labeled, y_labeled), x_unlabeled)"
            )
        if not self.uses_unlabeled_data:
            x_unlabeled = None
        num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            outputs = self.base_method(self, x_labeled, y_labeled, x_unlabeled)
            if self._reads_unlabeled_side:
                outputs = dataclasses.replace(outputs, unlabeled_side=side)
            contributions = [outputs.contribution] + [term(outputs) for term in self.additive_terms]
            named_losses = {k: t for c in contributions for k, t in c.losses.items()}
            step = self.optimizer.iterations
            loss = ops.sum(ops.stack([t.weighted(step) for t in named_losses.values()]))
            # Gradients are summed over replicas: divide local means by the replica count.
            scaled_loss = self.optimizer.scale_loss(loss / num_replicas)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)

        # Log what this batch produced (e.g. ns3l_negative_error only given hidden labels).
        values = {"loss": loss}
        for contribution in contributions:
            values.update({name: term.value for name, term in contribution.losses.items()})
            values.update(contribution.metrics)
        for name, value in values.items():
            self._trackers[name].update_state(value)
        self._accuracy.update_state(outputs.labels, outputs.labeled_logits)
        return {m.name: m.result() for m in [*map(self._trackers.get, values), self._accuracy]}

    def test_step(self, data):
        images, labels = data[0], data[1]
        logits = self(images, training=False)
        self._trackers["loss"].update_state(losses.cross_entropy(labels, logits))
        self._accuracy.update_state(labels, logits)
        self._error.update_state(labels, logits)
        return {m.name: m.result() for m in (self._trackers["loss"], self._accuracy, self._error)}

    def get_config(self):
        config = {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "algorithm": self.algorithm,
        }
        config.update({name: float(getattr(self, name).numpy()) for name in TUNABLE})
        config.update({name: getattr(self, name) for name in FIXED_HYPERPARAMETERS})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
