"""Train one semi-supervised model as a `Config` says, evaluating as it goes, and write the run.

`run(config)` is what `python -m ns3l_tf.train` calls; it writes into `config.run_dir`:
`results.json` (written last, atomically), `split.npz`, `checkpoints/{last,best}.weights.h5`,
`model.keras` and `tensorboard/`.
"""

import os
import sys
import time

import keras
import tensorflow as tf
from absl import logging

from ns3l_tf import data as data_lib
from ns3l_tf import distribute, experiment, io_utils
from ns3l_tf.callbacks import AtomicCheckpoint, EvaluationHistory
from ns3l_tf.config import Config


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
        data = experiment.load_data(config)
    if strategy is None:
        strategy = distribute.make_strategy(config.strategy, config.num_gpus)
    num_replicas = strategy.num_replicas_in_sync
    experiment.check_divisible(config, num_replicas)
    keras.utils.set_random_seed(config.seed)
    start = time.time()
    with strategy.scope():
        model = experiment.build_model(config, data, num_replicas)
    extras = experiment.unlabeled_extras(model, data, config)
    preprocessing_seconds = time.time() - start
    if "nn_candidates" in extras:
        logging.info(
            "%s candidates of %d unlabeled x %d labeled images: %.1f s, %.2f classes per image",
            config.methods["ns3l"].selector,
            len(data.unlabeled_images),
            len(data.labeled_images),
            preprocessing_seconds,
            extras["nn_candidates"].sum(axis=1).mean(),
        )
    datasets = experiment.build_datasets(config, model, data, extras)

    run_dir = config.run_dir
    custom_loop = config.strategy == "multi_worker"  # Model.fit fails there (keras#20585)
    writes = distribute.is_chief(strategy)
    if writes:
        io_utils.write_split(os.path.join(run_dir, "split.npz"), data.split)
    use_ema = config.ema_decay > 0
    history = EvaluationHistory(
        datasets.test,
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
        config.methods["ns3l"].weight,
        num_replicas,
    )
    start = time.time()
    schedule = {
        "steps_per_epoch": config.eval_every,
        "epochs": config.train_steps // config.eval_every,
    }
    if custom_loop:
        distribute.fit_with_custom_loop(
            model,
            strategy,
            datasets.train,
            validation_data=datasets.validation,
            callbacks=callbacks,
            **schedule,
        )
    else:
        model.fit(
            datasets.train,
            validation_data=datasets.validation,
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
        "flags": {**config.flag_values(), "ns3l_threshold": config.threshold},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "history": history.records,
    }
    if writes:
        io_utils.write_json(os.path.join(run_dir, "results.json"), results)
    return results
