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
device of the cluster: variables are replicated, each global batch is split along its first
axis, and the one jit-compiled step computes global-batch means and BatchNorm moments (XLA
inserts the all-reduces), so results do not depend on the device count either. Several
processes (one per host, or per GPU) form a cluster through Keras's own variables, read by
`keras.distribution.initialize()`; every process runs the same command:

    KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:1234  # the coordinator: process 0's host and a port
    KERAS_DISTRIBUTION_NUM_PROCESSES=2
    KERAS_DISTRIBUTION_PROCESS_ID=0              # 1 on the second process

Every process draws the same global batches (the input pipeline is seeded) and lays its own
devices' rows out. Every process runs the whole program, saving and predicting included (on
JAX those are collectives); process i > 0 writes beside the run (`cli.process_run_dir`).
"""

import os

import keras
import numpy as np
import tensorflow as tf

from ns3l_tf import checkpoints
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
        _join_jax_cluster()
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


JAX_CLUSTER_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def _join_jax_cluster() -> None:
    """`keras.distribution.initialize()` where `KERAS_DISTRIBUTION_NUM_PROCESSES` names a
    cluster of several processes; before any JAX computation.

    Raises:
      StrategyError: a variable of the cluster is missing or not a number.
    """
    if "KERAS_DISTRIBUTION_NUM_PROCESSES" not in os.environ:
        return
    missing = [v for v in JAX_CLUSTER_VARIABLES if not os.environ.get(v)]
    if missing:
        raise StrategyError(
            f"--strategy=data_parallel on several processes: set {' and '.join(missing)} "
            "too, e.g. KERAS_DISTRIBUTION_JOB_ADDRESSES=host0:1234 "
            "KERAS_DISTRIBUTION_NUM_PROCESSES=2 KERAS_DISTRIBUTION_PROCESS_ID=0"
        )
    try:
        count, index = (int(os.environ[v]) for v in JAX_CLUSTER_VARIABLES[1:])
    except ValueError:
        count, index = 0, -1
    if not 0 <= index < count:
        raise StrategyError(
            "--strategy=data_parallel: KERAS_DISTRIBUTION_NUM_PROCESSES="
            f"{os.environ['KERAS_DISTRIBUTION_NUM_PROCESSES']} and KERAS_DISTRIBUTION_PROCESS_ID="
            f"{os.environ['KERAS_DISTRIBUTION_PROCESS_ID']} must be whole numbers with "
            "0 <= process id < processes"
        )
    if count == 1:
        return
    import jax

    # CPU processes all-reduce through Gloo over TCP (GPUs use NCCL, TPUs their own links).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize()


def several_processes(strategy: tf.distribute.Strategy) -> bool:
    """Whether several processes train this model: a multi-worker strategy, or a JAX cluster."""
    if keras.backend.backend() == "jax":
        import jax

        return jax.process_count() > 1
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def common_checkpoint(state: dict | None) -> dict | None:
    """The checkpoint every process of a JAX cluster resumes from: the step the slowest of
    them wrote last (each process keeps its previous checkpoint too, so a kill between two
    processes' writes of one step leaves a step that all hold), or None to start afresh.

    Args:
      state: this process's latest checkpoint (`checkpoints.latest`), or None.

    Raises:
      RuntimeError: this process no longer holds that step (its checkpoints were edited).
    """
    from jax.experimental import multihost_utils

    step = state["step"] if state is not None else 0
    common = int(np.min(multihost_utils.process_allgather(np.int64(step))))
    chosen = checkpoints.of_step(state, common)
    if common > 0 and chosen is None:
        raise RuntimeError(
            f"the other processes resume at step {common}, but this one's checkpoints hold "
            f"step {step} and its previous only"
        )
    return chosen


def num_replicas(strategy: tf.distribute.Strategy) -> int:
    """Devices that share each global batch: the strategy's replicas, or the devices of the
    `keras.distribution` in effect (JAX)."""
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is not None:
        return int(distribution.device_mesh.devices.size)
    return strategy.num_replicas_in_sync


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes checkpoints and results: always, except on the workers
    of a multi-worker cluster other than worker 0 (or the `chief` task). (Every process of a
    JAX cluster writes, each into its own directory: `cli.process_run_dir`.)"""
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


def _inference_logits(model: keras.Model):
    """`images → (N, K) logits` of `model` in inference mode. On JAX, one jit-compiled call of
    the model's stateless forward pass: called op by op, each operation would be a program of
    its own (in a cluster, each synchronised across the processes)."""
    if keras.backend.backend() != "jax":
        return lambda images: model(images, training=False)
    import jax

    @jax.jit
    def forward(trainable, non_trainable, images):
        return model.stateless_call(trainable, non_trainable, images, training=False)[0]

    def logits(images):
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return forward(trainable, non_trainable, np.asarray(images))

    return logits


def predict_locally(model: keras.Model, images, batch_size: int = 1000):
    """`(N, K)` class probabilities of raw `images`, computed on every row by the calling
    process (as `evaluate_locally`). Under `MultiWorkerMirroredStrategy` it needs no
    collective (`Model.predict` would wait for the other workers); in a JAX cluster, where
    `Model.predict` takes only a sharded `tf.data.Dataset`, every process calls it alike."""
    logits = _inference_logits(model)
    batches = [
        keras.ops.convert_to_numpy(keras.ops.softmax(logits(images[i : i + batch_size]), axis=-1))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(batches, axis=0)


def evaluate_locally(model: keras.Model, dataset: tf.data.Dataset) -> dict:
    """`loss`, `accuracy` and `error` (%) of `model` on `(x, y)` batches, computed by this
    process alone in cross-replica context (every worker holds the same weights), so
    evaluation needs no collective and works where `Model.evaluate` does not."""
    total, correct, loss_sum = 0, 0, 0.0
    inference_logits = _inference_logits(model)
    for images, labels in dataset:
        logits = keras.ops.convert_to_numpy(inference_logits(images))
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
