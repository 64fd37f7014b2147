"""Evaluation protocol: EMA evaluation, best-validation selection, median of the last 20,
and the optimizer's weight decay on kernels only."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import SSLModel, callbacks, experiment, models, training
from ns3l_tf import data as data_lib
from ns3l_tf.callbacks import EvaluationHistory
from ns3l_tf.config import Config
from ns3l_tf.models import preprocessing

from .conftest import tensorboard_points


class _RawTestError(keras.callbacks.Callback):
    """Records the test error of the raw (non-EMA) weights at each epoch end."""

    def __init__(self, test_data):
        super().__init__()
        self.test_data, self.errors = test_data, []

    def on_epoch_end(self, epoch, logs=None):
        self.errors.append(
            float(self.model.evaluate(self.test_data, verbose=0, return_dict=True)["error"])
        )


@pytest.mark.large
def test_test_split_is_evaluated_with_the_ema_weights(small_data):
    keras.utils.set_random_seed(0)
    standardize = preprocessing.standardize(small_data.mean, small_data.std)
    model = SSLModel(models.small_cnn(), 10, algorithm="supervised", preprocessing=standardize)
    model.compile(optimizer=keras.optimizers.Adam(3e-3, use_ema=True, ema_momentum=0.9))
    model(np.zeros((1, 28, 28, 1), "float32"))
    train_ds = data_lib.train_dataset(small_data, 32, 0, seed=0)
    test = data_lib.eval_dataset(small_data.test_images, small_data.test_labels)
    history = EvaluationHistory(test, steps_per_epoch=15, use_ema=True)
    raw = _RawTestError(test)
    model.fit(
        train_ds, steps_per_epoch=15, epochs=2, verbose=0, callbacks=[history, raw], shuffle=False
    )
    ema_error = float(model.evaluate(test, verbose=0, return_dict=True)["error"])  # fit ends on EMA
    assert history.records[-1]["test_error"] == pytest.approx(ema_error, abs=1e-4)
    assert raw.errors[-1] != pytest.approx(ema_error, abs=1e-4)


def test_best_and_median_of_records():
    history = EvaluationHistory(test_data=None, steps_per_epoch=10)
    errors = [(30.0, 31.0), (20.0, 22.0), (20.0, 25.0), (25.0, 21.0)]
    history.records = [
        {"step": 10 * (i + 1), "val_error": v, "test_error": t} for i, (v, t) in enumerate(errors)
    ]
    assert history.best["step"] == 20 and history.best["test_error"] == 22.0  # earliest tie
    assert history.median_test_error(last=3) == 22.0
    assert history.median_test_error(last=20) == pytest.approx((22.0 + 25.0) / 2)


def test_weight_decay_shrinks_kernels_only():
    config = Config(learning_rate=0.1, weight_decay=0.5, ema_decay=0.999)
    optimizer = experiment.build_optimizer(config)
    kernel = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    gamma = keras.Variable(np.ones((2,), "float32"), name="gamma")
    bias = keras.Variable(np.ones((2,), "float32"), name="bias")
    optimizer.apply([tf.zeros((2, 2)), tf.zeros((2,)), tf.zeros((2,))], [kernel, gamma, bias])
    np.testing.assert_allclose(kernel.numpy(), 1 - 0.1 * 0.5)  # w <- w (1 - lr wd)
    np.testing.assert_array_equal(gamma.numpy(), 1.0)
    np.testing.assert_array_equal(bias.numpy(), 1.0)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.999


def _tiny_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.stop_training = False
    return model


@pytest.mark.parametrize("metric", ["val_error", "val_loss", "test_error"])
def test_a_non_finite_evaluation_is_divergence_and_never_the_best_weights(metric, tmp_path):
    model = _tiny_model()
    divergence = callbacks.TerminateOnNonFiniteLoss(steps_per_epoch=50)
    best = callbacks.BestWeights(str(tmp_path))
    for callback in (divergence, best):
        callback.set_model(model)
    logs = {"loss": 0.5, "val_error": 20.0, "val_loss": 0.7, "test_error": 21.0}
    divergence.on_epoch_end(0, logs)
    best.on_epoch_end(0, logs)
    assert divergence.step is None and not model.stop_training
    assert (tmp_path / "best.weights.h5").exists() and best.best_val_error == 20.0
    (tmp_path / "best.weights.h5").unlink()

    logs = {**logs, "val_error": 10.0, metric: float("nan")}
    divergence.on_epoch_end(2, logs)
    best.on_epoch_end(2, logs)
    assert (divergence.step, divergence.what) == (150, f"the evaluation ({metric})")
    assert model.stop_training
    if metric == "val_error":  # NaN is not a new lowest error: the best weights stay
        assert not (tmp_path / "best.weights.h5").exists() and best.best_val_error == 20.0


def test_the_divergence_error_names_what_was_not_finite():
    error = training.DivergenceError(150, 100, "the evaluation (val_error)")
    assert str(error) == (
        "training diverged: the evaluation (val_error) is not finite at step 150; no results "
        "are written and the last finite checkpoint (step 100) and best weights are kept (try a "
        "lower --learning_rate)"
    )


def test_heartbeat_logs_a_line_per_interval_between_evaluations(monkeypatch):
    lines = []
    monkeypatch.setattr(callbacks.logging, "info", lambda fmt, *args: lines.append(fmt % args))

    times = iter([0.0, *range(10, 131, 10)])  # train begin, then one per batch
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])  # its counter refuses int()
    with strategy.scope():
        optimizer = keras.optimizers.SGD()
        optimizer.build([keras.Variable(1.0)])
    optimizer.iterations.assign(100)  # a resumed run

    class Model:
        pass

    Model.optimizer = optimizer
    heartbeat = callbacks.Heartbeat(1000, interval_seconds=60.0, clock=lambda: next(times))
    heartbeat.set_model(Model)
    heartbeat.on_train_begin()
    for batch in range(13):
        heartbeat.on_train_batch_end(batch, {"loss": 0.5})
    # A batch every 10 s: lines at 60 s (step 106) and 120 s (step 112), none between.
    assert lines == [
        "step 106 of 1000 (10%), 0.10 steps/s, loss 0.5000",
        "step 112 of 1000 (11%), 0.10 steps/s, loss 0.5000",
    ]


def test_a_resumed_run_forgets_what_was_logged_after_its_checkpoint(tmp_path):
    logs = {"loss": 1.0, "val_error": 20.0, "test_error": 21.0}
    first = callbacks.TensorBoardAtSteps(str(tmp_path), steps_per_epoch=10, hparams={"seed": 1})
    first.on_train_begin()
    for epoch in range(3):  # steps 10, 20, 30; then killed, its checkpoint at step 10
        first.on_epoch_end(epoch, logs)
    # Flushed at each evaluation: nothing of a killed run's curve is only in memory.
    assert [step for _, tag, step in tensorboard_points(tmp_path) if tag == "loss"] == [
        10, 20, 30
    ]  # fmt: skip

    resumed = callbacks.TensorBoardAtSteps(
        str(tmp_path), steps_per_epoch=10, hparams={"seed": 1}, resumed_at_step=10
    )
    resumed.on_train_begin()
    for epoch in range(1, 4):  # steps 20, 30, 40
        resumed.on_epoch_end(epoch, logs)
    resumed.on_train_end()
    first.on_train_end()

    want = [
        (group, tag, step)
        for group, tag in [("test", "error"), ("train", "loss"), ("validation", "error")]
        for step in (10, 20, 30, 40)
    ]
    assert tensorboard_points(tmp_path) == sorted(want)
    hparams = [
        event.step
        for path in tmp_path.glob("*tfevents*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        if any(v.metadata.plugin_data.plugin_name == "hparams" for v in event.summary.value)
    ]
    assert len(hparams) == 1  # once, at the run's start, not again at the resume


def test_forgetting_leaves_files_without_later_steps_untouched(tmp_path):
    with tf.summary.create_file_writer(str(tmp_path / "train")).as_default():
        tf.summary.scalar("loss", 1.0, step=5)
    (path,) = (tmp_path / "train").glob("*tfevents*")
    before = path.read_bytes()
    assert callbacks.forget_events_after(str(tmp_path), 5) == []
    assert path.read_bytes() == before
    assert callbacks.forget_events_after(str(tmp_path), 4) == [str(path)]
    assert tensorboard_points(tmp_path) == []
