"""tf.distribute: two CPU replicas match one device, a two-process multi-worker run agrees
and resumes after both workers are killed, and strategy errors are one clear line. The
strategy runs go to subprocesses, because logical devices and collectives must be configured
before TensorFlow starts."""

import json
import os
import re
import socket
import sys
import textwrap
import time

import numpy as np
import pytest

from ns3l_tf import distribute, experiment
from ns3l_tf.config import Config, ConfigError

from . import processes
from .conftest import REPO_ROOT

# One SGD step on the same global batch (16 labeled + 16 unlabeled Fashion-MNIST images), on
# one device and on MirroredStrategy over two logical CPUs, from the same initial weights.
MIRRORED_STEP = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ns3l_tf import SSLModel, data as data_lib, distribute, models

    algorithm = sys.argv[1]
    raw = data_lib.sources.load_fashion_mnist()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(raw.train_images), 32, replace=False)
    images = ((raw.train_images[pick] / 255.0 - 0.286) / 0.353).astype("float32")
    batch = ((images[:16], raw.train_labels[pick[:16]]), images[16:])

    def build(strategy):  # under several replicas, SSLModel synchronizes the BatchNorms
        with strategy.scope():
            keras.utils.set_random_seed(0)
            backbone = models.build_backbone("small_cnn", 10, (28, 28, 1))
            model = SSLModel(backbone, 10, algorithm=algorithm, ns3l_threshold=0.09, seed=0)
            model.compile(optimizer=keras.optimizers.SGD(0.5))
            model(np.zeros((1, 28, 28, 1), "float32"))
        return model

    single = build(tf.distribute.get_strategy())
    single_logs = single.train_step(batch)
    mirrored_strategy = distribute.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    mirrored = build(mirrored_strategy)
    batch_norms = mirrored._backbone_state.batch_norms
    assert {type(layer) for layer in batch_norms} == {keras.layers.BatchNormalization}  # plain
    assert all(layer.synchronized for layer in batch_norms)
    dist = mirrored_strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))
    per_replica = mirrored_strategy.run(tf.function(mirrored.train_step), args=(next(iter(dist)),))
    mirrored_logs = {
        k: float(mirrored_strategy.reduce("MEAN", v, axis=None)) for k, v in per_replica.items()
    }
    weights = lambda m: np.concatenate([np.ravel(w) for w in m.backbone.weights])
    initial = weights(build(tf.distribute.get_strategy()))
    single_update = weights(single) - initial
    mirrored_update = weights(mirrored) - initial
    print(json.dumps({
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "loss": [float(single_logs["loss"]), mirrored_logs["loss"]],
        "ns3l_loss": [float(single_logs["ns3l_loss"]), mirrored_logs["ns3l_loss"]],
        "update_norm": float(np.linalg.norm(single_update)),
        "relative_update_difference": float(
            np.linalg.norm(mirrored_update - single_update) / np.linalg.norm(single_update)
        ),
    }))
    """
)


# Methods whose draws differ per replica (VAT's directions, MixMatch's MixUp): two fit steps
# on two logical CPUs, with a weight EMA as MixMatch evaluates, must give finite terms and
# keep both replicas' copies of every variable equal.
MIRRORED_REPLICAS_AGREE = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ns3l_tf import SSLModel, distribute, methods, models

    algorithm = sys.argv[1]
    rng = np.random.default_rng(0)
    settings = {"vat_epsilon": 2.0, "flexmatch_threshold": 0.1, "ns3l_threshold": 0.09}
    strategy = distribute.make_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = SSLModel(models.build_backbone("small_cnn", 10, (28, 28, 1)), 10,
                         algorithm=algorithm, seed=0, num_unlabeled=32,
                         **methods.settings_for(algorithm, settings))
        model.compile(optimizer=keras.optimizers.Adam(1e-3, use_ema=True))
        model(np.zeros((1, 28, 28, 1), "float32"))
    views = model.unlabeled_augmentations
    x_l = rng.normal(size=(16, 28, 28, 1)).astype("float32")
    x_u = rng.normal(size=(16, views, 28, 28, 1) if views > 1 else (16, 28, 28, 1))
    x_u = x_u.astype("float32")
    if "indices" in model.unlabeled_extra_keys:  # each replica's shard: images 0-7, 8-15
        x_u = {"images": x_u, "indices": np.arange(16, dtype="int32")}
    batch = ((x_l, rng.integers(0, 10, 16)), x_u)
    history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=2, verbose=0)
    logs = {name: values[-1] for name, values in history.history.items()}
    copies = [v.value.values for v in [*model.variables, *model.optimizer.variables]]
    spread = max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in copies)
    state = getattr(model, "flexmatch_selected_labels", None)
    recorded = None if state is None else int((np.asarray(state.value.values[0]) >= 0).sum())
    print(json.dumps({"logs": logs, "variables": len(copies), "replica_spread": spread,
                      "recorded": recorded}))
    """
)


def _python(code_or_args, env=None, timeout=300):
    command = [sys.executable, *code_or_args]
    return processes.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("algorithm", ["ns3l", "pseudo_label+ns3l"])
@pytest.mark.large
def test_two_mirrored_cpu_replicas_match_one_device(algorithm):
    result = _python(["-c", MIRRORED_STEP, algorithm])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    # The loss is the global-batch mean, not the sum or a single replica's shard.
    assert report["loss"][1] == pytest.approx(report["loss"][0], rel=1e-5)
    assert report["ns3l_loss"][1] == pytest.approx(report["ns3l_loss"][0], rel=1e-5)
    # The same update of the weights and BatchNorm statistics. Measured: 0.18% of the update's
    # norm, as for synchronized BatchNorm on one replica (0.16%: its moments are computed
    # another way, in float32); without synchronized BatchNorm two replicas differ by 19%.
    assert report["update_norm"] > 0.1
    assert report["relative_update_difference"] < 0.01


@pytest.mark.parametrize("algorithm", ["vat+ns3l", "mixmatch+ns3l", "flexmatch+ns3l"])
@pytest.mark.large
def test_mirrored_replicas_keep_identical_copies(algorithm):
    result = _python(["-c", MIRRORED_REPLICAS_AGREE, algorithm])
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    term = algorithm.split("+")[0] + "_loss"
    if algorithm.startswith("flexmatch"):
        # τ = 0.1 = 1/K: every image is confident, and both shards' images are recorded, alike.
        assert report["recorded"] == 16
    assert report["logs"][term] > 0 and report["logs"]["ns3l_loss"] > 0
    assert all(np.isfinite(value) for value in report["logs"].values())
    # Weights, BatchNorm statistics, EMA averages and Adam moments: the same on both replicas.
    assert report["variables"] > 60 and report["replica_spread"] == 0.0


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(output_dir, train_steps):
    """Two workers of one multi-worker run, sharing `output_dir` (as on a shared disk)."""
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    argv = [
        "-m",
        "ns3l_tf.train",
        "--flagfile=flags/fmnist_quick.cfg",
        "--strategy=multi_worker",
        f"--train_steps={train_steps}",
        "--eval_every=15",
        "--checkpoint_every=5",
        "--lr_decay_step=0",
        "--batch_size=16",
        "--unlabeled_batch_size=16",
        "--num_validation=1000",
        f"--output_dir={output_dir}",
    ]
    workers = []
    for index in range(2):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        workers.append(
            processes.Popen(
                [sys.executable, *argv],
                cwd=REPO_ROOT,
                env={**os.environ, "TF_CONFIG": json.dumps(task)},
                stdout=processes.PIPE,
                stderr=processes.PIPE,
                text=True,
            )
        )
    return workers


@pytest.mark.large
def test_two_process_multi_worker_run_agrees_and_resumes(tmp_path):
    output_dir = tmp_path / "run"
    state = output_dir / "checkpoints" / "state.json"
    workers = _start_workers(output_dir, 30)
    deadline = time.time() + 400
    while not state.exists():  # the chief's first checkpoint (step 5); then kill both
        assert all(w.poll() is None for w in workers), workers[0].communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint"
        time.sleep(0.05)
    for worker in workers:
        worker.kill()
        worker.communicate()
    assert not (output_dir / "results.json").exists()
    killed_at = json.loads(state.read_text())["step"]

    workers = _start_workers(output_dir, 30)  # the same command, on fresh ports
    outputs = [worker.communicate(timeout=400) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
        assert f"resuming at step {killed_at}" in stderr
    # "test error E% after 30 steps (S s); at the lowest validation error (V%, step N): ..."
    summaries = [re.sub(r"\(\d+ s\)", "", out.strip().splitlines()[-1]) for out, _ in outputs]
    # Both workers hold the same weights: the same test and validation errors.
    assert summaries[0].split("; results in")[0] == summaries[1].split("; results in")[0]
    results = json.loads((output_dir / "results.json").read_text())
    assert results["num_replicas"] == 2 and results["steps"] == 30
    assert results["resumed_at_steps"] == [killed_at] and 0 < killed_at < 30
    # Not a one-class model (exactly 90.00%): the errors carry the weights' information.
    assert results["test_error"] < 89.5
    assert f"test error {results['test_error']:.2f}% after 30 steps" in summaries[1]
    assert len(results["history"]) == 2 and "val_error" in results["history"][0]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "tpu"}, "--strategy=tpu: unknown; allowed: default, mirrored, multi_worker"),
        ({"name": "mirrored", "num_gpus": 3}, "--num_gpus=3: only 0 GPU(s) visible"),
        ({"name": "multi_worker"}, "--strategy=multi_worker: set TF_CONFIG on every machine"),
    ],
)
def test_strategy_errors_name_the_flag(kwargs, message, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(distribute.StrategyError) as error:
        distribute.make_strategy(**kwargs)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_default_strategy_is_one_chief_replica():
    strategy = distribute.make_strategy("default")
    assert strategy.num_replicas_in_sync == 1 and distribute.is_chief(strategy)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"strategy": "horovod"}, "--strategy=horovod: unknown strategy; allowed: default"),
        ({"num_gpus": 2}, "--num_gpus=2: only applies to --strategy=mirrored"),
        ({"strategy": "mirrored", "num_gpus": -1}, "--num_gpus=-1: must be >= 0"),
    ],
)
def test_config_refuses_bad_strategies(changes, message):
    with pytest.raises(ConfigError, match=message):
        Config(**changes)


def test_batches_must_split_evenly_over_replicas():
    with pytest.raises(ConfigError) as error:
        experiment.check_divisible(Config(batch_size=64, unlabeled_batch_size=30), 4)
    assert str(error.value) == (
        "--unlabeled_batch_size=30: a global batch must split evenly over the 4 replicas of "
        "--strategy=default"
    )
