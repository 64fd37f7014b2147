"""JAX-only behaviours of the training loop, printed as JSON for `test_jax_fit.py`.

    KERAS_BACKEND=jax python tests/backends/jax_fit_checks.py

1. `loop.fit` and `keras.Model.fit` on JAX: a callback that assigns `model.ns3l_weight = 0`
   after the first step turns the NS³L term off from the next step on (the step is jitted;
   the Variable is part of its state).
2. Random draws differ at every jitted step: with a learning rate of 0 and one fixed batch,
   VAT's loss changes from step to step only through its random direction, and the model's
   seed generator state advances.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from ns3l_tf import SSLModel, loop, methods, models  # noqa: E402
from ns3l_tf.backend import jax as jax_steps  # noqa: E402


def model_of(algorithm, learning_rate):
    keras.utils.set_random_seed(0)
    settings = methods.settings_for(algorithm, {"ns3l_threshold": 0.05})
    model = SSLModel(models.small_cnn(), 10, algorithm=algorithm, seed=0, **settings)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate))
    model.build_for_training()
    return model


def fixed_batches():
    rng = np.random.default_rng(0)
    batch = (
        (rng.normal(size=(8, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 8)),
        rng.normal(size=(8, 28, 28, 1)).astype("float32"),
    )
    return tf.data.Dataset.from_tensors(batch).repeat()


class TurnOffNS3L(keras.callbacks.Callback):
    """Sets λ₁ to 0 after the first step; records every step's loss terms."""

    def __init__(self):
        super().__init__()
        self.steps = []

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append({k: float(logs[k]) for k in ("loss", "sup_loss", "ns3l_loss")})
        self.model.ns3l_weight.assign(0.0)


def assigned_weight_takes_effect():
    found = {}
    for how in ("loop.fit", "keras.fit"):
        model = model_of("ns3l", 0.01)
        callback = TurnOffNS3L()
        if how == "loop.fit":
            strategy = tf.distribute.get_strategy()
            loop.fit(model, strategy, fixed_batches(), total_steps=3, eval_every=1,
                     callbacks=[callback])  # fmt: skip
        else:
            model.fit(fixed_batches(), steps_per_epoch=1, epochs=3, callbacks=[callback],
                      verbose=0)  # fmt: skip
        found[how] = callback.steps
    return found


def draws_differ_per_step():
    model = model_of("vat", 0.0)
    step = jax_steps.make_train_function(model, fixed_batches())
    states, losses = [], []
    for _ in range(3):
        losses.append(float(step()["vat_loss"]))
        for metric in model.metrics:
            metric.reset_state()
        states.append(np.asarray(model.seed_generator.state.value).tolist())
    return {"vat_losses": losses, "seed_states": states}


if __name__ == "__main__":
    print(json.dumps({"assign": assigned_weight_takes_effect(), "draws": draws_differ_per_step()}))
