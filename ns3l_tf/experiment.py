"""An experiment's parts built from a `Config`: data, datasets, model and optimizer.

`ns3l_tf.training` (the `train` command), `ns3l_tf.tuning` (the `tune` command) and notebooks
build runs the same way through these functions:

    config = Config(num_labeled=2000, algorithm="ns3l", ns3l_threshold=0.03)
    data = experiment.load_data(config)
    model = experiment.build_model(config, data)
    extras = experiment.unlabeled_extras(model, data, config)
    datasets = experiment.build_datasets(config, model, data, extras)
    model.fit(datasets.train, validation_data=datasets.validation, ...)
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ns3l_tf import data as data_lib
from ns3l_tf import schedules
from ns3l_tf.config import Config, ConfigError
from ns3l_tf.models import augmentation, build_backbone, precision, preprocessing
from ns3l_tf.ssl_model import SSLModel


def load_data(config: Config) -> data_lib.SSLData:
    """The `SSLData` split `config` names.

    Raises:
      DataNotFoundError: the data is not on this machine (the message says how to get it).
      CorruptDataError: a data file is unreadable or inconsistent (the message names it).
    """
    return data_lib.load_ssl_data(**config.split_arguments())


def learning_rate_schedule(config: Config):
    """`learning_rate`, then `lr_schedule`'s: times `lr_decay_factor` after step
    `lr_decay_step` (if > 0), or FixMatch's truncated cosine over `train_steps`."""
    if config.lr_schedule == "cosine":
        return schedules.TruncatedCosineDecay(config.learning_rate, config.train_steps)
    if not config.lr_decay_step:
        return config.learning_rate
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [config.lr_decay_step],
        [config.learning_rate, config.learning_rate * config.lr_decay_factor],
    )


def build_optimizer(config: Config) -> keras.optimizers.Optimizer:
    """Adam, or SGD with Nesterov momentum 0.9 (FixMatch's), with the learning-rate schedule,
    decoupled weight decay on kernels only (biases and BatchNorm's gamma/beta are exempt, as
    in MixMatch) and an optional weight EMA; wrapped in dynamic loss scaling for
    `mixed_float16`."""
    common = {
        "learning_rate": learning_rate_schedule(config),
        "weight_decay": config.weight_decay or None,
        "use_ema": config.ema_decay > 0,
        "ema_momentum": config.ema_decay or 0.99,
    }
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(momentum=0.9, nesterov=True, **common)
    else:
        optimizer = keras.optimizers.Adam(**common)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if config.precision == "mixed_float16":
        return keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_preprocessing(config: Config, data: data_lib.SSLData):
    """The layer that maps `data`'s raw images to network inputs, fitted on its labeled and
    unlabeled training images (never on validation or test images)."""
    if config.preprocessing == "standardize":
        return preprocessing.standardize(data.mean, data.std)
    if config.preprocessing == "rescale":
        return preprocessing.rescale()
    return preprocessing.fit_gcn_zca(data.training_images)


def build_augmentation(config: Config):
    """The model's in-network augmentation (None when the pipeline augments): flips where
    the dataset has them, translation and Gaussian noise, seeded from `config.seed`."""
    if not config.augments_in_model:
        return None
    return augmentation.input_augmentation(
        config.max_translation, config.flips, config.input_noise, seed=config.seed + 1
    )


def _has_accelerator() -> bool:
    """Whether the running backend computes on a GPU or TPU."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.default_backend() != "cpu"
    return bool(tf.config.list_logical_devices("GPU"))


def build_model(config: Config, data: data_lib.SSLData) -> SSLModel:
    """The compiled, built `SSLModel` of `config`, taking `data`'s raw images; call it inside
    `strategy.scope()` to distribute it (with several replicas its BatchNorms compute moments
    over all of them)."""
    info = data_lib.DATASETS[config.dataset]
    warning = precision.bfloat16_emulation_warning(config.precision, _has_accelerator())
    if warning:
        logging.warning(warning)
    backbone = build_backbone(
        config.model,
        info.num_classes,
        info.image_shape,
        precision=config.precision,
    )
    model = SSLModel(
        backbone,
        num_classes=info.num_classes,
        algorithm=config.algorithm,
        preprocessing=build_preprocessing(config, data),
        augmentation=build_augmentation(config),
        num_unlabeled=len(data.unlabeled_images),
        **config.model_settings(),
    )
    model.compile(optimizer=build_optimizer(config))
    # Built here, in the strategy's scope, so that saved optimizer state loads back.
    model.build_for_training(info.image_shape)
    return model


def unlabeled_extras(model: SSLModel, data: data_lib.SSLData, config: Config) -> dict:
    """The per-image arrays the model's train step reads beside the unlabeled images.

    The hidden true labels go in whenever they are known and the pool is all in memory (for
    diagnostics such as `ns3l_negative_error`; NS³L's `oracle` needs them), and so do each
    image's `indices` in the pool (FlexMatch keeps a pseudo-label per image); a method that
    needs arrays only the data can give computes them here, once (its `pipeline_extras`,
    e.g. NS³L's nearest-neighbour candidates).

    Raises:
      ConfigError: a method needs what this data cannot give.
    """
    keys = model.unlabeled_extra_keys
    extras = {}
    if "labels" in keys and data.extra_unlabeled is None:
        extras["labels"] = data.unlabeled_labels.astype(np.int32)
    if "indices" in keys and data.extra_unlabeled is None:
        extras["indices"] = np.arange(len(data.unlabeled_images), dtype=np.int32)
    for term in model.additive_terms:
        if hasattr(term, "pipeline_extras"):
            extras.update(term.pipeline_extras(data))
    missing = [k for k in model.required_unlabeled_extra_keys if k not in extras]
    if missing:
        raise ConfigError(
            f"--algorithm={config.algorithm}: needs the unlabeled pool's {missing[0]!r}, which "
            "this data cannot give (an extra split is streamed without labels)"
        )
    return extras


@dataclasses.dataclass(frozen=True)
class Datasets:
    """The streams of a run: `train` (infinite), `validation` (None without a validation
    split) and `test` (finite)."""

    train: tf.data.Dataset
    validation: tf.data.Dataset | None
    test: tf.data.Dataset


def build_datasets(
    config: Config, model: SSLModel, data: data_lib.SSLData, extras: dict | None = None
) -> Datasets:
    """The raw-image streams: the training stream `model`'s train step takes (batch sizes,
    augmentations and extras from `config` and the model; augmented here unless the model
    augments) and the evaluation streams."""
    in_pipeline = not config.augments_in_model
    train = data_lib.train_dataset(
        data,
        config.batch_size,
        config.unlabeled_batch_size if model.uses_unlabeled_data else 0,
        seed=config.seed,
        unlabeled_augmentations=model.unlabeled_augmentations,
        unlabeled_extras=extras,
        max_translation=config.max_translation if in_pipeline else 0,
        flip=config.flips and in_pipeline,
    )
    validation = None
    if len(data.validation_labels):
        validation = data_lib.eval_dataset(
            data.validation_images, data.validation_labels, config.eval_batch_size
        )
    test = data_lib.eval_dataset(data.test_images, data.test_labels, config.eval_batch_size)
    return Datasets(train, validation, test)


def check_divisible(config: Config, num_replicas: int) -> None:
    """Raises `ConfigError` unless both global batches split evenly over the replicas."""
    for flag in ("batch_size", "unlabeled_batch_size"):
        if getattr(config, flag) % num_replicas:
            raise ConfigError(
                f"--{flag}={getattr(config, flag)}: a global batch must split evenly over the "
                f"{num_replicas} replicas of --strategy={config.strategy}"
            )
