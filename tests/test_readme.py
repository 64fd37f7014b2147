"""The README's Python examples run as written: each ```python block is executed, with only
the training budget of the `model.fit` example cut (the replaced text must be there, so the
README cannot drift from what is tested)."""

import os
import re

import numpy as np
import pytest

from .conftest import REPO_ROOT

README = os.path.join(REPO_ROOT, "README.md")
FIT_BUDGET = "steps_per_epoch=500, epochs=6"


def python_blocks() -> list[str]:
    with open(README, encoding="utf-8") as f:
        return re.findall(r"^```python\n(.*?)^```", f.read(), flags=re.S | re.M)


def test_the_readme_has_its_two_examples():
    blocks = python_blocks()
    assert len(blocks) == 2
    assert "runs/demo/model.keras" in blocks[0] and FIT_BUDGET in blocks[1]


@pytest.mark.large
def test_the_fit_example_trains(monkeypatch):
    code = python_blocks()[1]
    namespace = {}
    exec(
        compile(code.replace(FIT_BUDGET, "steps_per_epoch=2, epochs=1"), README, "exec"), namespace
    )
    history = namespace["model"].history.history
    assert {"vat_loss", "ns3l_loss", "val_error"} <= set(history)
    assert np.isfinite(history["loss"][0])


@pytest.mark.large
def test_the_loading_example_reads_a_demo_run(shared_run, tmp_path, monkeypatch):
    """`runs/demo` as `make demo` leaves it (here 20 steps of the flags/fmnist_quick.cfg
    preset, tests/conftest.py)."""
    shared_run(tmp_path / "runs" / "demo")
    monkeypatch.chdir(tmp_path)
    raw_images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("uint8")
    namespace = {"raw_images": raw_images}
    exec(compile(python_blocks()[0], README, "exec"), namespace)
    probabilities = np.asarray(namespace["probabilities"])
    assert probabilities.shape == (3, 10)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
