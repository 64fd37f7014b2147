"""The training loop: `model.fit`'s numbers and callback calls, from any step."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import SSLModel, checkpoints, loop, models
from ns3l_tf import data as data_lib
from ns3l_tf.models import preprocessing


def _model(small_data, ema=False):
    keras.utils.set_random_seed(0)
    model = SSLModel(
        models.small_cnn(),
        10,
        algorithm="ns3l",
        seed=0,
        preprocessing=preprocessing.standardize(small_data.mean, small_data.std),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=ema, ema_momentum=0.9))
    model.build_for_training()
    return model


def _streams(small_data):
    """Fresh streams: each new iterator of a stream reshuffles, so every run gets its own."""
    train = data_lib.train_dataset(small_data, 16, 16, seed=3)
    val = data_lib.eval_dataset(small_data.validation_images, small_data.validation_labels, 250)
    return train, val


class _Calls(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch))

    def on_test_begin(self, logs=None):
        self.calls.append(("test_begin",))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))


def _assert_same_weights(a, b):
    for x, y in zip(a.variables, b.variables, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ema", [False, True])
def test_loop_trains_like_fit_and_makes_the_same_calls(small_data, ema):
    by_fit, by_loop = _model(small_data, ema), _model(small_data, ema)
    fit_calls, loop_calls = _Calls(), _Calls()
    ema_swap = [keras.callbacks.SwapEMAWeights()] if ema else []
    train, val = _streams(small_data)
    history = by_fit.fit(
        train,
        steps_per_epoch=3,
        epochs=2,
        validation_data=val,
        callbacks=[*ema_swap, fit_calls],
        verbose=0,
        shuffle=False,
    ).history
    ema_swap = [keras.callbacks.SwapEMAWeights()] if ema else []
    train, val = _streams(small_data)
    step = loop.fit(
        by_loop,
        tf.distribute.get_strategy(),
        train,
        total_steps=6,
        eval_every=3,
        validation_data=val,
        callbacks=[*ema_swap, loop_calls],
    )
    assert step == 6 and int(by_loop.optimizer.iterations) == 6
    _assert_same_weights(by_fit, by_loop)  # with EMA: both end on the averaged weights
    assert loop_calls.calls == fit_calls.calls
    assert loop_calls.calls[-1][2] == sorted(history)


@pytest.mark.large
def test_a_run_stopped_mid_epoch_resumes_from_its_checkpoint_to_the_same_weights(
    small_data, tmp_path
):
    uninterrupted = _model(small_data)
    train = _streams(small_data)[0]
    loop.fit(uninterrupted, tf.distribute.get_strategy(), train, total_steps=6, eval_every=3)

    class StopAtFour(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 4:
                self.model.stop_training = True

    first = _model(small_data)
    train = _streams(small_data)[0]
    stopped = loop.fit(
        first, tf.distribute.get_strategy(), train, total_steps=6, eval_every=3,
        callbacks=[StopAtFour()],
    )  # fmt: skip
    assert stopped == 4
    checkpoints.save(str(tmp_path), first, 4, {"history": []}, include_metrics=True)
    resumed = _model(small_data)
    state = checkpoints.latest(str(tmp_path))
    assert state["step"] == 4 and state["include_metrics"]
    checkpoints.restore(str(tmp_path), resumed, state)
    logs = []
    train = _streams(small_data)[0]
    loop.fit(
        resumed,
        tf.distribute.get_strategy(),
        train,
        total_steps=6,
        eval_every=3,
        start_step=4,
        reset_metrics_at_start=False,
        callbacks=[
            keras.callbacks.LambdaCallback(
                on_epoch_end=lambda epoch, epoch_logs: logs.append(epoch_logs)
            )
        ],
    )
    _assert_same_weights(uninterrupted, resumed)
    # The second epoch's training averages cover steps 4-6, as in the uninterrupted run.
    reference = []
    again = _model(small_data)
    train = _streams(small_data)[0]
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda _, logs: reference.append(logs))
    loop.fit(
        again, tf.distribute.get_strategy(), train, total_steps=6, eval_every=3,
        callbacks=[record],
    )  # fmt: skip
    assert logs[0]["loss"] == pytest.approx(reference[1]["loss"], rel=1e-5)


def test_restore_refuses_a_checkpoint_of_another_model(small_data, tmp_path):
    checkpoints.save(str(tmp_path), _model(small_data), 0, {}, include_metrics=False)
    other = SSLModel(models.small_cnn(), 10, algorithm="vat", seed=0)
    other.compile(optimizer="adam")
    other(np.zeros((1, 28, 28, 1), "float32"))
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(ValueError, match="written by a model with other variables"):
        checkpoints.restore(str(tmp_path), other, checkpoints.latest(str(tmp_path)))


def test_a_kept_previous_checkpoint_can_be_restored_by_its_step(small_data, tmp_path):
    model = _model(small_data)
    kernel = model.trainable_variables[0]
    at_step = {}
    for step in (1, 2, 3):
        kernel.assign(np.full(kernel.shape, float(step), "float32"))
        checkpoints.save(
            str(tmp_path), model, step, {"history": [step]}, include_metrics=False,
            keep_previous=True,
        )  # fmt: skip
        at_step[step] = float(np.asarray(kernel).flat[0])
    # The last two checkpoints stay; the first one is gone.
    assert sorted(os.listdir(tmp_path)) == [
        "state-000000002.npz", "state-000000003.npz", "state.json",
    ]  # fmt: skip
    state = checkpoints.latest(str(tmp_path))
    assert state["step"] == 3 and state["previous"]["step"] == 2
    assert "previous" not in state["previous"]  # one step back, not a chain
    assert checkpoints.of_step(state, 1) is None and checkpoints.of_step(None, 2) is None
    previous = checkpoints.of_step(state, 2)
    assert previous["history"] == [2]
    checkpoints.restore(str(tmp_path), model, previous)
    assert float(np.asarray(kernel).flat[0]) == at_step[2] == 2.0
    # Without keep_previous, one checkpoint: the previous ones are deleted.
    checkpoints.save(str(tmp_path), model, 4, {}, include_metrics=False)
    assert sorted(os.listdir(tmp_path)) == ["state-000000004.npz", "state.json"]
    assert "previous" not in checkpoints.latest(str(tmp_path))
