"""The training loop: `model.fit`'s contract, from any step, on any strategy.

`fit(model, strategy, dataset, total_steps=..., eval_every=..., start_step=...)` runs the
model's own `train_step` (on TensorFlow through `strategy.run`, averaging the logs over
replicas as `fit` does; on JAX jit-compiled over the whole batch: `ns3l_tf.backend`) from
`start_step` to `total_steps`, in "epochs" of `eval_every` steps: callbacks get the calls
`model.fit` gives them (train, epoch and batch begin/end, `on_test_begin/end` around
validation, so `SwapEMAWeights` works), epoch logs carry `val_*` entries, and a callback may
stop training with `model.stop_training = True`. Unlike `model.fit` it can start in the middle
of an epoch (a resumed run) and it works under `MultiWorkerMirroredStrategy`, where Keras
3.15's `fit` fails (keras-team/keras#20585). The step function is the one `fit` traces, so a
run gives the same numbers either way.

The stream must be a pure function of its seed (`ns3l_tf.data.train_dataset` is): resuming at
step s skips the first s batches and so continues with the batches an uninterrupted run sees.
"""

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf import backend, distribute


def fit(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    dataset: tf.data.Dataset,
    *,
    total_steps: int,
    eval_every: int,
    start_step: int = 0,
    validation_data: tf.data.Dataset | None = None,
    callbacks=(),
    verbose: int = 0,
    reset_metrics_at_start: bool = True,
) -> int:
    """Trains from `start_step` to `total_steps` (or until a callback stops it).

    Args:
      model: a compiled, built model (its optimizer's step is `start_step`).
      strategy: the strategy the model was built under (the default one for a single device).
      dataset: the infinite training stream, from its first batch (`start_step` batches are
        skipped).
      total_steps: the run's last step.
      eval_every: steps per epoch; validation and `on_epoch_end` after each.
      start_step: the step the model's state is at.
      validation_data: finite `(x, y)` stream evaluated after each epoch, or None.
      callbacks: Keras callbacks.
      verbose: Keras progress output (0, 1 a bar, 2 a line per epoch).
      reset_metrics_at_start: False when resuming mid-epoch with the metrics' running sums
        restored from a checkpoint.

    Returns:
      The step training stopped at. Having reached `total_steps`, the weights are their
      exponential moving average if the optimizer keeps one, as after `model.fit`.
    """
    callback_list = keras.callbacks.CallbackList(
        list(callbacks),
        add_history=False,
        add_progbar=verbose > 0,
        model=model,
        epochs=total_steps // eval_every,
        steps=eval_every,
        verbose=verbose,
    )
    train_function = backend.steps().make_train_function(model, dataset.skip(start_step), strategy)
    several_processes = distribute.several_processes(strategy)
    evaluate = distribute.evaluate_locally if several_processes else _evaluate

    model.stop_training = False
    step = start_step
    callback_list.on_train_begin()
    logs = {}
    while step < total_steps and not model.stop_training:
        epoch, first = divmod(step, eval_every)
        if first == 0 or (step == start_step and reset_metrics_at_start):
            for metric in model.metrics:
                metric.reset_state()
        callback_list.on_epoch_begin(epoch)
        for batch in range(first, eval_every):
            callback_list.on_train_batch_begin(batch)
            logs = train_function()
            step += 1
            callback_list.on_train_batch_end(batch, logs)
            if model.stop_training:
                break
        if model.stop_training and step % eval_every:
            break  # stopped mid-epoch: no validation, no epoch end
        epoch_logs = {name: float(np.asarray(value)) for name, value in logs.items()}
        if validation_data is not None:
            callback_list.on_test_begin()
            validation = evaluate(model, validation_data)
            callback_list.on_test_end(validation)
            epoch_logs.update({f"val_{name}": value for name, value in validation.items()})
        callback_list.on_epoch_end(epoch, epoch_logs)
    if step == total_steps:  # as `fit` ends: the weights become their moving average, if any
        model.optimizer.finalize_variable_values(model.trainable_weights)
    callback_list.on_train_end(logs)
    return step


def _evaluate(model, dataset) -> dict:
    return model.evaluate(dataset, verbose=0, return_dict=True)
