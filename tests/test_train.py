"""The CLI: flag validation (exit code 2, one line, nothing written), flagfiles, end to end."""

import dataclasses
import glob
import json
import math
import os
import signal
import sys
import time

import numpy as np
import pytest

from ns3l_tf import cli, experiment, train, training
from ns3l_tf.config import Config, ConfigError, config_from_flags

from . import processes
from .conftest import REPO_ROOT, SMALL_FASHION_MNIST

BAD_FLAGS = [
    (["--ns3l_threshold=0"], "--ns3l_threshold=0.0: must be in the open interval (0, 1)"),
    (["--ns3l_threshold=1.5"], "--ns3l_threshold=1.5: must be in the open interval (0, 1)"),
    (["--ns3l_weight=-0.5"], "--ns3l_weight=-0.5: must be >= 0 (0 turns NS3L off)"),
    (
        ["--num_labeled=60000"],
        "--num_labeled=60000: num_labeled + num_validation (60000 + 5000) must leave unlabeled "
        "images among the 60000 training images of fashion_mnist",
    ),
    (["--num_labeled=2005"], "--num_labeled=2005: must be a positive multiple of the 10 classes"),
    (
        ["--dataset=imagenet"],
        "--dataset=imagenet: unknown dataset; allowed: cifar10, cifar100, fashion_mnist, "
        "stl10, svhn_cropped",
    ),
    (["--extra_unlabeled"], "--extra_unlabeled=True: fashion_mnist has no extra unlabeled split"),
    (["--algorithm=vatt"], "--algorithm=vatt: unknown algorithm 'vatt': components must be one of"),
    (["--model=resnet50"], "--model=resnet50: unknown model; allowed: small_cnn, wrn28_2"),
    (["--eval_every=7"], "--eval_every=7: must divide --train_steps=1200"),
    (["--unlabeled_batch_size=0"], "--unlabeled_batch_size=0: must be > 0 for --algorithm=ns3l"),
    (["--vat_epsilon=0"], "--vat_epsilon=0.0: must be > 0"),
    (["--ema_decay=1"], "--ema_decay=1.0: must be in [0, 1)"),
    (["--pseudo_label_threshold=1.5"], "--pseudo_label_threshold=1.5: must be in [0, 1)"),
    (["--mixmatch_weight=-1"], "--mixmatch_weight=-1.0: must be >= 0"),
    (
        ["--algorithm=mixmatch", "--unlabeled_batch_size=32"],
        "--unlabeled_batch_size=32: must equal --batch_size=64 for mixmatch",
    ),
    (
        ["--algorithm=mixmatch", "--augment=model"],
        "--augment=model: mixmatch draws its augmentations in the input pipeline",
    ),
    (
        ["--augment=pipeline", "--input_noise=0.15"],
        "--input_noise=0.15: Gaussian input noise is drawn inside the model",
    ),
    (["--preprocessing=whiten"], "--preprocessing=whiten: unknown preprocessing; allowed:"),
    (["--num_labeled=abc"], "flag --num_labeled=abc: invalid literal"),
    (["--treshold=0.1"], "Unknown command line flag 'treshold'"),
    (["--flagfile=flags/missing.cfg"], "flags/missing.cfg"),
    (["extra"], "unexpected arguments ['extra']"),
]


@pytest.mark.parametrize("argv, message", BAD_FLAGS)
def test_bad_flags_exit_2_with_one_line_before_any_work(
    argv, message, saved_flags, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(REPO_ROOT)
    output_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        rest = cli.parse_flags(
            ["prog", "--flagfile=flags/fmnist_quick.cfg", f"--output_dir={output_dir}", *argv]
        )
        train.main(rest)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and message in lines[0]
    assert not output_dir.exists()


def test_config_refuses_bad_values_outside_the_cli():
    with pytest.raises(ConfigError, match="--ns3l_weight=-1: must be >= 0"):
        Config(ns3l_weight=-1)


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO_ROOT, "flags", "**", "*.cfg"), recursive=True))
)
def test_every_flagfile_parses_and_validates(path, saved_flags, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    cli.parse_flags(["prog", f"--flagfile={os.path.relpath(path, REPO_ROOT)}"])
    assert isinstance(config_from_flags(), Config)


def test_table5_flagfile_and_command_line_overrides(saved_flags, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    cli.parse_flags(["prog", "--flagfile=flags/fmnist_2000.cfg"])
    config = config_from_flags()
    assert (config.dataset, config.model, config.num_labeled) == (
        "fashion_mnist",
        "small_cnn",
        2000,
    )
    ns3l = config.methods["ns3l"]
    assert (config.algorithm, ns3l.threshold, ns3l.weight) == ("ns3l", 0.03, 1.0)
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", "--flagfile=flags/fmnist_2000.cfg", "--ns3l_weight=0"])
    assert config_from_flags().methods["ns3l"].weight == 0.0  # later flags win
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", "--ns3l_weight=0", "--flagfile=flags/fmnist_2000.cfg"])
    assert config_from_flags().methods["ns3l"].weight == 1.0


def test_default_output_dir_names_the_run():
    config = Config(num_labeled=1000, algorithm="supervised+ns3l", seed=3)
    assert config.run_dir == os.path.join("runs", "fashion_mnist_1000_supervised_ns3l_seed3")


def _run_cli(*argv):
    return processes.run(
        [sys.executable, "-m", "ns3l_tf.train", *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_usage_error_in_a_real_process():
    result = _run_cli("--ns3l_threshold=2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --ns3l_threshold=2.0: must be in the open interval (0, 1)"
    )


@pytest.mark.large
def test_cli_end_to_end(shared_run, tmp_path):
    # The preset's 20 steps (tests/conftest.py SHARED_RUN_FLAGS), evaluated at 10 and 20.
    output_dir, stdout = shared_run(tmp_path / "run")
    assert stdout.strip().splitlines()[-1].startswith("test error ")
    results = json.loads((output_dir / "results.json").read_text())
    assert results["steps"] == 20 and results["seconds"] > 0
    assert (results["num_labeled"], results["num_validation"]) == (2000, 1000)
    assert results["num_unlabeled"] == SMALL_FASHION_MNIST["train"] - 2000 - 1000
    assert [r["step"] for r in results["history"]] == [10, 20]
    best = min(results["history"], key=lambda r: r["val_error"])
    assert results["best_val_test_error"] == best["test_error"]
    assert results["test_error"] == results["history"][-1]["test_error"]
    assert results["final_val_error"] == results["history"][-1]["val_error"]
    for key in ("test_error", "best_val_test_error", "final_val_error"):
        assert 0.0 <= results[key] <= 100.0
    assert results["flags"]["ns3l_threshold"] == 0.03 and results["flags"]["algorithm"] == "ns3l"
    assert {"ns3l_loss", "ns3l_negatives", "test_error"} <= set(results["history"][0])
    assert len(results["labeled_digest"]) == 64
    files = sorted(os.listdir(output_dir))
    assert files == [
        ".lock",
        "checkpoints",
        "config.json",
        "evaluation.json",
        "model.keras",
        "results.json",
        "split.npz",
        "tensorboard",
        "test_best_confusion_matrix.png",
        "test_best_reliability_diagram.png",
        "test_last_confusion_matrix.png",
        "test_last_reliability_diagram.png",
    ]
    evaluation = json.loads((output_dir / "evaluation.json").read_text())
    assert sorted(evaluation) == ["test/best", "test/last"]
    # results.json holds the float32 metric of Keras (84.19000244); the report counts exactly.
    assert evaluation["test/last"]["error"] == pytest.approx(results["test_error"], abs=1e-4)
    assert evaluation["test/best"]["error"] == pytest.approx(
        results["best_val_test_error"], abs=1e-4
    )
    test_images = SMALL_FASHION_MNIST["test"]
    assert evaluation["test/last"]["images"] == test_images
    assert evaluation["test/last"]["ece_bins"] == 15
    assert sum(map(sum, evaluation["test/last"]["confusion_matrix"])) == test_images
    split = np.load(output_dir / "split.npz")
    assert [len(split[k]) for k in ("labeled", "unlabeled", "validation")] == [
        2000,
        results["num_unlabeled"],
        1000,
    ]
    checkpoints = sorted(os.listdir(output_dir / "checkpoints"))
    assert checkpoints == ["best.weights.h5", "state-000000020.npz", "state.json"]
    assert json.loads((output_dir / "config.json").read_text())["train_steps"] == 20
    assert results["data"]["directory"] == os.environ["NS3L_TEST_FASHION_MNIST_DIR"]


@pytest.mark.parametrize(
    "flagfile", ["fmnist_2000_pseudo_label", "fmnist_2000_vat_ns3l", "fmnist_2000_mixmatch_ns3l"]
)
@pytest.mark.large
def test_every_method_family_trains_from_its_flagfile(
    flagfile, small_data, saved_flags, monkeypatch, tmp_path
):
    monkeypatch.chdir(REPO_ROOT)
    cli.parse_flags(["prog", f"--flagfile=flags/{flagfile}.cfg"])
    config = dataclasses.replace(
        config_from_flags(),
        train_steps=4,
        eval_every=2,
        lr_decay_step=0,
        batch_size=16,
        unlabeled_batch_size=16,
        output_dir=str(tmp_path / "run"),
    )
    results = training.run(config, data=small_data, verbose=0)
    assert results["steps"] == 4 and len(results["history"]) == 2
    assert results["median_last20_test_error"] == pytest.approx(
        float(np.median([r["test_error"] for r in results["history"]]))
    )
    term = {"pseudo_label": "pl_loss", "vat_ns3l": "vat_loss", "mixmatch_ns3l": "mixmatch_loss"}
    assert term[flagfile.removeprefix("fmnist_2000_")] in results["history"][0]


def test_learning_rate_decays_after_the_decay_step():
    schedule = experiment.learning_rate_schedule(
        Config(learning_rate=0.1, lr_decay_step=100, train_steps=200, eval_every=100)
    )
    assert float(schedule(100)) == pytest.approx(0.1)
    assert float(schedule(101)) == pytest.approx(0.02)
    assert experiment.learning_rate_schedule(Config(learning_rate=0.1)) == 0.1


def test_fixmatch_cosine_and_nesterov_sgd():
    config = Config(
        optimizer="sgd", learning_rate=0.03, lr_schedule="cosine", train_steps=1000, eval_every=500
    )
    schedule = experiment.learning_rate_schedule(config)
    for step, want in [
        (0, 0.03),
        (500, 0.03 * math.cos(7 * math.pi / 32)),
        (1000, 0.03 * math.cos(7 * math.pi / 16)),  # ≈ 0.2 lr at the end, not 0
        (2000, 0.03 * math.cos(7 * math.pi / 16)),
    ]:
        assert float(schedule(step)) == pytest.approx(want, rel=1e-6), step
    optimizer = experiment.build_optimizer(config)
    assert (type(optimizer).__name__, optimizer.momentum, optimizer.nesterov) == ("SGD", 0.9, True)
    restored = type(schedule).from_config(schedule.get_config())
    assert float(restored(500)) == pytest.approx(float(schedule(500)))


def test_sigterm_outside_the_loop_exits_143_and_ctrl_c_130(capsys):
    previous = signal.getsignal(signal.SIGTERM)
    cli.raise_keyboard_interrupt_on_sigterm()
    try:
        with pytest.raises(KeyboardInterrupt) as raised:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises at the latest here
    finally:
        signal.signal(signal.SIGTERM, previous)
    with pytest.raises(SystemExit) as exit_info:
        cli.interrupted("interrupted before training started", raised.value)
    assert exit_info.value.code == 128 + signal.SIGTERM
    with pytest.raises(SystemExit) as exit_info:
        cli.interrupted("interrupted before training started", KeyboardInterrupt())
    assert exit_info.value.code == 128 + signal.SIGINT
    assert capsys.readouterr().err.splitlines() == ["interrupted before training started"] * 2


@pytest.mark.parametrize("best_is_last", [True, False])
def test_the_best_weights_are_predicted_again_only_where_they_differ(
    best_is_last, tmp_path, monkeypatch
):
    import keras

    from ns3l_tf import inference

    model = keras.Sequential(
        [keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    best_path = tmp_path / inference.BEST_WEIGHTS_FILE
    best_path.parent.mkdir()
    model.save_weights(best_path)
    if not best_is_last:  # trained on after the best evaluation
        model.layers[-1].bias.assign([5.0, 0.0, 0.0])
    images = np.arange(16, dtype="float32").reshape(4, 2, 2, 1)
    data = dataclasses.make_dataclass("Data", ["test_images", "test_labels"])(
        images, np.array([0, 1, 2, 0])
    )
    predicted = []
    real_predict = inference.predict_probabilities

    def predict(model, images):
        predicted.append(len(images))
        return real_predict(model, images)

    monkeypatch.setattr(inference, "predict_probabilities", predict)
    training._write_evaluations(str(tmp_path), model, data, 7, several_processes=False)
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert predicted == ([4] if best_is_last else [4, 4])
    same = evaluation["test/best"]["nll"] == evaluation["test/last"]["nll"]
    assert same == best_is_last
