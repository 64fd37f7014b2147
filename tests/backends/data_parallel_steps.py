"""Three jit-compiled JAX train steps under `keras.distribution.DataParallel`, on 1 and 2 devices.

    python tests/backends/data_parallel_steps.py OUT_DIR --algorithms=ns3l,mixmatch+ns3l

Splits the CPU into two JAX devices (`--xla_force_host_platform_device_count=2`); for each
algorithm and device count N in (1, 2) lays a model out over the first N devices and trains
it for three steps on the same fixed batches through the package's own loop function
(`ns3l_tf.backend.jax.make_train_function`). Writes `OUT_DIR/<algorithm>_<N>.npz`: every
weight, the logs of the last step, and the devices that hold the first kernel.
"""

import argparse
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ns3l_tf import SSLModel, methods, models  # noqa: E402
from ns3l_tf.backend import jax as jax_steps  # noqa: E402


def batches(model, count=3):
    rng = np.random.default_rng(0)
    shape = (16, 28, 28, 1) if model.unlabeled_augmentations == 1 else (8, 2, 28, 28, 1)
    return [
        (
            (rng.normal(size=(8, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 8)),
            rng.normal(size=shape).astype("float32"),
        )
        for _ in range(count)
    ]


def train(algorithm: str, devices: list) -> dict:
    """The weights and last logs after three steps laid out over `devices`."""
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    keras.utils.set_random_seed(0)
    settings = {"vat_epsilon": 1.0, "ns3l_threshold": 0.05, "mixmatch_rampup_steps": 0}
    model = SSLModel(
        models.small_cnn(),
        10,
        algorithm=algorithm,
        seed=0,
        **methods.settings_for(algorithm, settings),
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build_for_training()
    step = jax_steps.make_train_function(model, batches(model))
    for _ in range(3):
        logs = step()
    kernel = model.trainable_variables[0].value
    return {
        "devices": np.array(sorted(d.id for d in kernel.sharding.device_set)),
        **{f"w{i}": np.asarray(w) for i, w in enumerate(model.weights)},
        **{f"log_{k}": np.asarray(v) for k, v in logs.items()},
    }


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--algorithms", default="ns3l,mixmatch+ns3l")
    args = parser.parse_args(argv)
    for algorithm in args.algorithms.split(","):
        for count in (1, 2):
            result = train(algorithm, jax.devices()[:count])
            np.savez(os.path.join(args.out_dir, f"{algorithm}_{count}.npz"), **result)


if __name__ == "__main__":
    main(sys.argv[1:])
