"""`SSLModel`: a Keras model whose train step sums a base SSL method and additive terms."""

import dataclasses
import warnings

import keras
from keras import ops

from ns3l_tf import backend, losses, methods, schedules, settings
from ns3l_tf.metrics import ErrorRate
from ns3l_tf.models import layers, precision
from ns3l_tf.models.strong_augmentation import StrongAugmentation


def _declared_input_shape(backbone) -> tuple[int, ...] | None:
    """`(H, W, C)` of a backbone with one input of known shape (a functional or built
    `Sequential` model); None otherwise."""
    inputs = getattr(backbone, "inputs", None)
    if not inputs or len(inputs) != 1:
        return None
    shape = tuple(inputs[0].shape[1:])
    return None if None in shape else shape


def _split_batch(data):
    """`((x_l, y_l), x_u)` or `(x_l, y_l)` → `(x_l, y_l, x_u or None, extras)`.

    `x_u` may be a dict `{"images": x_u, **extras}` whose other entries are per-image tensors
    (hidden `labels`, precomputed nearest-neighbour `nn_candidates`); `extras` is that dict
    without the images.
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
            extras = {k: v for k, v in second.items() if k != "images"}
            return first[0], first[1], second["images"], extras
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
    "labels": (B_u,), "nn_candidates": (B_u, K)}` carrying the hidden true labels (read only by
    the `oracle` selector and the `ns3l_negative_error` diagnostic) and precomputed
    nearest-neighbour negatives. The loss is

        sup_loss + Σ_terms weight · term   (e.g. sup_loss + λ₁ · ns3l_loss),

    averaged over the global batch (under a `tf.distribute` strategy or a
    `keras.distribution` alike), on TensorFlow and JAX (`ns3l_tf.backend`). `fit` logs `loss`, every
    named term, `accuracy` (on the labeled batch), `ns3l_negatives` (mean negatives per
    unlabeled sample) and, given hidden labels, `ns3l_negative_error` (% of unlabeled samples
    whose negatives include their true class); `evaluate` logs `loss`, `accuracy` and
    `error` (percent).

    The model's input is the raw images; `preprocessing` maps them to network inputs (fitted
    statistics travel with a saved model) and, in training-mode passes only, `augmentation`
    draws a fresh random view at every call. Methods add their perturbations (VAT) between
    the two, in preprocessed units, by calling `classify` on `preprocess`ed images.

    Args:
      backbone: a Keras model mapping `(batch, H, W, C)` images to `(batch, num_classes)`
        logits.
      num_classes: K.
      algorithm: one base method (`supervised`, `pseudo_label`, `vat`, `mixmatch`,
        `fixmatch`, ...) and any additive terms (`entmin`, `ns3l`) joined by `+`, e.g.
        `"ns3l"` (= `"supervised+ns3l"`), `"vat+entmin"`, `"vat+ns3l"`, `"fixmatch+ns3l"`. A
        base with several views of each unlabeled image (`Method.unlabeled_views`) takes
        unlabeled batches of shape `(B_u, A, H, W, C)`: two weak views for MixMatch, a weak
        one and one the model augments strongly (RandAugment + Cutout) for FixMatch.
      rampup_steps: steps of Oliver et al.'s sigmoid warm-up `exp(−5(1 − t/t_w)²)` of every
        unlabeled term's weight (Pseudo-Label, VAT, EntMin, NS³L); 0 for none.
      seed: seeds the model's own randomness (VAT's directions, MixUp, random selectors);
        None draws one.
      preprocessing: a layer mapping raw images to network inputs (e.g.
        `ns3l_tf.models.preprocessing.fit("standardize", images)`); None feeds the images to
        the backbone as they come.
      augmentation: a layer applied to preprocessed images in training-mode passes, redrawn at
        every call (e.g. `ns3l_tf.models.augmentation.input_augmentation(2, False, 0.0)`);
        None for none (augment in the input pipeline instead).
      num_unlabeled: N_u, the size of the in-memory unlabeled pool, for methods that keep a
        state per unlabeled image (FlexMatch), which read each image's `indices` entry.
      **kwargs: method settings as `<method>_<setting>` (the CLI flag names; each method
        declares its settings, defaults and help in `ns3l_tf.methods`; a setting of a
        method the algorithm does not name is refused), e.g. `ns3l_threshold=0.03` (T in (0, 1);
        default 0.4 / K), `ns3l_weight=0` (λ₁; 0 removes the NS³L term), `vat_epsilon=1.0`.
        Loss weights and T are non-trainable `keras.Variable` attributes of the same name
        (`model.ns3l_weight`), so callbacks and tuners can assign to them. Also
        `keras.Model`'s `name`.

    Raises:
      ConfigError (a ValueError): a setting or a combination is not allowed, or a setting
        belongs to a method the algorithm does not name.
      TypeError: a keyword is neither a method setting nor a `keras.Model` one.

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
        *,
        rampup_steps: int = 0,
        seed: int | None = None,
        preprocessing: keras.layers.Layer | None = None,
        augmentation: keras.layers.Layer | None = None,
        num_unlabeled: int | None = None,
        **kwargs,
    ):
        spec = methods.parse_algorithm(algorithm)
        named = (spec.base, *spec.terms)
        owners = methods.setting_owners()
        stray = [k for k in kwargs if k in owners and owners[k] not in named]
        if stray:
            owner = owners[stray[0]]
            raise settings.ConfigError(
                f"{stray[0]}={kwargs[stray[0]]!r}: a setting of {owner}, which algorithm "
                f"{algorithm!r} does not name; add it ('{spec.base}+{owner}') or leave the "
                "setting out (ns3l_tf.methods.settings_for(algorithm, keywords) drops the "
                "others)"
            )
        values = methods.split_flat(kwargs, named)
        model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _MODEL_KWARGS}
        if kwargs:
            raise TypeError(
                f"unexpected keyword arguments {sorted(kwargs)}: settings are "
                "<method>_<setting> of a method registered in ns3l_tf.methods"
            )
        super().__init__(**model_kwargs)
        values = {name: settings.resolved(v, num_classes) for name, v in values.items()}
        methods.validate_settings(values)
        methods.check_combination(algorithm, values, num_classes)
        _check_outputs_logits(backbone)
        _warn_on_double_preprocessing(backbone, preprocessing)
        self.backbone = backbone
        self._backbone_state = layers.BackboneState(backbone)
        if backend.num_replicas_in_sync() > 1:
            self._backbone_state.synchronize()
        self.preprocessing = preprocessing
        self.augmentation = augmentation
        self.num_classes = num_classes
        self.algorithm = algorithm
        self.rampup_steps = rampup_steps
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._method_settings = values
        self._base = methods.REGISTRY[spec.base]
        self._uses_unlabeled_data = spec.needs_unlabeled(values)
        # The base's strong views are drawn here, on the raw images, at every step.
        self.strong_augmentation = None
        if "strong" in self._base.unlabeled_views:
            self.strong_augmentation = StrongAugmentation(seed=None if seed is None else seed + 1)

        self.num_unlabeled = num_unlabeled
        context = methods.MethodContext(
            num_classes, self.seed_generator, self.consistency_rampup, num_unlabeled
        )
        built = {name: self._with_variables(name, v) for name, v in values.items()}
        self.base_method = self._base.implementation_class()(built[spec.base], context)
        self._own_state(spec.base, self.base_method)
        active_terms = spec.active_terms(values)
        self.additive_terms = [
            methods.REGISTRY[t].implementation_class()(built[t], context) for t in active_terms
        ]
        for name, term in zip(active_terms, self.additive_terms):
            self._own_state(name, term)
        self._terms_read_extras = self._base.rows_are_images and any(
            getattr(term, "extras_read", ()) for term in self.additive_terms
        )

        components = [self.base_method, *self.additive_terms]
        self._trackers = {"loss": keras.metrics.Mean(name="loss")}
        for component in components:
            for name in (*component.loss_names, *component.metric_names):
                self._trackers[name] = keras.metrics.Mean(name=name)
        self._accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self._error = ErrorRate(name="error")

    def _with_variables(self, name: str, values):
        """`values` with each tunable field replaced by a non-trainable Variable, which is
        also set as the model attribute `<name>_<field>`."""
        variables = {}
        for field in settings.tunable_fields(type(values)):
            flag = f"{name}_{field}"
            variable = keras.Variable(getattr(values, field), "float32", trainable=False, name=flag)
            setattr(self, flag, variable)
            variables[field] = variable
        return dataclasses.replace(values, **variables)

    def _own_state(self, name: str, component) -> None:
        """Sets a method's `state_variables` as the model attributes `<name>_<key>`."""
        for key, variable in getattr(component, "state_variables", {}).items():
            setattr(self, f"{name}_{key}", variable)

    @property
    def uses_unlabeled_data(self) -> bool:
        """True when the train step needs `((x_l, y_l), x_u)` batches."""
        return self._uses_unlabeled_data

    @property
    def unlabeled_extra_keys(self) -> tuple[str, ...]:
        """Per-image entries of dict unlabeled batches that the train step reads: `labels`
        (for the negative-error diagnostic; required by `oracle`), `indices` (FlexMatch's
        per-image state) and `nn_candidates` (required by the nearest-neighbour selectors).
        The terms' are left out where rows are mixed."""
        return self._terms_extras("extras_read")

    @property
    def required_unlabeled_extra_keys(self) -> tuple[str, ...]:
        """The entries of `unlabeled_extra_keys` without which the train step cannot run
        (e.g. `labels` for NS³L's `oracle`, `nn_candidates` for its nearest-neighbour
        selectors); the others are diagnostics."""
        return self._terms_extras("extras_required")

    def _terms_extras(self, attribute: str) -> tuple[str, ...]:
        """The base's, then the additive terms' extras keys named by `attribute`, in order,
        without repeats; the terms' only where rows are images."""
        keys = list(getattr(self.base_method, attribute, ()))
        if self._terms_read_extras:
            keys += [k for term in self.additive_terms for k in getattr(term, attribute, ())]
        return tuple(dict.fromkeys(keys))

    @property
    def unlabeled_augmentations(self) -> int:
        """Augmentations per unlabeled image the train step expects (2 for MixMatch)."""
        return self._base.unlabeled_augmentations

    def consistency_rampup(self, step):
        """Oliver et al.'s warm-up factor of the unlabeled terms at optimizer step `step`."""
        return schedules.sigmoid_rampup(step, self.rampup_steps)

    def build(self, input_shape):
        """Builds the input layers for raw images of `input_shape` `(batch, H, W, C)`."""
        self._image_shape = tuple(int(d) for d in input_shape[-3:])
        for layer in (self.preprocessing, self.augmentation, self.strong_augmentation):
            if layer is not None and not layer.built:
                layer.build(input_shape)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """`(H, W, C)` of the raw images the model takes (known once it is built)."""
        if not self.built:
            raise ValueError("the model is not built yet: call it on a batch of images first")
        return self._image_shape

    def preprocess(self, images):
        """Raw `(..., H, W, C)` images → network inputs of the same shape (float32)."""
        if self.preprocessing is None:
            return images
        shape = ops.shape(images)
        flat = ops.reshape(images, (-1, *images.shape[-3:]))  # MixMatch's (B, A, H, W, C)
        return ops.reshape(self.preprocessing(flat), shape)

    def classify(self, inputs, training=False):
        """Preprocessed `(batch, H, W, C)` inputs → `(batch, K)` float32 logits.

        Training-mode calls first draw a fresh augmentation; inside
        `frozen_batchnorm_statistics()` they leave the backbone's moving statistics as they
        found them (any backbone: `layers.BackboneState`).
        """
        if training and self.augmentation is not None:
            inputs = self.augmentation(inputs, training=True)
        if training and not layers.updates_moving_statistics():
            with self._backbone_state.preserved_statistics():
                logits = self.backbone(inputs, training=True)
        else:
            logits = self.backbone(inputs, training=training)
        return ops.cast(logits, "float32")

    def call(self, images, training=False):
        """Raw `(batch, H, W, C)` images → `(batch, K)` float32 logits."""
        return self.classify(self.preprocess(images), training=training)

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

    def build_for_training(self, image_shape: tuple[int, int, int] | None = None) -> None:
        """Builds the model for raw images of `image_shape` `(H, W, C)` (by default the
        backbone's input shape: preprocessing keeps the shape) and its compiled optimizer,
        where they are not built yet. `fit` calls it first.

        Keras would build them inside the first trace of the train step, and TensorFlow
        traces a `tf.function` that creates variables twice: ResNet-50's first step under
        `fit` took 24 s, 15 s once built (2 cores). A backbone that declares no complete
        input shape (a subclassed model not yet called) is left to Keras.
        """
        with backend.steps().variable_creation_scope(self):
            if not self.built:
                image_shape = image_shape or _declared_input_shape(self.backbone)
                if image_shape is None:
                    return
                self.build((None, *image_shape))
            if self.optimizer is not None and not self.optimizer.built:
                self.optimizer.build(self.trainable_variables)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the model and its optimizer built first
        (`build_for_training`), so that the train step is traced once."""
        self.build_for_training()
        return super().fit(*args, **kwargs)

    def train_step(self, *args):
        """One optimizer step: `train_step(data)` on TensorFlow, `train_step(state, data)` →
        `(logs, state)` on JAX (`ns3l_tf.backend`); both run `compute_ssl_losses`."""
        return backend.steps().train_step(self, *args)

    def test_step(self, *args):
        """Evaluation metrics of one `(images, labels)` batch (`ns3l_tf.backend`)."""
        return backend.steps().test_step(self, *args)

    def draw_strong_views(self, x_unlabeled):
        """`(B_u, A, H, W, C)` raw views with those of kind `strong` (`Method.unlabeled_views`)
        drawn from theirs through `strong_augmentation`; unchanged without strong views."""
        if self.strong_augmentation is None:
            return x_unlabeled
        views = [
            self.strong_augmentation(x_unlabeled[:, a], training=True)
            if kind == "strong"
            else ops.cast(x_unlabeled[:, a], "float32")
            for a, kind in enumerate(self._base.unlabeled_views)
        ]
        return ops.stack(views, axis=1)

    def compute_ssl_losses(self, data):
        """The training loss of one batch, written once for every backend.

        Args:
          data: `((x_l, y_l), x_u)` or `(x_l, y_l)` raw images (see the class docstring).

        Returns:
          `(loss, values, (labels, labeled_logits))`: the scalar float32 total
          `Σ weight · rampup · term`, every named term's unweighted value and diagnostic by
          name, and what the accuracy metric reads (`(B_l,)` labels, `(B_l, K)` logits).
        """
        x_labeled, y_labeled, x_unlabeled, extras = _split_batch(data)
        if self.uses_unlabeled_data and x_unlabeled is None:
            raise ValueError(
                f"algorithm {self.algorithm!r} needs unlabeled data: fit() on batches "
                "((x_labeled, y_labeled), x_unlabeled)"
            )
        if not self.uses_unlabeled_data:
            x_unlabeled = None
        x_labeled = self.preprocess(x_labeled)
        if x_unlabeled is not None:
            x_unlabeled = self.preprocess(self.draw_strong_views(x_unlabeled))
        if getattr(self.base_method, "extras_read", ()):
            outputs = self.base_method(
                self, x_labeled, y_labeled, x_unlabeled, unlabeled_extras=extras
            )
        else:
            outputs = self.base_method(self, x_labeled, y_labeled, x_unlabeled)
        if self._terms_read_extras:
            outputs = dataclasses.replace(outputs, unlabeled_extras=extras)
        contributions = [outputs.contribution] + [term(outputs) for term in self.additive_terms]
        named_losses = {k: t for c in contributions for k, t in c.losses.items()}
        step = self.optimizer.iterations
        loss = ops.sum(ops.stack([t.weighted(step) for t in named_losses.values()]))
        # Log what this batch produced (e.g. ns3l_negative_error only given hidden labels).
        values = {"loss": loss}
        for contribution in contributions:
            values.update({name: term.value for name, term in contribution.losses.items()})
            values.update(contribution.metrics)
        return loss, values, (outputs.labels, outputs.labeled_logits)

    def update_train_metrics(self, values, accuracy_inputs) -> dict:
        """Adds one step's `values` and accuracy to the running means; returns the logs."""
        for name, value in values.items():
            self._trackers[name].update_state(value)
        self._accuracy.update_state(*accuracy_inputs)
        return {m.name: m.result() for m in [*map(self._trackers.get, values), self._accuracy]}

    def update_test_metrics(self, images, labels) -> dict:
        """Adds one evaluation batch's loss, accuracy and error; returns the logs."""
        logits = self(images, training=False)
        self._trackers["loss"].update_state(losses.cross_entropy(labels, logits))
        self._accuracy.update_state(labels, logits)
        self._error.update_state(labels, logits)
        return {m.name: m.result() for m in (self._trackers["loss"], self._accuracy, self._error)}

    def get_config(self):
        config = {
            **super().get_config(),
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessing": keras.saving.serialize_keras_object(self.preprocessing),
            "augmentation": keras.saving.serialize_keras_object(self.augmentation),
            "num_classes": self.num_classes,
            "algorithm": self.algorithm,
            "rampup_steps": self.rampup_steps,
            "seed": self.seed,
            "num_unlabeled": self.num_unlabeled,
        }
        for name, values in self._method_settings.items():
            current = {
                field: float(getattr(self, f"{name}_{field}").numpy())
                for field in settings.tunable_fields(type(values))
            }
            config.update(settings.flat(name, dataclasses.replace(values, **current)))
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for layer in ("backbone", "preprocessing", "augmentation"):
            config[layer] = keras.saving.deserialize_keras_object(config.get(layer))
        return cls(**config)


def _check_outputs_logits(backbone: keras.Model) -> None:
    """Refuses a backbone whose last layer applies a softmax (e.g. a `keras.applications`
    model built with its default `classifier_activation="softmax"`): SSLModel's losses take
    logits, and probabilities there would train silently wrong."""
    last = backbone.layers[-1] if getattr(backbone, "layers", None) else None
    activation = getattr(last, "activation", None)
    if activation is not None and getattr(activation, "__name__", "") == "softmax":
        raise ValueError(
            f"backbone {backbone.name!r} ends in a softmax ({last.name!r}): SSLModel needs "
            "logits; build it without one (keras.applications: classifier_activation=None)"
        )


def _warn_on_double_preprocessing(backbone: keras.Model, preprocessing) -> None:
    """Warns when a backbone scales its own inputs (e.g. `keras.applications.MobileNetV3Small`
    with `include_preprocessing=True`, which expects 0–255 images) and the model is given a
    preprocessing layer too: the backbone would see twice-scaled images."""
    scales_itself = [
        x.name
        for x in getattr(backbone, "layers", [])[:3]  # the input, then its first layers
        if isinstance(x, (keras.layers.Rescaling, keras.layers.Normalization))
    ]
    if scales_itself and preprocessing is not None:
        warnings.warn(
            f"backbone {backbone.name!r} scales its inputs itself (layer {scales_itself[0]!r}) "
            "and SSLModel's preprocessing scales them first; pass preprocessing=None to give "
            "it the raw 0-255 images it expects",
            stacklevel=3,
        )


# keras.Model's own keyword arguments (what its get_config holds).
_MODEL_KWARGS = ("name", "trainable", "dtype")


def load_model(path: str, compile: bool = True) -> SSLModel:
    """Loads an `SSLModel` saved with `model.save(path)` (e.g. a run's `model.keras`).

    Like `keras.saving.load_model` (which finds the package's classes once `ns3l_tf` is
    imported: `ns3l_tf.registration`), then restores the switchable mixed-precision policies
    and calls the model once, so that it can be exported (`model.export`) at once.

    Args:
      path: a `.keras` file.
      compile: restore the optimizer too.
    """
    from ns3l_tf.models import augmentation, preprocessing  # noqa: F401

    model = keras.saving.load_model(path, compile=compile)
    precision.restore_switchable(model)
    model(ops.zeros((1, *model.image_shape)))  # traced once, as `export` needs
    return model
