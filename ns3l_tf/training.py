"""Train one semi-supervised model as a `Config` says, evaluating as it goes, and write the run.

`run(config)` is what `python -m ns3l_tf.train` calls. It writes into `config.run_dir`:
`config.json` (the flags that define the run), `split.npz`, `checkpoints/` (the resumable
state `state.json` + `state-<step>.npz`, and `best.weights.h5`), `tensorboard/`, and at the
end `model.keras`, the test split's evaluation report of the last and best weights
(`evaluation.json`, `test_{last,best}_confusion_matrix.png` and `..._reliability_diagram.png`)
and `results.json` (written last, atomically: a run is finished when it exists). Calling it
again with the same config resumes from the last checkpoint, or returns the finished run's
results without training.
"""

import math
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ns3l_tf import checkpoints, distribute, experiment, inference, io_utils, loop
from ns3l_tf import data as data_lib
from ns3l_tf import methods as methods_lib
from ns3l_tf.callbacks import (
    BestWeights,
    EvaluationHistory,
    Heartbeat,
    StateCheckpoint,
    StopOnSignal,
    TensorBoardAtSteps,
    TerminateOnNonFiniteLoss,
)
from ns3l_tf.config import Config, ConfigError, default_flag_values
from ns3l_tf.run_dir import RunDirectory


def _write_evaluations(run_dir: str, model, data, step: int, several_processes: bool) -> None:
    """The evaluation report on the test split (`evaluation.json` and its pictures, see
    `inference.write_evaluation`) of the last weights and, where validation chose some, of the
    best; the last weights' per-class accuracies and ECE also go to TensorBoard at `step`.
    Leaves the model with the best weights. With several processes each predicts on its own
    (`distribute.predict_locally`): a multi-worker chief alone, the other workers having
    finished; every process of a JAX cluster alike."""
    predict = distribute.predict_locally if several_processes else inference.predict_probabilities
    last = predict(model, data.test_images)
    report = inference.write_evaluation(run_dir, "test", "last", last, data.test_labels)
    with tf.summary.create_file_writer(os.path.join(run_dir, "tensorboard", "test")).as_default():
        for k, accuracy in enumerate(report["per_class_accuracy"]):
            if accuracy is not None:
                tf.summary.scalar(f"class_{k}_accuracy", accuracy, step=step)
        tf.summary.scalar("ece", report["ece"], step=step)
        tf.summary.scalar("balanced_accuracy", report["balanced_accuracy"], step=step)
    best = os.path.join(run_dir, inference.BEST_WEIGHTS_FILE)
    if os.path.isfile(best):
        last_weights = [keras.ops.convert_to_numpy(v) for v in model.weights]
        model.load_weights(best)
        same = all(
            np.array_equal(keras.ops.convert_to_numpy(v), w)
            for v, w in zip(model.weights, last_weights, strict=True)
        )  # the best evaluation was the last: its probabilities are the last ones
        probabilities = last if same else predict(model, data.test_images)
        inference.write_evaluation(run_dir, "test", "best", probabilities, data.test_labels)


def _named_settings(config: Config) -> str:
    """The settings of the methods the algorithm names, resolved: `ns3l_threshold=0.04, ...`."""
    spec = config.algorithm_spec
    named = {n: config.resolved_methods[n] for n in (spec.base, *spec.terms)}
    flat = methods_lib.flat_settings(named)
    return ", ".join(f"{k}={v}" for k, v in flat.items()) or "no settings"


def _versions() -> dict[str, str]:
    """The versions of what computed the run: TensorFlow, Keras and, on JAX, JAX."""
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if keras.backend.backend() == "jax":
        import jax

        versions["jax"] = jax.__version__
    return versions


class DivergenceError(RuntimeError):
    """The loss, or a validation or test metric, became NaN or infinite; no results are
    written.

    Attributes:
      step: the step whose loss or evaluation was not finite.
      checkpoint_step: the step of the last (finite) checkpoint kept, or None.
    """

    def __init__(self, step: int, checkpoint_step: int | None, what: str = "the loss"):
        kept = f"step {checkpoint_step}" if checkpoint_step else "none yet"
        super().__init__(
            f"training diverged: {what} is not finite at step {step}; no results are written "
            f"and the last finite checkpoint ({kept}) and best weights are kept (try a lower "
            "--learning_rate)"
        )
        self.step = step
        self.checkpoint_step = checkpoint_step


class TrainingInterruptedError(Exception):
    """A signal stopped training after a step, and a checkpoint of that step was written.

    Attributes:
      step: the last step trained.
      signal: the signal number.
    """

    def __init__(self, step: int, signal: int):
        super().__init__(f"interrupted at step {step}; run the same command to resume")
        self.step = step
        self.signal = signal


def run(
    config: Config,
    data: data_lib.SSLData | None = None,
    verbose="auto",
    strategy: tf.distribute.Strategy | None = None,
    run_dir: RunDirectory | None = None,
    overwrite: bool = False,
) -> dict:
    """Trains as `config` says, evaluating every `eval_every` steps, and writes the outputs.

    Resumes from the last checkpoint in `config.run_dir`, with everything that determines the
    rest of the run (see `ns3l_tf.checkpoints`; the input stream skips the batches already
    trained on), and returns a finished run's results without training. Under a
    multi-worker strategy only the chief writes; every worker reads the chief's checkpoint
    (the run directory must be on storage they share), trains the same model and returns the
    same results.

    Args:
      config: the validated run configuration.
      data: a preloaded split (e.g. a subset in tests); default loads `config.dataset`.
      strategy: default `distribute.make_strategy(config.strategy, config.num_gpus)`.
      verbose: Keras progress output: "auto" (a bar on a terminal, one line per evaluation
        otherwise), 0, 1 or 2; with 2 a heartbeat line is logged every minute between
        evaluations (`callbacks.Heartbeat`).
      run_dir: the run's directory, opened (locked) by the caller; default opens it here.
      overwrite: start again in a directory that holds another (or the same) run.

    Returns:
      The dictionary written to `results.json`. Errors are percentages; `test_error` is at
      the last evaluation, `best_val_test_error` at the evaluation with the lowest
      validation error (None without validation data).

    Raises:
      RunDirError: the directory holds a run with other flags, or another live run.
      DivergenceError: the loss or an evaluation became non-finite (no results written).
      TrainingInterruptedError: SIGINT or SIGTERM stopped training (a checkpoint was written).
    """
    if strategy is None:
        strategy = distribute.make_strategy(config.strategy, config.num_gpus)
    writes = distribute.is_chief(strategy)
    opened_here = run_dir is None and writes
    if opened_here:
        run_dir = RunDirectory(config.run_dir).open(
            config.run_defining_values(), overwrite, defaults=default_flag_values()
        )
    try:
        finished = run_dir.finished() if run_dir else None
        if finished is not None:
            logging.info("%s: finished already", config.run_dir)
            return finished
        return _train(config, data, verbose, strategy, writes)
    finally:
        if opened_here:
            run_dir.close()


def _train(config, data, verbose, strategy, writes) -> dict:
    if config.backend != keras.backend.backend():
        raise ConfigError(
            f"--backend={config.backend}: Keras runs on {keras.backend.backend()} in this "
            "process; set KERAS_BACKEND before importing Keras"
        )
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    if data is None:
        data = experiment.load_data(config)
    num_replicas = distribute.num_replicas(strategy)
    experiment.check_divisible(config, num_replicas)
    keras.utils.set_random_seed(config.seed)
    start = time.time()
    with strategy.scope():
        model = experiment.build_model(config, data)
    extras = experiment.unlabeled_extras(model, data, config)
    preprocessing_seconds = time.time() - start
    if "nn_candidates" in extras:
        logging.info(
            "nearest-neighbour candidates of %d unlabeled x %d labeled images: %.1f s, "
            "%.2f classes per image",
            len(data.unlabeled_images),
            len(data.labeled_images),
            preprocessing_seconds,
            extras["nn_candidates"].sum(axis=1).mean(),
        )
    datasets = experiment.build_datasets(config, model, data, extras)

    run_dir = config.run_dir
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    use_ema = config.ema_decay > 0
    several_processes = distribute.several_processes(strategy)
    # Every process of a JAX cluster writes its own run (`cli.process_run_dir`) and resumes it.
    jax_cluster = several_processes and keras.backend.backend() == "jax"
    history = EvaluationHistory(
        datasets.test,
        steps_per_epoch=config.eval_every,
        use_ema=use_ema,
        evaluate_fn=distribute.evaluate_locally if several_processes else None,
    )
    best = BestWeights(checkpoint_dir, use_ema=use_ema)
    state = checkpoints.latest(checkpoint_dir)
    if jax_cluster:
        state = distribute.common_checkpoint(state)
    start_step, seconds_before, resumed_at = 0, 0.0, []
    if state is not None:
        checkpoints.restore(checkpoint_dir, model, state)
        start_step = state["step"]
        history.records = state["history"]
        if state["best_val_error"] is not None:
            best.best_val_error = state["best_val_error"]
        seconds_before = state["seconds"]
        resumed_at = [*state["resumed_at_steps"], start_step]
        logging.info("%s: resuming at step %d", run_dir, start_step)
    elif writes:
        io_utils.write_split(os.path.join(run_dir, "split.npz"), data.split)

    divergence = TerminateOnNonFiniteLoss(config.eval_every)
    signals = StopOnSignal()
    start = time.time()

    def bookkeeping() -> dict:
        return {
            "history": history.records,
            "best_val_error": None if math.isinf(best.best_val_error) else best.best_val_error,
            "seconds": round(seconds_before + time.time() - start, 2),
            "resumed_at_steps": resumed_at,
        }

    callbacks = [*([keras.callbacks.SwapEMAWeights()] if use_ema else []), history]
    callbacks += [divergence, signals]
    if writes:
        callbacks += [
            best,
            TensorBoardAtSteps(
                os.path.join(run_dir, "tensorboard"),
                config.eval_every,
                hparams=config.resolved_flag_values(),
                resumed_at_step=start_step if state is not None else None,
            ),
            StateCheckpoint(
                checkpoint_dir,
                config.checkpoint_interval,
                config.eval_every,
                bookkeeping,
                divergence,
                signals,
                mid_epoch_metrics=num_replicas == 1,
                keep_previous=jax_cluster,
            ),
        ]
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    if verbose == 2:  # a log, not a terminal: Keras prints only at evaluations
        callbacks.append(Heartbeat(config.train_steps))
    logging.info(
        "%s: %d labeled (digest %s), %d unlabeled, %d validation, %d test images; "
        "%s (%s); %d replica(s)",
        config.dataset,
        len(data.labeled_labels),
        data.labeled_digest()[:16],
        data.num_unlabeled,
        len(data.validation_labels),
        len(data.test_labels),
        config.algorithm if model.uses_unlabeled_data else "supervised",
        _named_settings(config),
        num_replicas,
    )
    step = loop.fit(
        model,
        strategy,
        datasets.train,
        total_steps=config.train_steps,
        eval_every=config.eval_every,
        start_step=start_step,
        validation_data=datasets.validation,
        callbacks=callbacks,
        verbose=verbose,
        reset_metrics_at_start=state is None or not state["include_metrics"],
    )
    if divergence.step is not None:
        saved = checkpoints.latest(checkpoint_dir)
        raise DivergenceError(divergence.step, saved["step"] if saved else None, divergence.what)
    if signals.received is not None:
        raise TrainingInterruptedError(step, signals.received)
    if writes:
        io_utils.atomic_write(os.path.join(run_dir, "model.keras"), model.save, suffix=".keras")
        _write_evaluations(run_dir, model, data, step, several_processes)

    last, best_record = history.records[-1], history.best or {}
    results = {
        "test_error": last["test_error"],
        "final_val_error": last.get("val_error"),
        "best_val_test_error": best_record.get("test_error"),
        "best_val_error": best_record.get("val_error"),
        "best_val_step": best_record.get("step"),
        "median_last20_test_error": history.median_test_error(last=20),
        "steps": step,
        **{k: v for k, v in bookkeeping().items() if k in ("seconds", "resumed_at_steps")},
        "preprocessing_seconds": round(preprocessing_seconds, 2),
        "num_labeled": len(data.labeled_labels),
        "num_unlabeled": data.num_unlabeled,
        "num_validation": len(data.validation_labels),
        "labeled_digest": data.labeled_digest(),
        "data": data.source,
        "num_replicas": num_replicas,
        "flags": config.resolved_flag_values(),
        "backend": keras.backend.backend(),
        "versions": _versions(),
        "history": history.records,
    }
    if writes:
        io_utils.write_json(os.path.join(run_dir, "results.json"), results)
    return results
