"""Callbacks of the training protocol: test-set evaluation, model selection, checkpoints."""

import os

import keras
import numpy as np
from absl import logging

from ns3l_tf import io_utils


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
        swap = [keras.callbacks.SwapEMAWeights()] if self.use_ema else []
        if self.evaluate_fn is None:
            return self.model.evaluate(self.test_data, verbose=0, return_dict=True, callbacks=swap)
        for callback in swap:
            callback.set_model(self.model)
            callback.on_test_begin()
        try:
            return self.evaluate_fn(self.model, self.test_data)
        finally:
            for callback in swap:
                callback.on_test_end()

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


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves `last.weights.h5` after every evaluation and `best.weights.h5` at each new lowest
    `val_error`, each written to a temporary file and renamed, so a crash never leaves a
    half-written checkpoint.

    Args:
      directory: where the two weight files go.
    """

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory
        self.best_val_error = float("inf")

    def _save(self, name: str):
        path = os.path.join(self.directory, name)
        io_utils.atomic_write(path, self.model.save_weights, suffix=".weights.h5")

    def on_epoch_end(self, epoch, logs=None):  # best.weights.h5 only with validation data
        self._save("last.weights.h5")
        val_error = (logs or {}).get("val_error")
        if val_error is not None and val_error < self.best_val_error:
            self.best_val_error = val_error
            self._save("best.weights.h5")
