"""Every method computes the same step on TensorFlow and on JAX.

Two processes run `two_steps.py`, one per backend, from the same initial weights, batch and
random draws (NumPy's, in call order). Tolerances, float32, relative to the TensorFlow value:
both steps' loss terms and diagnostics 1e-5 and the first step's gradients 2e-4 (max-norm over
each array, relative to its largest entry), the BatchNorm statistics after two steps 2e-3, and
the weights' displacement over two steps 2e-2 (L2 norm of the difference over the L2 norm of
the displacement). That last one is loose because the second step inherits the first's
round-off through the NS³L selection and the network's kinks: TensorFlow against itself, with
oneDNN's convolutions turned off (`TF_ENABLE_ONEDNN_OPTS=0`), differs by 1.8e-2 there on the
`ns3l_oracle` case (and by 2.2e-2 in its first gradient's max-norm). VAT's power iteration is
a finite difference at ξ = 1e-6 that amplifies round-off: its cases get 100× the first three.
FixMatch's and FlexMatch's one pass over 8 labeled + 2 × 8 unlabeled rows differs in the first
two convolutions' gradients by 1.1e-3 to 4.8e-3 (the later layers agree to 5e-5, the logs to
3e-6), also with the unlabeled loss off (τ = 0.99), so it comes from the 24-row pass, not the
method's loss: their cases get 25× the gradient tolerance.
"""

import os
import sys

import keras
import numpy as np
import pytest

from .. import processes
from . import two_steps

HERE = os.path.dirname(os.path.abspath(__file__))
TOLERANCES = {"logs": 1e-5, "gradients": 2e-4, "statistics": 2e-3}
DISPLACEMENT_TOLERANCE = 2e-2
FINITE_DIFFERENCE_FACTOR = 100.0
THREE_BATCH_PASS_FACTOR = 25.0


def run_on(backend: str, out_dir, initial=None) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend}
    command = [sys.executable, os.path.join(HERE, "two_steps.py"), str(out_dir)]
    if initial is not None:
        command.append(f"--initial={initial}")
    result = processes.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def both_backends(tmp_path_factory):
    """`(tensorflow_dir, jax_dir)` holding every case's results on each backend."""
    pytest.importorskip("jax")
    tensorflow_dir = tmp_path_factory.mktemp("tensorflow")
    jax_dir = tmp_path_factory.mktemp("jax")
    run_on("tensorflow", tensorflow_dir)
    run_on("jax", jax_dir, initial=tensorflow_dir)
    return tensorflow_dir, jax_dir


def relative_gap(want, got) -> float:
    """`max |got − want| / max |want|` (0 for empty arrays)."""
    want, got = np.asarray(want, "float64"), np.asarray(got, "float64")
    return (
        float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-12)) if want.size else 0.0
    )


def gaps(tensorflow, jax) -> dict[str, float]:
    """The largest relative gap of each kind of result between the two backends' files."""
    logs = [k for k in tensorflow.files if k.startswith("log")]
    assert logs and set(logs) == {k for k in jax.files if k.startswith("log")}
    count = len([k for k in tensorflow.files if k.startswith("gradient_")])
    displacement = []
    for i in range(count):
        want = tensorflow[f"trainable_{i}"] - tensorflow[f"start_{i}"]
        got = jax[f"trainable_{i}"] - jax[f"start_{i}"]
        assert np.linalg.norm(want) > 0  # the steps moved every weight
        displacement.append(float(np.linalg.norm(got - want) / np.linalg.norm(want)))
    statistics = [k for k in tensorflow.files if k.startswith("statistics_")]
    return {
        "logs": max(relative_gap(tensorflow[k], jax[k]) for k in logs),
        "gradients": max(
            relative_gap(tensorflow[f"gradient_{i}"], jax[f"gradient_{i}"]) for i in range(count)
        ),
        "displacement": max(displacement),
        "statistics": max(relative_gap(tensorflow[k], jax[k]) for k in statistics),
    }


@pytest.mark.large
@pytest.mark.parametrize("case", sorted(two_steps.CASES))
def test_every_method_steps_alike(both_backends, case):
    tensorflow_dir, jax_dir = both_backends
    with (
        np.load(tensorflow_dir / f"{case}.npz") as tf_file,
        np.load(jax_dir / f"{case}.npz") as jax_file,
    ):
        for i in range(len([k for k in tf_file.files if k.startswith("initial_")])):
            np.testing.assert_array_equal(tf_file[f"initial_{i}"], jax_file[f"initial_{i}"])
        measured = gaps(tf_file, jax_file)
    factor = FINITE_DIFFERENCE_FACTOR if case.startswith("vat") else 1.0
    for kind, tolerance in TOLERANCES.items():
        if kind == "gradients" and case.startswith(("fixmatch", "flexmatch")):
            tolerance *= THREE_BATCH_PASS_FACTOR
        assert measured[kind] <= factor * tolerance, (case, kind, measured)
    assert measured["displacement"] <= DISPLACEMENT_TOLERANCE, (case, measured)


@pytest.mark.large
def test_a_model_saved_on_either_backend_predicts_alike_on_the_other(both_backends):
    tensorflow_dir, jax_dir = both_backends
    from ns3l_tf import load_model

    assert keras.backend.backend() == "tensorflow"
    with np.load(jax_dir / "predictions.npz") as saved:
        loaded = load_model(str(jax_dir / "model.keras"))
        np.testing.assert_allclose(loaded(saved["images"]), saved["logits"], rtol=1e-4, atol=1e-4)
    with (
        np.load(tensorflow_dir / "predictions.npz") as tf_saved,
        np.load(jax_dir / "predictions.npz") as jax_saved,
    ):
        np.testing.assert_array_equal(tf_saved["images"], jax_saved["images"])
    # The TensorFlow-saved model loads on JAX: the JAX process loaded its initial weights from
    # the TensorFlow run; here its saved file is read on JAX in a fresh process.
    script = (
        "import numpy as np, sys; from ns3l_tf import load_model; "
        f"m = load_model({str(tensorflow_dir / 'model.keras')!r}); "
        f"s = np.load({str(tensorflow_dir / 'predictions.npz')!r}); "
        "np.testing.assert_allclose(np.asarray(m(s['images'])), s['logits'], "
        "rtol=1e-4, atol=1e-4); "
        "import keras; print(keras.backend.backend())"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = processes.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "jax"
