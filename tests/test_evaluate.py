"""`ns3l_tf.evaluate`: a finished run's saved model, reloaded in a fresh process, reproduces
the run's figures on raw images, predicts new images, exports, and refuses bad input."""

import csv
import json
import os
import shutil
import sys

import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import inference
from ns3l_tf.data import sources

from . import processes
from .conftest import REPO_ROOT, SHARED_RUN_FLAGS, SMALL_FASHION_MNIST


def _cli(module, *args, cwd=REPO_ROOT):
    return processes.run(
        [sys.executable, "-m", f"ns3l_tf.{module}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def run_dir(shared_run, tmp_path_factory):
    """The shared run (bfloat16, a weight EMA), copied: these tests add to its report."""
    return shared_run(tmp_path_factory.mktemp("evaluate") / "run")[0]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.large
def test_the_saved_model_reproduces_the_runs_errors_in_a_fresh_process(run_dir, tmp_path):
    results = json.loads((run_dir / "results.json").read_text())
    last = _cli("evaluate", f"--run_dir={run_dir}", f"--output={tmp_path / 'test.csv'}")
    assert last.returncode == 0, last.stderr[-2000:]
    images = SMALL_FASHION_MNIST["test"]
    assert f"test error {results['test_error']:.2f}% on {images} images" in last.stdout
    rows = _rows(tmp_path / "test.csv")
    wrong = sum(row["predicted_class"] != row["label"] for row in rows)
    assert len(rows) == images and 100 * wrong / images == pytest.approx(results["test_error"])
    assert [row["label"] for row in rows[:5]] == [str(y) for y in sources.load_fashion_mnist(
        ).test_labels[:5]]  # fmt: skip
    # The best weights are the validated ones: the EMA, not the raw weights of that step.
    best = _cli("evaluate", f"--run_dir={run_dir}", "--weights=best", "--split=validation")
    assert best.returncode == 0, best.stderr[-2000:]
    assert f"validation error {results['best_val_error']:.2f}% on 1000 images" in best.stdout
    # The report: the run's own entries, and the one this evaluation added.
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert {"test/last", "test/best", "validation/best"} <= set(evaluation)
    assert evaluation["validation/best"]["error"] == pytest.approx(results["best_val_error"])
    assert evaluation["validation/best"]["images"] == 1000
    assert (run_dir / "validation_best_reliability_diagram.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.large
@pytest.mark.parametrize(
    "damaged, content, command, message",
    [
        ("model.keras", b"PK\x03\x04 cut", "evaluate", "model.keras: damaged, not readable"),
        ("model.keras", b"", "evaluate", "model.keras: damaged, not readable"),
        ("results.json", b'{"test_error": 1', "train", "results.json: damaged, not valid JSON"),
        ("config.json", b"\xff\xfe", "train", "config.json: damaged, not valid JSON"),
        ("evaluation.json", b"[1, 2]", "evaluate", "evaluation.json: damaged, holds a list"),
    ],
)
def test_a_damaged_run_file_is_one_line_naming_it(
    run_dir, tmp_path, damaged, content, command, message
):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / damaged).write_bytes(content)
    flags = (
        [*SHARED_RUN_FLAGS, f"--output_dir={copy}"] if command == "train" else [f"--run_dir={copy}"]
    )
    result = _cli(command, *flags)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {copy / damaged}") and message in lines[-1], lines
    assert "Traceback" not in result.stderr


@pytest.mark.large
def test_predictions_for_a_directory_and_an_array_agree(run_dir, tmp_path):
    images = sources.load_fashion_mnist().test_images[:5]
    np.save(tmp_path / "images.npy", images)
    (tmp_path / "pngs").mkdir()
    for i, image in enumerate(images):
        tf.io.write_file(str(tmp_path / "pngs" / f"{i}.png"), tf.io.encode_png(image))
    model = inference.load_run_model(str(run_dir))
    from_npy, names = inference.read_images(str(tmp_path / "images.npy"), model.image_shape)
    from_dir, files = inference.read_images(str(tmp_path / "pngs"), model.image_shape)
    assert names == ["0", "1", "2", "3", "4"] and files == [f"{i}.png" for i in range(5)]
    np.testing.assert_array_equal(from_npy, from_dir)
    probabilities = inference.predict_probabilities(model, from_npy)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)

    result = _cli("evaluate", f"--run_dir={run_dir}", f"--images={tmp_path / 'pngs'}",
                  f"--output={tmp_path / 'p.csv'}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _rows(tmp_path / "p.csv")
    assert [r["image"] for r in rows] == files
    assert [int(r["predicted_class"]) for r in rows] == list(np.argmax(probabilities, axis=1))
    np.testing.assert_allclose(
        [[float(r[f"p{k}"]) for k in range(10)] for r in rows], probabilities, atol=1e-5
    )


@pytest.mark.large
def test_exports_of_a_freshly_loaded_model_serve_probabilities(run_dir, tmp_path):
    images = sources.load_fashion_mnist().test_images[:200].astype("float32")
    for export_format, name in (("saved_model", "saved"), ("tflite", "model.tflite")):
        result = _cli("evaluate", f"--run_dir={run_dir}", f"--export={export_format}",
                      f"--export_path={tmp_path / name}")  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
    saved = tf.saved_model.load(str(tmp_path / "saved"))  # kept: serve reads its variables
    served = saved.serve(images).numpy()
    interpreter = tf.lite.Interpreter(str(tmp_path / "model.tflite"))
    (lite,) = interpreter.get_signature_runner("serve")(images=images).values()
    assert served.shape == (200, 10)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(lite, served, atol=1e-4)
    # Computed in float32 from the bfloat16-trained weights: the run's own classes, nearly all.
    model = inference.load_run_model(str(run_dir))
    agree = np.mean(np.argmax(served, 1) == np.argmax(model.predict(images, verbose=0), 1))
    assert agree > 0.95


def _bad(tmp_path, run_dir):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text("{}")
    np.save(tmp_path / "rgb.npy", np.zeros((2, 32, 32, 3), np.uint8))
    np.save(tmp_path / "scaled.npy", np.full((2, 28, 28, 1), -1.0, np.float32))
    (tmp_path / "big").mkdir()
    tf.io.write_file(
        str(tmp_path / "big" / "a.png"), tf.io.encode_png(np.zeros((32, 32, 1), "uint8"))
    )
    return [
        ([], "--run_dir is required"),
        ([f"--run_dir={tmp_path / 'none'}"], f"--run_dir={tmp_path / 'none'}: no such directory"),
        ([f"--run_dir={unfinished}"], "no model.keras (the run has not finished: train it"),
        ([f"--run_dir={tmp_path}"], "no model.keras (the run is not a run directory)"),
        ([f"--run_dir={run_dir}", "--output=p.txt"], "--output=p.txt: must end in .csv or .npy"),
        ([f"--run_dir={run_dir}", "--export=onnx"], "flag --export=onnx: value should be one of"),
        (
            [f"--run_dir={run_dir}", "--export=tflite", "--images=x.npy"],
            "--export writes the model",
        ),
        ([f"--run_dir={run_dir}", "--images=missing.npy"], "--images=missing.npy: no such file"),
        (
            [f"--run_dir={run_dir}", f"--images={tmp_path / 'rgb.npy'}"],
            "rgb.npy: images of shape (2, 32, 32, 3); the model takes (N, 28, 28, 1) raw images",
        ),
        (
            [f"--run_dir={run_dir}", f"--images={tmp_path / 'scaled.npy'}"],
            "scaled.npy: values from -1 to -1; the model takes raw pixel values 0-255",
        ),
        (
            [f"--run_dir={run_dir}", f"--images={tmp_path / 'big'}"],
            "a.png: 32x32 pixels; the model takes 28x28 (resize it first)",
        ),
    ]


@pytest.mark.large
def test_bad_input_gets_one_line_and_exit_code_2(run_dir, tmp_path):
    for args, message in _bad(tmp_path, run_dir):
        result = _cli("evaluate", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (args, lines[-1])
        assert "Traceback" not in result.stderr
    assert not os.path.exists(tmp_path / "p.txt")


@pytest.mark.large
def test_best_weights_are_refused_without_validation(run_dir, tmp_path):
    os.symlink(run_dir / "model.keras", tmp_path / "model.keras")
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(inference.InputError, match="best.weights.h5 does not exist"):
        inference.load_run_model(str(tmp_path), weights="best")


def _scalars(directory):
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(str(directory), size_guidance={"tensors": 0})
    events.Reload()
    scalars = {
        tag: [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
    }
    return {
        tag: [(step, float(value)) for step, value in values]
        for tag, values in scalars.items()
        if all(np.ndim(value) == 0 for _, value in values)
    }, events


@pytest.mark.large
def test_tensorboard_logs_each_split_at_the_training_step(run_dir):
    results = json.loads((run_dir / "results.json").read_text())
    history = {record["step"]: record for record in results["history"]}
    logs = run_dir / "tensorboard"
    for group, prefix in (("validation", "val_"), ("test", "test_")):
        scalars, _ = _scalars(logs / group)
        assert [step for step, _ in scalars["error"]] == [10, 20]
        for step, value in scalars["error"]:
            assert value == pytest.approx(history[step][f"{prefix}error"], rel=1e-6)
    train, _ = _scalars(logs / "train")
    assert [step for step, _ in train["ns3l_loss"]] == [10, 20]
    assert "error" not in train and "val_error" not in train
    # The run's flags as hyperparameters, for the HParams dashboard.
    _, root = _scalars(logs)
    plugins = root.PluginTagToContent("hparams")
    assert plugins and b"ns3l_threshold" in next(iter(plugins.values()))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.full((2, 28, 28), np.nan, np.float32), "x.npy: 1568 NaN or infinite values"),
        (np.array([[[np.inf] * 28] * 28], np.float32), "x.npy: 784 NaN or infinite values"),
        (np.zeros((1, 28, 28), np.complex64), "x.npy: complex64 values, not pixel values"),
    ],
)
def test_non_finite_or_complex_images_are_refused(images, message):
    with pytest.raises(inference.InputError, match=message):
        inference.check_images(images, (28, 28, 1), "x.npy")


def test_images_scaled_to_0_1_get_a_warning_and_pass(caplog):
    images = np.full((3, 28, 28), 0.5, np.float32)
    with caplog.at_level("WARNING"):
        checked = inference.check_images(images, (28, 28, 1), "x.npy")
    assert checked.shape == (3, 28, 28, 1) and checked.dtype == np.float32
    assert "x.npy: every value is at most 0.5: images already scaled to 0-1?" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        inference.check_images(images * 255, (28, 28, 1), "x.npy")
    assert "scaled" not in caplog.text
