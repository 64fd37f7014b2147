"""JAX data parallelism (`--strategy=data_parallel`): two devices train as one does."""

import os
import sys

import numpy as np
import pytest

from .. import processes

HERE = os.path.dirname(os.path.abspath(__file__))
ALGORITHMS = ("ns3l", "mixmatch+ns3l")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    pytest.importorskip("jax")
    out = tmp_path_factory.mktemp("data_parallel")
    command = [sys.executable, os.path.join(HERE, "data_parallel_steps.py"), str(out)]
    command.append(f"--algorithms={','.join(ALGORITHMS)}")
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # as the script sets
    result = processes.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.large
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_two_devices_give_the_one_device_result(runs, algorithm):
    with np.load(runs / f"{algorithm}_1.npz") as one, np.load(runs / f"{algorithm}_2.npz") as two:
        assert list(one["devices"]) == [0]
        assert list(two["devices"]) == [0, 1]  # the weights really live on both devices
        weights = [k for k in one.files if k.startswith("w")]
        assert len(weights) > 10
        for key in weights:  # float32 round-off of the split batch's all-reduces
            gap = np.linalg.norm(two[key] - one[key]) / max(np.linalg.norm(one[key]), 1e-12)
            assert gap < 1e-4, (key, gap)
        for key in (k for k in one.files if k.startswith("log_")):
            np.testing.assert_allclose(two[key], one[key], rtol=1e-5, atol=1e-7)
