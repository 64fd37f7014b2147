"""KerasTuner search of the methods' settings (T and λ₁ by default): a real 2-trial search,
resuming, outputs, the space from the registry and `--search`, and bad flags."""

import json
import os

import keras_tuner as kt
import numpy as np
import pytest

from ns3l_tf import cli, tune, tuning
from ns3l_tf.config import Config, SearchSpace, config_from_flags, search_space
from ns3l_tf.settings import ConfigError, SearchRange

from .conftest import REPO_ROOT


def _config(**changes):
    settings = dict(
        algorithm="ns3l",
        train_steps=4,
        eval_every=2,
        batch_size=16,
        unlabeled_batch_size=16,
        seed=3,
    )
    return Config(**{**settings, **changes})


@pytest.mark.large
def test_two_trial_search_writes_its_table_and_best_flagfile(
    small_data, tmp_path, saved_flags, monkeypatch
):
    fits = []
    original_fit = tuning.SettingsHyperModel.fit

    def counting_fit(self, hp, model, *args, **kwargs):
        fits.append((float(model.ns3l_threshold.numpy()), float(model.ns3l_weight.numpy())))
        return original_fit(self, hp, model, *args, **kwargs)

    monkeypatch.setattr(tuning.SettingsHyperModel, "fit", counting_fit)
    directory = tmp_path / "search"
    space = SearchSpace(
        {
            "ns3l_threshold": SearchRange(0.1, 1.0, per_class=True),
            "ns3l_weight": SearchRange(0.5, 2),
        }
    )
    results = tuning.run(_config(), small_data, "random", 2, str(directory), space)

    trials = results["trials"]
    assert len(trials) == 2 == len(fits)
    # Each trial trained the model with its own T and λ₁, inside the search space.
    tried = sorted((t["ns3l_threshold"], t["ns3l_weight"]) for t in trials)
    np.testing.assert_allclose(tried, sorted(fits), rtol=1e-6)
    for trial in trials:
        assert 0.01 <= trial["ns3l_threshold"] <= 0.1 and 0.5 <= trial["ns3l_weight"] <= 2.0
        assert 0.0 <= trial["val_error"] <= 100.0
    assert trials[0]["val_error"] <= trials[1]["val_error"]  # best first
    assert results["best"]["ns3l_threshold"] == trials[0]["ns3l_threshold"]
    assert 0.0 <= results["test_error_of_best"] <= 100.0

    saved = json.loads((directory / "trials.json").read_text())
    assert saved["objective"] == "val_error" and len(saved["trials"]) == 2
    table = (directory / "trials.md").read_text()
    assert f"| {trials[0]['val_error']:.2f} |" in table and "Test error of the best" in table

    # One TensorBoard log directory per trial, with the trial's hyperparameters (HParams).
    from tensorboard.backend.event_processing import event_accumulator

    logged = sorted(os.listdir(directory / "tensorboard"))
    assert logged == sorted(t["trial"] for t in trials)
    for trial in trials:
        logs = directory / "tensorboard" / trial["trial"] / "execution0"
        events = event_accumulator.EventAccumulator(str(logs))
        events.Reload()
        content = b"".join(events.PluginTagToContent("hparams").values())
        assert b"threshold_times_classes" in content and b"ns3l_weight" in content
        assert os.listdir(logs / "validation")

    # best.cfg is a complete flagfile of the best run.
    monkeypatch.chdir(REPO_ROOT)
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", f"--flagfile={directory / 'best.cfg'}"])
    best = config_from_flags()
    assert best.methods["ns3l"].threshold == pytest.approx(trials[0]["ns3l_threshold"])
    assert best.methods["ns3l"].weight == pytest.approx(trials[0]["ns3l_weight"])
    assert (best.train_steps, best.seed, best.algorithm) == (4, 3, "ns3l")

    # Resuming the finished search trains nothing; asking for a third trial trains one.
    tuning.run(_config(), small_data, "random", 2, str(directory), space)
    assert len(fits) == 2
    again = tuning.run(_config(), small_data, "random", 3, str(directory), space)
    assert len(fits) == 3 and len(again["trials"]) == 3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tuner=grid"], "--tuner=grid: unknown; allowed: random, bayesian, hyperband"),
        (["--max_trials=0"], "--max_trials=0: must be >= 1"),
        (["--algorithm=vat"], "--algorithm=vat: its methods declare no searchable setting"),
        (["--search=ns3l_weight=2:1"], "--search=ns3l_weight=2:1: need ns3l_weight=low:high"),
        (["--search=vat_epsilon=1:3"], "--search=vat_epsilon=1:3: vat_epsilon is no float"),
        (["--search=ns3l_views"], "--search=ns3l_views: ns3l_views is no float setting"),
        (["--num_validation=0"], "--num_validation=0: tuning needs a validation split"),
    ],
)
def test_bad_tune_flags_exit_2_with_one_line(argv, message, saved_flags, capsys, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    with pytest.raises(SystemExit) as exit_info:
        rest = cli.parse_flags(["prog", "--flagfile=flags/fmnist_quick.cfg", *argv])
        tune.main(rest)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), lines


def test_a_tune_dir_refuses_other_trial_defining_flags(tmp_path, saved_flags, capsys, monkeypatch):
    """Checked before any data loads: a search made with one tuner is not resumed with
    another unless `--overwrite`; `--max_trials` may grow."""
    from ns3l_tf.config import search_flags
    from ns3l_tf.run_dir import RunDirectory

    monkeypatch.chdir(REPO_ROOT)
    preset = ["prog", "--flagfile=flags/fmnist_quick.cfg", f"--tune_dir={tmp_path}"]
    cli.parse_flags([*preset, "--tuner=random", "--max_trials=1"])
    space = search_space(config_from_flags())  # the default ranges
    RunDirectory(str(tmp_path), flag="tune_dir").open(
        search_flags(config_from_flags(), "random", space)
    ).close()

    saved_flags.unparse_flags()
    with pytest.raises(SystemExit) as exit_info:
        tune.main(cli.parse_flags([*preset, "--tuner=bayesian", "--max_trials=5"]))
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: --tune_dir=") and "other flags (--tuner=random→bayesian)" in line
    assert "--overwrite" in line


def test_the_space_comes_from_the_named_methods_declarations():
    ns3l = search_space(Config(algorithm="fixmatch+ns3l"))
    assert ns3l.ranges == {
        "ns3l_threshold": SearchRange(0.05, 2.0, per_class=True),
        "ns3l_weight": SearchRange(0.1, 10.0),
    }
    assert ns3l.hyperparameter_name("ns3l_threshold") == "ns3l_threshold_times_classes"
    assert ns3l.value("ns3l_threshold", 0.4, 10) == pytest.approx(0.04)  # T·K = 0.4
    assert ns3l.value("ns3l_threshold", 2.0, 2) == 0.999  # a probability stays below 1
    assert search_space(Config(algorithm="vat")).ranges == {}
    chosen = search_space(
        Config(algorithm="fixmatch+ns3l"), ["ns3l_threshold", "fixmatch_threshold=0.8:0.98"]
    )
    assert chosen.ranges == {
        "ns3l_threshold": SearchRange(0.05, 2.0, per_class=True),
        "fixmatch_threshold": SearchRange(0.8, 0.98),
    }
    with pytest.raises(ConfigError, match="fixmatch_threshold declares no range"):
        search_space(Config(algorithm="fixmatch"), ["fixmatch_threshold"])


def test_a_trial_config_carries_each_draw():
    space = search_space(
        Config(algorithm="fixmatch+ns3l"), ["ns3l_threshold", "fixmatch_weight=0.5:2"]
    )
    model = tuning.SettingsHyperModel(Config(algorithm="fixmatch+ns3l"), None, space)
    hp = kt.HyperParameters()
    hp.Fixed("ns3l_threshold_times_classes", 0.5)
    hp.Fixed("fixmatch_weight", 1.5)
    config = model.trial_config(hp)
    assert config.methods["ns3l"].threshold == pytest.approx(0.05)
    assert config.methods["fixmatch"].weight == pytest.approx(1.5)
