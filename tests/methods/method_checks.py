"""The checks every SSL method passes, shared by the per-method tests."""

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf import SSLModel, methods, models
from ns3l_tf import data as data_lib
from ns3l_tf.models import layers, preprocessing


def fixed_batch(data, n_labeled=16, n_unlabeled=24, augmentations=1):
    """Standardised `(x_l, y_l, x_u)` from the start of each pool; with `augmentations` > 1,
    `x_u` is `(n_unlabeled, augmentations, H, W, C)` of differently translated copies."""
    normalize = preprocessing.standardize(data.mean, data.std)
    x_u = normalize(data.unlabeled_images[:n_unlabeled])
    if augmentations > 1:
        x_u = tf.stack(
            [data_lib.augment.random_translate(x_u, 2, (a, 0)) for a in range(augmentations)],
            axis=1,
        )
    return (
        normalize(data.labeled_images[:n_labeled]),
        tf.constant(data.labeled_labels[:n_labeled]),
        x_u,
    )


def updating_inputs(model, batch, monkeypatch) -> list:
    """Runs one eager train step; the inputs of every training-mode pass that was allowed to
    update the backbone's moving statistics (outside `frozen_batchnorm_statistics()`)."""
    seen = []
    original = SSLModel.classify

    def spy(self, inputs, training=False):
        if training and layers.updates_moving_statistics():
            seen.append(tf.identity(inputs))
        return original(self, inputs, training=training)

    monkeypatch.setattr(SSLModel, "classify", spy)
    model.train_step(batch)
    monkeypatch.undo()
    return seen


def check_statistics_come_from_one_pass(model, replay, batch, monkeypatch):
    """After one train step of `model`, the backbone's moving statistics equal those of its one
    updating pass alone, replayed on `replay`: the auxiliary passes (VAT's, MixMatch's guesses
    and later chunks, NS³L's second view) left them alone, in any backbone.

    Args:
      model, replay: two built `SSLModel`s with the same weights (`replay`'s statistics move).
      batch: one training batch.

    Returns:
      The input of the updating pass.
    """
    before = moving_statistics(model)
    updating = updating_inputs(model, batch, monkeypatch)
    assert len(updating) == 1, f"{len(updating)} updating passes"
    replay.backbone(updating[0], training=True)
    moved = False
    for got, want, start in zip(moving_statistics(model), moving_statistics(replay), before):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        moved = moved or not np.allclose(got, start)
    assert moved  # the one pass did update them
    return updating[0]


def named_losses(spec) -> list[tuple[str, str]]:
    """`(method name, loss name)` of every loss the algorithm's methods declare."""
    return [
        (method.name, loss)
        for method in spec.methods
        for loss in method.implementation_class().loss_names
    ]


def loss_names(spec) -> tuple[str, ...]:
    return tuple(loss for _, loss in named_losses(spec))


def loss_weight(model, method: str, loss: str) -> float:
    """The weight the train step gives `loss`: 1 for the labeled cross-entropy, else its
    method's `weight` setting (1 without one)."""
    if loss == "sup_loss":
        return 1.0
    weight = getattr(model, f"{method}_weight", None)
    return 1.0 if weight is None else float(weight.numpy())


def with_extras(model, x_u):
    """`x_u`, as a dict with each image's `indices` where the model's base needs them."""
    if "indices" not in model.required_unlabeled_extra_keys:
        return x_u
    return {"images": x_u, "indices": tf.range(x_u.shape[0])}


def build(algorithm, learning_rate=0.01, **kwargs):
    keras.utils.set_random_seed(0)
    kwargs = methods.settings_for(algorithm, kwargs)  # the checks share one dict
    model = SSLModel(
        models.small_cnn(), 10, algorithm=algorithm, seed=0, num_unlabeled=1000, **kwargs
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    model.build_for_training()  # one trace of the step, not two
    return model


def moving_statistics(model):
    return [v.numpy().copy() for v in model.backbone.non_trainable_weights]


def check_one_step(algorithm, data, expected_losses, monkeypatch, **kwargs):
    """One train step, eager and compiled from the same weights: the moving statistics are
    those of one updating pass (for the plain labeled + unlabeled pass of all but MixMatch,
    that pass exactly), alike in both; the compiled step's named terms are finite and every
    weight moves."""
    eager, model = build(algorithm, **kwargs), build(algorithm, **kwargs)
    initial = model.get_weights()
    augmentations = model.unlabeled_augmentations
    x_l, y_l, x_u = fixed_batch(data, 16, 16 if augmentations > 1 else 24, augmentations)
    batch = ((x_l, y_l), with_extras(model, x_u)) if model.uses_unlabeled_data else (x_l, y_l)
    updating = check_statistics_come_from_one_pass(eager, model, batch, monkeypatch)
    if augmentations == 1:
        clean_pass = tf.concat([x_l, x_u], 0) if model.uses_unlabeled_data else x_l
        np.testing.assert_array_equal(updating, clean_pass)

    model.set_weights(initial)  # as it was before the replay
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = {k: float(v) for k, v in tf.function(model.train_step)(batch).items()}

    for name in ("loss", *expected_losses):
        assert np.isfinite(logs[name]), (name, logs)
    total = sum(logs[n] for n in expected_losses)
    assert set(expected_losses) <= set(logs)
    assert logs["loss"] <= total + 1e-4 or "sup_loss" in logs  # weights ≤ 1 in tests
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(moved)
    for got, want in zip(moving_statistics(model), moving_statistics(eager)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return model, logs


def check_save_and_load(model, tmp_path):
    x_l = tf.random.stateless_normal((4, 28, 28, 1), (0, 1))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    hyperparameters = lambda m: {k: v for k, v in m.get_config().items() if k != "backbone"}  # noqa: E731
    assert hyperparameters(loaded) == hyperparameters(model)
    np.testing.assert_allclose(loaded(x_l).numpy(), model(x_l).numpy(), rtol=1e-5, atol=1e-6)


def check_loss_falls(algorithm, data, steps=80, max_ratio=0.7, **kwargs):
    """A short real run on a Fashion-MNIST subset: the total loss falls below `max_ratio` of
    its first epoch's value."""
    standardize = preprocessing.standardize(data.mean, data.std)  # the stream is raw images
    model = build(algorithm, learning_rate=2e-3, preprocessing=standardize, **kwargs)
    unlabeled = 32 if model.uses_unlabeled_data else 0
    train = data_lib.train_dataset(
        data, 32, unlabeled, seed=0, unlabeled_augmentations=model.unlabeled_augmentations
    )
    history = model.fit(
        train, steps_per_epoch=steps // 4, epochs=4, verbose=0, shuffle=False
    ).history
    assert history["loss"][-1] < max_ratio * history["loss"][0], history["loss"]
    return history
