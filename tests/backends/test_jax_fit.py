"""On JAX, callbacks' assignments reach the jitted step, and random draws change every step."""

import json
import os
import sys

import pytest

from .. import processes

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def checks():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # as the script sets
    script = os.path.join(HERE, "jax_fit_checks.py")
    result = processes.run(
        [sys.executable, script], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.large
@pytest.mark.parametrize("how", ["loop.fit", "keras.fit"])
def test_a_callback_assigning_the_ns3l_weight_takes_effect_at_the_next_step(checks, how):
    first, *later = checks["assign"][how]
    assert first["loss"] == pytest.approx(first["sup_loss"] + first["ns3l_loss"], rel=1e-6)
    assert first["ns3l_loss"] > 0.01
    for step in later:  # λ₁ = 0 from the second step: the total is the supervised loss alone
        assert step["ns3l_loss"] > 0.01 and step["loss"] == step["sup_loss"]


@pytest.mark.large
def test_every_jitted_step_draws_afresh(checks):
    states = checks["draws"]["seed_states"]
    assert len({tuple(s) for s in states}) == 3  # the seed generator advanced every step
    losses = checks["draws"]["vat_losses"]
    # Learning rate 0 and one fixed batch: only VAT's random direction can change the loss.
    assert len(set(losses)) == 3
