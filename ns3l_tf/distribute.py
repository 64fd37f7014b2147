"""Training on several GPUs and machines: `tf.distribute` on TensorFlow, `keras.distribution`
on JAX.

    strategy = make_strategy("mirrored", num_gpus=4)        # one machine, 4 GPUs
    with strategy.scope():
        model = ns3l_tf.experiment.build_model(config, data)
    model.fit(...)                     # MirroredStrategy: plain fit works, and so does loop.fit

    strategy = make_strategy("multi_worker")                # reads TF_CONFIG
    ns3l_tf.loop.fit(model, strategy, train_ds, ...)         # fit is broken there (Keras 3.15)

Batches are global: every replica gets `batch_size / replicas` labeled and unlabeled images
and `SSLModel.train_step` divides its local means by the number of replicas, so gradients
(summed across replicas) are those of the global-batch mean and results do not depend on the
number of replicas. An SSLModel built under several replicas synchronizes its backbone's BatchNorms.

On JAX, `make_strategy("data_parallel")` sets a `keras.distribution.DataParallel` over every
local device (in a multi-process JAX cluster, call `keras.distribution.initialize()` first):
variables are replicated, each global batch is split along its first axis, and the one
jit-compiled step computes global-batch means and BatchNorm moments (XLA inserts the
all-reduces), so results do not depend on the device count either.
"""

import os

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf.config import STRATEGIES


class StrategyError(ValueError):
    """The requested strategy cannot run here; the message names the flag and the fix."""


def make_strategy(name: str, num_gpus: int = 0, devices=None) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name`.

    Args:
      name: `default` (one device, no strategy), `mirrored` (all local GPUs, or the first
        `num_gpus`; the CPU when there is none) or `multi_worker` (one process per machine,
        synchronous all-reduce; the cluster comes from the `TF_CONFIG` environment variable).
      num_gpus: GPUs for `mirrored`; 0 means every visible GPU.
      devices: explicit device names for `mirrored` (e.g. two logical CPUs in tests), or JAX
        devices for `data_parallel` (default: every local device).

    Raises:
      StrategyError: unknown name, too few GPUs, or `multi_worker` without `TF_CONFIG`.
    """
    if name not in STRATEGIES:
        raise StrategyError(f"--strategy={name}: unknown; allowed: {', '.join(STRATEGIES)}")
    if keras.backend.backend() == "jax":
        # tf.data and TensorBoard run beside JAX: TensorFlow must not claim the GPUs.
        tf.config.set_visible_devices([], "GPU")
    if name == "data_parallel":
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if devices is None:
            gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
            if num_gpus > len(gpus):
                raise StrategyError(
                    f"--num_gpus={num_gpus}: only {len(gpus)} GPU(s) visible on this machine"
                )
            devices = gpus[: num_gpus or None] or None  # None: MirroredStrategy picks the CPU
        return tf.distribute.MirroredStrategy(devices)
    if "TF_CONFIG" not in os.environ:
        raise StrategyError(
            "--strategy=multi_worker: set TF_CONFIG on every machine, e.g. "
            '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    return tf.distribute.MultiWorkerMirroredStrategy()


def num_replicas(strategy: tf.distribute.Strategy) -> int:
    """Devices that share each global batch: the strategy's replicas, or the devices of the
    `keras.distribution` in effect (JAX)."""
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is not None:
        return int(distribution.device_mesh.devices.size)
    return strategy.num_replicas_in_sync


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints and results: always, except on the workers
    of a multi-worker cluster other than worker 0 (or the `chief` task)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    if resolver.task_type == "chief":
        return True
    return (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and ("chief" not in resolver.cluster_spec().as_dict())
    )


def predict_locally(model: keras.Model, images, batch_size: int = 1000):
    """`(N, K)` class probabilities of raw `images`, computed by this process alone in
    cross-replica context (as `evaluate_locally`), so it needs no collective: under
    `MultiWorkerMirroredStrategy`, `Model.predict` would wait for the other workers."""
    batches = [
        keras.ops.convert_to_numpy(
            keras.ops.softmax(model(images[i : i + batch_size], training=False), axis=-1)
        )
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(batches, axis=0)


def evaluate_locally(model: keras.Model, dataset: tf.data.Dataset) -> dict:
    """`loss`, `accuracy` and `error` (%) of `model` on `(x, y)` batches, computed by this
    process alone in cross-replica context (every worker holds the same weights), so
    evaluation needs no collective and works where `Model.evaluate` does not."""
    total, correct, loss_sum = 0, 0, 0.0
    for images, labels in dataset:
        logits = model(images, training=False)
        labels = tf.cast(labels, tf.int64)
        loss_sum += float(
            tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
        )
        correct += int(tf.reduce_sum(tf.cast(tf.argmax(logits, -1) == labels, tf.int32)))
        total += int(labels.shape[0])
    accuracy = correct / total
    return {"loss": loss_sum / total, "accuracy": accuracy, "error": 100.0 * (1.0 - accuracy)}
