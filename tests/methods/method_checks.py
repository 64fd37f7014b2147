"""The checks every SSL method passes, shared by the per-method tests."""

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf import SSLModel, models
from ns3l_tf import data as data_lib


def fixed_batch(data, n_labeled=16, n_unlabeled=24):
    """Normalised, unaugmented `(x_l, y_l, x_u)` from the start of each pool."""
    normalize = lambda x: data_lib.augment.normalize(x, data.mean, data.std)  # noqa: E731
    return (
        normalize(data.labeled_images[:n_labeled]),
        tf.constant(data.labeled_labels[:n_labeled]),
        normalize(data.unlabeled_images[:n_unlabeled]),
    )


def build(algorithm, learning_rate=0.01, **kwargs):
    keras.utils.set_random_seed(0)
    model = SSLModel(models.small_cnn(), 10, algorithm=algorithm, seed=0, **kwargs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model(np.zeros((1, 28, 28, 1), "float32"))
    return model


def moving_statistics(model):
    return [v.numpy().copy() for v in model.backbone.non_trainable_weights]


def check_one_step(algorithm, data, expected_losses, **kwargs):
    """One train step: finite named terms, every weight moves, and BatchNorm's moving
    statistics equal those of one plain training pass over the batch the method feeds first
    (so no auxiliary pass updated them). Then a save/load round trip."""
    x_l, y_l, x_u = fixed_batch(data)
    model = build(algorithm, **kwargs)
    reference = build(algorithm, **kwargs)
    reference.set_weights(model.get_weights())
    before = [w.numpy().copy() for w in model.trainable_weights]

    batch = ((x_l, y_l), x_u) if model.uses_unlabeled_data else (x_l, y_l)
    logs = {k: float(v) for k, v in tf.function(model.train_step)(batch).items()}

    for name in ("loss", *expected_losses):
        assert np.isfinite(logs[name]), (name, logs)
    total = sum(logs[n] for n in expected_losses)
    assert set(expected_losses) <= set(logs)
    assert logs["loss"] <= total + 1e-4 or "sup_loss" in logs  # weights ≤ 1 in tests
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(moved)

    clean_pass = tf.concat([x_l, x_u], 0) if model.uses_unlabeled_data else x_l
    reference.backbone(clean_pass, training=True)
    for got, want in zip(moving_statistics(model), moving_statistics(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return model, logs


def check_save_and_load(model, tmp_path):
    x_l = tf.random.stateless_normal((4, 28, 28, 1), (0, 1))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    hyperparameters = lambda m: {k: v for k, v in m.get_config().items() if k != "backbone"}  # noqa: E731
    assert hyperparameters(loaded) == hyperparameters(model)
    np.testing.assert_allclose(loaded(x_l).numpy(), model(x_l).numpy(), rtol=1e-5, atol=1e-6)


def check_loss_falls(algorithm, data, steps=80, **kwargs):
    """A short real run on a Fashion-MNIST subset: the total loss falls by a wide margin."""
    model = build(algorithm, learning_rate=2e-3, **kwargs)
    unlabeled = 32 if model.uses_unlabeled_data else 0
    train = data_lib.train_dataset(data, batch_size=32, unlabeled_batch_size=unlabeled, seed=0)
    history = model.fit(train, steps_per_epoch=steps // 4, epochs=4, verbose=0).history
    assert history["loss"][-1] < 0.7 * history["loss"][0], history["loss"]
    return history
