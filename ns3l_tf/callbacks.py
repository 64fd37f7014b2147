"""Callbacks of the training protocol: test-set evaluation, model selection, resumable
checkpoints, and stopping on a non-finite loss or a signal."""

import contextlib
import os
import signal
import threading
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorboard.plugins.hparams import api as hparams_api

from ns3l_tf import checkpoints, io_utils


class EvaluationHistory(keras.callbacks.Callback):
    """After each validation, evaluates the test split and records both (Oliver et al. protocol).

    Adds `test_loss`, `test_accuracy` and `test_error` to the epoch logs (so the progress bar
    and TensorBoard show them) and keeps one record per evaluation. The test split is only
    reported, never used for a choice: `best` is the evaluation with the lowest validation
    error, and its test error is the figure to report. Without validation data (e.g. STL-10)
    only the test split is evaluated and `best` is None.

    Args:
      test_data: finite `(x, y)` dataset of the test split.
      steps_per_epoch: training steps between evaluations (to record the step).
      use_ema: evaluate the test split with the optimizer's moving average of the weights
        (pair with `keras.callbacks.SwapEMAWeights()` in `fit` for validation).
      evaluate_fn: `(model, dataset) → {"loss", "accuracy", "error"}` replacing
        `model.evaluate` (e.g. `distribute.evaluate_locally` in a multi-worker loop).
    """

    def __init__(self, test_data, steps_per_epoch: int, use_ema: bool = False, evaluate_fn=None):
        super().__init__()
        self.test_data = test_data
        self.steps_per_epoch = steps_per_epoch
        self.use_ema = use_ema
        self.evaluate_fn = evaluate_fn
        self.records: list[dict] = []

    def _evaluate_test_split(self) -> dict:
        if self.evaluate_fn is None:
            swap = [keras.callbacks.SwapEMAWeights()] if self.use_ema else []
            return self.model.evaluate(self.test_data, verbose=0, return_dict=True, callbacks=swap)
        with ema_weights(self.model, self.use_ema):
            return self.evaluate_fn(self.model, self.test_data)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        test = self._evaluate_test_split()
        for name, value in test.items():
            logs[f"test_{name}"] = value
        record = {"step": (epoch + 1) * self.steps_per_epoch}
        record.update({name: float(value) for name, value in logs.items()})
        self.records.append(record)
        logging.info(
            "step %d: val_error %s, test_error %.2f%%",
            record["step"],
            f"{record['val_error']:.2f}%" if "val_error" in record else "-",
            record["test_error"],
        )

    def median_test_error(self, last: int = 20) -> float:
        """Median test error of the last `last` evaluations (the MixMatch protocol)."""
        return float(np.median([r["test_error"] for r in self.records[-last:]]))

    @property
    def best(self) -> dict | None:
        """The record with the lowest validation error (the earliest on ties), or None."""
        validated = [r for r in self.records if "val_error" in r]
        return min(validated, key=lambda r: r["val_error"]) if validated else None


@contextlib.contextmanager
def ema_weights(model: keras.Model, use_ema: bool):
    """Inside: the model holds its optimizer's weight moving average (as during evaluation
    with `keras.callbacks.SwapEMAWeights`); after: its own weights again. Nothing without
    `use_ema`."""
    if not use_ema:
        yield
        return
    swap = keras.callbacks.SwapEMAWeights()
    swap.set_model(model)
    swap.on_test_begin()
    try:
        yield
    finally:
        swap.on_test_end()


class BestWeights(keras.callbacks.Callback):
    """Saves `best.weights.h5` at each new lowest `val_error`, atomically: the weights that
    were validated (with `use_ema`, the optimizer's moving average, which
    `SwapEMAWeights` evaluated and has swapped out again by the end of the epoch).

    Args:
      directory: where the weight file goes.
      best_val_error: the lowest validation error so far (a resumed run's).
      use_ema: save the weight EMA rather than the raw weights.
    """

    def __init__(self, directory: str, best_val_error: float = float("inf"), use_ema=False):
        super().__init__()
        self.directory = directory
        self.best_val_error = best_val_error
        self.use_ema = use_ema

    def on_epoch_end(self, epoch, logs=None):  # only with validation data
        val_error = (logs or {}).get("val_error")
        if val_error is None or not np.isfinite(val_error) or val_error >= self.best_val_error:
            return  # a non-finite error is divergence, never the best weights
        self.best_val_error = val_error
        path = os.path.join(self.directory, "best.weights.h5")
        with ema_weights(self.model, self.use_ema):
            io_utils.atomic_write(path, self.model.save_weights, suffix=".weights.h5")


class TerminateOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops training at the first step whose loss is NaN or infinite (as
    `keras.callbacks.TerminateOnNaN`), or at the first evaluation with a non-finite metric
    (e.g. NaN in BatchNorm's moving statistics while the training loss stays finite),
    remembering the step and what was not finite.

    Place it after `EvaluationHistory` (whose test metrics it then checks too) and before
    the callbacks that save (`BestWeights`, `StateCheckpoint`), which skip a diverged step.

    Args:
      steps_per_epoch: to turn `(epoch, batch)` into the training step.
    """

    def __init__(self, steps_per_epoch: int):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.epoch = 0
        self.step = None  # the step whose loss or evaluation was not finite
        self.what = None  # "the loss", or the names of the non-finite metrics

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.step = self.epoch * self.steps_per_epoch + batch + 1
            self.what = "the loss"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        broken = sorted(
            name
            for name, value in (logs or {}).items()
            if name.startswith(("val_", "test_")) and not np.isfinite(float(value))
        )
        if broken and self.step is None:
            self.step = (epoch + 1) * self.steps_per_epoch
            self.what = f"the evaluation ({', '.join(broken)})"
            self.model.stop_training = True


class StopOnSignal(keras.callbacks.Callback):
    """Turns SIGINT and SIGTERM into a stop after the current step, remembering the signal.

    The handlers are installed for the duration of training (main thread only) and the
    previous ones restored after.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        super().__init__()
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        del frame
        self.received = signum

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def on_train_batch_end(self, batch, logs=None):
        if self.received is not None:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}


class StateCheckpoint(keras.callbacks.Callback):
    """Saves the resumable state (`ns3l_tf.checkpoints`) every `every` steps, after the
    evaluation when a checkpoint falls on one, and where a signal stopped training; never
    after a non-finite loss.

    Args:
      directory: the checkpoint directory.
      every: steps between checkpoints (divides `steps_per_epoch`).
      steps_per_epoch: steps between evaluations.
      bookkeeping: `() → dict` of what else a resumed run needs (history, best error).
      divergence: the run's `TerminateOnNonFiniteLoss`.
      signals: the run's `StopOnSignal`.
      mid_epoch_metrics: save the metrics' running sums in mid-epoch checkpoints (one
        replica; a multi-replica run restarts the interval's training averages on resume).
      keep_previous: keep the checkpoint before the last too (`checkpoints.save`).
    """

    def __init__(
        self,
        directory: str,
        every: int,
        steps_per_epoch: int,
        bookkeeping,
        divergence: TerminateOnNonFiniteLoss,
        signals: StopOnSignal,
        mid_epoch_metrics: bool = True,
        keep_previous: bool = False,
    ):
        super().__init__()
        self.directory = directory
        self.keep_previous = keep_previous
        self.every = every
        self.steps_per_epoch = steps_per_epoch
        self.bookkeeping = bookkeeping
        self.divergence = divergence
        self.signals = signals
        self.mid_epoch_metrics = mid_epoch_metrics
        self.epoch = 0
        self.step = None
        self.saved_step = None  # the step of the last checkpoint written

    def _save(self, step: int):
        if self.divergence.step is not None or step == self.saved_step:
            return
        mid_epoch = step % self.steps_per_epoch != 0
        checkpoints.save(
            self.directory,
            self.model,
            step,
            self.bookkeeping(),
            include_metrics=mid_epoch and self.mid_epoch_metrics,
            keep_previous=self.keep_previous,
        )
        self.saved_step = step

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.step = self.epoch * self.steps_per_epoch + batch + 1
        if self.step % self.every == 0 and self.step % self.steps_per_epoch:
            self._save(self.step)

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        if step % self.every == 0:
            self._save(step)

    def on_train_end(self, logs=None):
        if self.signals.received is not None and self.step is not None:
            self._save(self.step)


def forget_events_after(log_dir: str, step: int) -> list[str]:
    """Rewrites each TensorBoard event file under `log_dir` (and its subdirectories) without
    its events of steps after `step`, atomically; returns the rewritten files' paths.

    A run killed after logging step m but resumed from its checkpoint at step `step` < m
    logs steps `step` + 1 … m again; without this TensorBoard would draw both, one curve
    doubling back on itself. Call it only while no writer is live there (the run directory's
    lock held)."""
    rewritten = []
    for root, _, files in os.walk(log_dir):
        for name in sorted(files):
            if "tfevents" not in name:
                continue
            path = os.path.join(root, name)
            events = list(tf.compat.v1.train.summary_iterator(path))
            if all(event.step <= step for event in events):
                continue

            def write(tmp_path, events=events):
                with tf.io.TFRecordWriter(tmp_path) as writer:
                    for event in events:
                        if event.step <= step:
                            writer.write(event.SerializeToString())

            io_utils.atomic_write(path, write)
            rewritten.append(path)
    return rewritten


class TensorBoardAtSteps(keras.callbacks.Callback):
    """TensorBoard logs at the real training step: after each evaluation, the interval's
    training averages under `train/`, the validation metrics under `validation/` and the test
    metrics under `test/` (each `error`, `loss`, `accuracy`, … at step (epoch + 1) ×
    `steps_per_epoch`, so a resumed run continues its curves), and the run's flags as
    hyperparameters (the HParams dashboard, comparing runs of one log root).

    A resumed run first forgets what the interrupted one logged after the checkpoint it
    resumes from (`forget_events_after`), so each step has one point however often the run
    was interrupted. Each evaluation's points are flushed at once, before the checkpoint of
    that step is written.

    Args:
      log_dir: the run's TensorBoard directory.
      steps_per_epoch: training steps between evaluations.
      hparams: `{flag: value}` to log once (at the run's start), or None.
      resumed_at_step: the checkpoint's step a resumed run starts from; None for a new run.
    """

    def __init__(
        self,
        log_dir: str,
        steps_per_epoch: int,
        hparams: dict | None = None,
        resumed_at_step: int | None = None,
    ):
        super().__init__()
        self.log_dir = log_dir
        self.steps_per_epoch = steps_per_epoch
        self.hparams = hparams
        self.resumed_at_step = resumed_at_step
        self._writers = {}

    def _writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(os.path.join(self.log_dir, name))
        return self._writers[name]

    def on_train_begin(self, logs=None):
        if self.resumed_at_step is not None:
            forget_events_after(self.log_dir, self.resumed_at_step)
        elif self.hparams:
            values = {
                name: value if isinstance(value, (bool, int, float, str)) else str(value)
                for name, value in self.hparams.items()
                if value is not None
            }
            with self._writer("").as_default():
                hparams_api.hparams(values)
            self._writer("").flush()

    def on_epoch_end(self, epoch, logs=None):
        step = (epoch + 1) * self.steps_per_epoch
        groups = {"train": {}, "validation": {}, "test": {}}
        for name, value in (logs or {}).items():
            prefix, _, rest = name.partition("_")
            group = {"val": "validation", "test": "test"}.get(prefix)
            groups[group or "train"][rest if group else name] = value
        for group, values in groups.items():
            if values:
                with self._writer(group).as_default(step=step):
                    for name, value in values.items():
                        tf.summary.scalar(name, float(value))
                self._writer(group).flush()

    def on_train_end(self, logs=None):
        for writer in self._writers.values():
            writer.close()
        self._writers = {}


class Heartbeat(keras.callbacks.Callback):
    """Logs one line every `interval_seconds` of training between evaluations, for logs that
    are not a terminal (where Keras prints one line per evaluation and nothing in between):
    `step 1200 of 12000 (10%), 3.1 steps/s, loss 0.8123`.

    Args:
      total_steps: the run's training steps.
      interval_seconds: the wall time between lines.
      clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, total_steps: int, interval_seconds: float = 60.0, clock=time.monotonic):
        super().__init__()
        self.total_steps = total_steps
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._last = None
        self._last_step = None

    def on_train_begin(self, logs=None):
        # Read once, through NumPy: under a strategy the counter is a MirroredVariable,
        # which `int()` refuses; the steps are then counted here.
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self._last, self._last_step = self.clock(), self._step

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        now = self.clock()
        if now - self._last < self.interval_seconds:
            return
        step = self._step
        rate = (step - self._last_step) / max(now - self._last, 1e-9)
        loss = (logs or {}).get("loss")
        logging.info(
            "step %d of %d (%d%%), %.2f steps/s%s",
            step,
            self.total_steps,
            100 * step // self.total_steps,
            rate,
            "" if loss is None else f", loss {float(loss):.4f}",
        )
        self._last, self._last_step = now, step
