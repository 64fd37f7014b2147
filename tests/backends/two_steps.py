"""Two train steps of every method on the Keras backend this process runs, for comparison.

    KERAS_BACKEND=jax python tests/backends/two_steps.py OUT_DIR [--initial=TF_OUT_DIR]

For each case of `CASES` it builds a small-CNN `SSLModel`, sets its weights (from
`--initial`'s file of that case when given, so that every backend starts from the same
weights), and runs two train steps with SGD (learning rate 0.1) on a fixed Fashion-MNIST-sized
batch. The random draws (VAT's directions, MixUp, the random selectors) come from a NumPy
generator in call order, identical on every backend. Writes `OUT_DIR/<case>.npz`: the initial
weights, both steps' logs, the trainable weights before the first step and the first step's
gradients ((w₀ − w₁) / learning rate), and the weights and non-trainable state (BatchNorm
statistics) after the second step; and
`OUT_DIR/model.keras`, the `vat+ns3l` model after its steps, with its predictions.
"""

import argparse
import os
import sys

import keras
import numpy as np

from ns3l_tf import SSLModel, methods, models

LEARNING_RATE = 0.1
CASES = {
    "supervised": ("supervised", {}),
    "supervised+entmin": ("supervised+entmin", {}),
    "ns3l": ("ns3l", {}),
    "ns3l_two_views": ("ns3l", {"ns3l_views": 2}),
    "ns3l_oracle": ("ns3l", {"ns3l_selector": "oracle", "ns3l_num_negatives": 3}),
    "ns3l_uniform": ("ns3l", {"ns3l_selector": "uniform", "ns3l_num_negatives": 3}),
    "ns3l_nn_exclude": ("ns3l", {"ns3l_selector": "nn_exclude", "ns3l_num_negatives": 2}),
    "ns3l_rampup": ("ns3l", {"rampup_steps": 3}),
    "pseudo_label": ("pseudo_label", {"pseudo_label_threshold": 0.1}),
    "pseudo_label+ns3l": ("pseudo_label+ns3l", {"pseudo_label_threshold": 0.1}),
    "vat": ("vat", {}),
    "vat+entmin": ("vat+entmin", {}),
    "vat+ns3l": ("vat+ns3l", {}),
    "vat+entmin+ns3l": ("vat+entmin+ns3l", {"rampup_steps": 3}),
    "mixmatch": ("mixmatch", {"mixmatch_rampup_steps": 0}),
    "mixmatch+ns3l": ("mixmatch+ns3l", {"mixmatch_rampup_steps": 4}),
    "fixmatch": ("fixmatch", {"fixmatch_threshold": 0.1}),
    "fixmatch+ns3l": ("fixmatch+ns3l", {"fixmatch_threshold": 0.1}),
    "flexmatch+ns3l": ("flexmatch+ns3l", {"flexmatch_threshold": 0.1}),
}
COMMON = {"vat_epsilon": 1.0, "ns3l_threshold": 0.05, "mixmatch_weight": 0.5}
SAVED_CASE = "vat+ns3l"


class NumpyDraws:
    """Stands in for `keras.random.normal` / `uniform`: the next draws of one NumPy generator,
    whatever the seed argument, so that both backends draw the same numbers in the same order."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=None, seed=None):
        draw = self.rng.normal(mean, stddev, size=tuple(int(d) for d in shape))
        return keras.ops.convert_to_tensor(draw.astype("float32"))

    def uniform(self, shape, minval=0.0, maxval=1.0, dtype=None, seed=None):
        draw = self.rng.uniform(minval, maxval, size=tuple(int(d) for d in shape))
        return keras.ops.convert_to_tensor(draw.astype("float32"))


def batch(model, rng):
    """A fixed `((x_l, y_l), x_u)` of 8 labeled and 8 unlabeled standardised images, `x_u` a
    dict with the hidden labels and nearest-neighbour candidates the selectors read."""
    augmentations = model.unlabeled_augmentations
    x_l = rng.normal(size=(8, 28, 28, 1)).astype("float32")
    y_l = rng.integers(0, 10, 8).astype("int32")
    shape = (8, 28, 28, 1) if augmentations == 1 else (8, augmentations, 28, 28, 1)
    x_u = rng.normal(size=shape).astype("float32")
    candidates = (rng.uniform(size=(8, 10)) < 0.5).astype("float32")
    candidates[:, 0] = 1.0  # at least one candidate per image
    unlabeled = {"images": x_u, "labels": rng.integers(0, 10, 8).astype("int32")}
    if "nn_candidates" in model.unlabeled_extra_keys:
        unlabeled["nn_candidates"] = candidates
    if "indices" in model.unlabeled_extra_keys:
        unlabeled["indices"] = np.arange(8, dtype="int32")
    if not model.uses_unlabeled_data:
        return (x_l, y_l)
    if not model.unlabeled_extra_keys:
        unlabeled = x_u
    return ((x_l, y_l), unlabeled)


def train_step(model, data):
    """One step on the running backend; returns the logs as floats."""
    if keras.backend.backend() == "jax":
        from ns3l_tf.backend import jax as jax_steps

        state = jax_steps.state_of(model)
        logs, state = model.train_step(state, data)
        for variables, values in zip(jax_steps.variable_groups(model), state):
            for variable, value in zip(variables, values):
                variable.assign(value)
    else:
        logs = model.train_step(data)
    for metric in model.metrics:  # each step's logs are that step's values alone
        metric.reset_state()
    return {name: float(value) for name, value in logs.items()}


def run_case(name, initial_dir, out_dir):
    algorithm, kwargs = CASES[name]
    keras.utils.set_random_seed(0)
    settings = methods.settings_for(algorithm, {**COMMON, **kwargs})
    model = SSLModel(
        models.small_cnn(), 10, algorithm=algorithm, seed=0, num_unlabeled=8, **settings
    )
    # The strong views are the batch's second images as given: RandAugment's sub-layers draw
    # from each backend's own generator (`tests/methods/test_fixmatch.py` checks the layer).
    model.strong_augmentation = None
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE))
    model.build_for_training()
    if initial_dir:
        with np.load(os.path.join(initial_dir, f"{name}.npz")) as initial:
            model.set_weights([initial[f"initial_{i}"] for i in range(len(model.weights))])
    initial = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(1)
    data = batch(model, rng)
    draws = NumpyDraws(2)
    keras.random.normal, keras.random.uniform = draws.normal, draws.uniform
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = [train_step(model, data)]
    gradients = [(b - v.numpy()) / LEARNING_RATE for b, v in zip(before, model.trainable_variables)]
    logs.append(train_step(model, data))
    result = {f"initial_{i}": w for i, w in enumerate(initial)}
    for step, step_logs in enumerate(logs):
        result.update({f"log{step}_{k}": np.float32(v) for k, v in step_logs.items()})
    result.update({f"gradient_{i}": g for i, g in enumerate(gradients)})
    result.update({f"start_{i}": b for i, b in enumerate(before)})
    result.update({f"trainable_{i}": v.numpy() for i, v in enumerate(model.trainable_variables)})
    # BatchNorm's statistics and any state a method keeps across steps (FlexMatch's).
    statistics = [
        *model.backbone.non_trainable_weights,
        *getattr(model.base_method, "state_variables", {}).values(),
    ]
    result.update({f"statistics_{i}": v.numpy() for i, v in enumerate(statistics)})
    np.savez(os.path.join(out_dir, f"{name}.npz"), **result)
    if name == SAVED_CASE:
        model.save(os.path.join(out_dir, "model.keras"))
        images = np.random.default_rng(3).uniform(0, 255, (4, 28, 28, 1)).astype("float32")
        np.savez(os.path.join(out_dir, "predictions.npz"), images=images, logits=model(images))


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--initial", default=None)
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args(argv)
    real_normal, real_uniform = keras.random.normal, keras.random.uniform
    for name in args.cases.split(","):
        run_case(name, args.initial, args.out_dir)
        keras.random.normal, keras.random.uniform = real_normal, real_uniform


if __name__ == "__main__":
    main(sys.argv[1:])
