"""Train one semi-supervised model and write `results.json`.

    python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg [--flag=value ...]

Flags given after `--flagfile` override the file. Bad flag values end with one line on stderr
and exit code 2 before anything is loaded or written. The run writes into `--output_dir`:
`results.json` (written last, atomically), `checkpoints/{last,best}.weights.h5`,
`model.keras` and `tensorboard/`.
"""

import dataclasses
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags, logging

from ns3l_tf import cli, distribute, io_utils, negatives
from ns3l_tf import config as config_lib
from ns3l_tf import data as data_lib
from ns3l_tf.callbacks import AtomicCheckpoint, EvaluationHistory
from ns3l_tf.config import Config, ConfigError, config_from_flags
from ns3l_tf.models import build_backbone
from ns3l_tf.ssl_model import SSLModel

flags.adopt_module_key_flags(config_lib)  # --helpshort lists the Config flags


def learning_rate_schedule(config: Config):
    """`learning_rate`, times `lr_decay_factor` after step `lr_decay_step` (if > 0)."""
    if not config.lr_decay_step:
        return config.learning_rate
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [config.lr_decay_step],
        [config.learning_rate, config.learning_rate * config.lr_decay_factor],
    )


# Config fields passed unchanged to SSLModel.
MODEL_HYPERPARAMETERS = (
    "algorithm",
    "ns3l_weight",
    "pseudo_label_threshold",
    "pseudo_label_weight",
    "vat_epsilon",
    "vat_xi",
    "vat_weight",
    "entmin_weight",
    "mixmatch_weight",
    "mixmatch_temperature",
    "mixmatch_alpha",
    "mixmatch_rampup_steps",
    "rampup_steps",
    "negatives",
    "num_negatives",
    "seed",
)


def build_optimizer(config: Config) -> keras.optimizers.Optimizer:
    """Adam with the learning-rate schedule, decoupled weight decay on kernels only (biases
    and BatchNorm's gamma/beta are exempt, as in MixMatch) and an optional weight EMA."""
    optimizer = keras.optimizers.Adam(
        learning_rate_schedule(config),
        weight_decay=config.weight_decay or None,
        use_ema=config.ema_decay > 0,
        ema_momentum=config.ema_decay or 0.99,
    )
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def build_model(config: Config, num_replicas: int = 1) -> SSLModel:
    """The compiled, built `SSLModel` of `config`; call it inside `strategy.scope()` to
    distribute it (with `num_replicas` > 1 its BatchNorms are synchronized)."""
    info = data_lib.DATASETS[config.dataset]
    backbone = build_backbone(
        config.model, info.num_classes, info.image_shape, synchronized=num_replicas > 1
    )
    model = SSLModel(
        backbone,
        num_classes=info.num_classes,
        ns3l_threshold=config.threshold,
        **{name: getattr(config, name) for name in MODEL_HYPERPARAMETERS},
    )
    model.compile(optimizer=build_optimizer(config))
    model(np.zeros((1, *info.image_shape), "float32"))  # build before fit (strategies, tuners)
    model.optimizer.build(model.trainable_variables)  # so saved optimizer state loads back
    return model


def unlabeled_side(model: SSLModel, data: data_lib.SSLData, config: Config) -> dict:
    """The per-image arrays the model's train step reads beside the unlabeled images.

    The hidden true labels go in whenever they are known and the pool is all in memory (for
    the `ns3l_negative_error` diagnostic; `oracle` needs them); the nearest-neighbour
    selectors get their masks, computed here once.

    Raises:
      ConfigError: the selector needs what this data cannot give.
    """
    keys = model.unlabeled_side_keys
    side = {}
    if "labels" in keys and data.extra_unlabeled is None:
        side["labels"] = data.unlabeled_labels.astype(np.int32)
    elif config.negatives == "oracle":
        raise ConfigError(
            "--negatives=oracle: the unlabeled pool has no known labels (an extra split is "
            "streamed); oracle is a diagnostic for labeled benchmark pools only"
        )
    if "negatives" in keys:
        side["negatives"] = negatives.nearest_neighbour_negatives(
            data.unlabeled_images,
            data.labeled_images,
            data.labeled_labels,
            data.info.num_classes,
            config.negatives,
        )
    return side


def _check_divisible(config: Config, num_replicas: int) -> None:
    for flag in ("batch_size", "unlabeled_batch_size"):
        if getattr(config, flag) % num_replicas:
            raise ConfigError(
                f"--{flag}={getattr(config, flag)}: a global batch must split evenly over the "
                f"{num_replicas} replicas of --strategy={config.strategy}"
            )


def run(
    config: Config,
    data: data_lib.SSLData | None = None,
    verbose="auto",
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Trains as `config` says, evaluating every `eval_every` steps, and writes the outputs.

    Under a multi-worker strategy only the chief writes; every worker trains the same model
    and returns the same results.

    Args:
      config: the validated run configuration.
      data: a preloaded split (e.g. a subset in tests); default loads `config.dataset`.
      strategy: default `distribute.make_strategy(config.strategy, config.num_gpus)`.
      verbose: Keras progress output: "auto" (a bar on a terminal, one line per evaluation
        otherwise), 0, 1 or 2.

    Returns:
      The dictionary written to `results.json`. Errors are percentages; `test_error` is at
      the last evaluation, `best_val_test_error` at the evaluation with the lowest
      validation error (None without validation data).
    """
    if data is None:
        data = config.load_data()
    if strategy is None:
        strategy = distribute.make_strategy(config.strategy, config.num_gpus)
    num_replicas = strategy.num_replicas_in_sync
    _check_divisible(config, num_replicas)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = build_model(config, num_replicas)
    start = time.time()
    side = unlabeled_side(model, data, config)
    preprocessing_seconds = time.time() - start
    if "negatives" in side:
        logging.info(
            "%s negatives of %d unlabeled x %d labeled images: %.1f s, %.2f per image",
            config.negatives,
            len(data.unlabeled_images),
            len(data.labeled_images),
            preprocessing_seconds,
            side["negatives"].sum(axis=1).mean(),
        )
    train_ds = data_lib.train_dataset(
        data,
        config.batch_size,
        config.unlabeled_batch_size if model.uses_unlabeled_data else 0,
        seed=config.seed,
        unlabeled_augmentations=model.unlabeled_augmentations,
        unlabeled_side=side,
    )
    val_ds = None
    if len(data.validation_labels):
        val_ds = data_lib.eval_dataset(
            data, data.validation_images, data.validation_labels, config.eval_batch_size
        )
    test_ds = data_lib.eval_dataset(
        data, data.test_images, data.test_labels, config.eval_batch_size
    )

    run_dir = config.run_dir
    custom_loop = config.strategy == "multi_worker"  # Model.fit fails there (keras#20585)
    writes = distribute.is_chief(strategy)
    if writes:
        io_utils.write_split(os.path.join(run_dir, "split.npz"), data.split)
    use_ema = config.ema_decay > 0
    history = EvaluationHistory(
        test_ds,
        steps_per_epoch=config.eval_every,
        use_ema=use_ema,
        evaluate_fn=distribute.evaluate_locally if custom_loop else None,
    )
    callbacks = [*([keras.callbacks.SwapEMAWeights()] if use_ema else []), history]
    if writes:
        callbacks += [
            AtomicCheckpoint(os.path.join(run_dir, "checkpoints")),
            keras.callbacks.TensorBoard(os.path.join(run_dir, "tensorboard"), write_graph=False),
        ]
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    logging.info(
        "%s: %d labeled (digest %s), %d unlabeled, %d validation, %d test images; "
        "%s with T=%g, lambda1=%g; %d replica(s)",
        config.dataset,
        len(data.labeled_labels),
        data.labeled_digest()[:16],
        data.num_unlabeled,
        len(data.validation_labels),
        len(data.test_labels),
        config.algorithm if model.uses_unlabeled_data else "supervised",
        config.threshold,
        config.ns3l_weight,
        num_replicas,
    )
    start = time.time()
    schedule = {
        "steps_per_epoch": config.eval_every,
        "epochs": config.train_steps // config.eval_every,
    }
    if custom_loop:
        distribute.fit_with_custom_loop(
            model, strategy, train_ds, validation_data=val_ds, callbacks=callbacks, **schedule
        )
    else:
        model.fit(
            train_ds,
            validation_data=val_ds,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the tf.data streams shuffle themselves
            **schedule,
        )
    seconds = time.time() - start
    if writes:
        io_utils.atomic_write(os.path.join(run_dir, "model.keras"), model.save, suffix=".keras")

    last, best = history.records[-1], history.best or {}
    results = {
        "test_error": last["test_error"],
        "final_val_error": last.get("val_error"),
        "best_val_test_error": best.get("test_error"),
        "best_val_error": best.get("val_error"),
        "best_val_step": best.get("step"),
        "median_last20_test_error": history.median_test_error(last=20),
        "steps": int(model.optimizer.iterations.numpy()),
        "seconds": round(seconds, 2),
        "preprocessing_seconds": round(preprocessing_seconds, 2),
        "num_labeled": len(data.labeled_labels),
        "num_unlabeled": data.num_unlabeled,
        "num_validation": len(data.validation_labels),
        "labeled_digest": data.labeled_digest(),
        "num_replicas": num_replicas,
        "flags": {**dataclasses.asdict(config), "ns3l_threshold": config.threshold},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "history": history.records,
    }
    if writes:
        io_utils.write_json(os.path.join(run_dir, "results.json"), results)
    return results


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    try:
        config = config_from_flags()
        # Before any other TensorFlow op: collectives are configured at startup.
        strategy = distribute.make_strategy(config.strategy, config.num_gpus)
        _check_divisible(config, strategy.num_replicas_in_sync)
        data = config.load_data()
    except (ConfigError, distribute.StrategyError, data_lib.DataNotFoundError) as error:
        cli.usage_error(str(error))
    results = run(config, data, strategy=strategy)
    summary = f"test error {results['test_error']:.2f}% after {results['steps']} steps "
    summary += f"({results['seconds']:.0f} s)"
    if results["best_val_error"] is not None:
        summary += (
            f"; at the lowest validation error ({results['best_val_error']:.2f}%, step "
            f"{results['best_val_step']}): test error {results['best_val_test_error']:.2f}%"
        )
    print(f"{summary}; results in {os.path.join(config.run_dir, 'results.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
