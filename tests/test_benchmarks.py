"""The Table 5 benchmark: its rows are valid runs, and its report says what the runs said."""

import json
import os
import sys

import numpy as np
import pytest

import ns3l_tf.train  # noqa: F401 (defines the flags)
from ns3l_tf import cli
from ns3l_tf.config import config_from_flags

from . import processes
from .conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
import augment_placement  # noqa: E402
import backends  # noqa: E402
import budget_ablation  # noqa: E402
import common  # noqa: E402
import fixmatch_ns3l  # noqa: E402
import fmnist_2000  # noqa: E402
import frozen_statistics_cost  # noqa: E402
import step_time  # noqa: E402
import table5  # noqa: E402

EXPECTED_NEGATIVES = {
    "supervised": ("threshold", 0.0, 1),
    "uniform1": ("uniform", 1.0, 1),
    "uniform3": ("uniform", 1.0, 3),
    "nn_exclude": ("nn_exclude", 1.0, 1),
    "nn_exclude4": ("nn_exclude4", 1.0, 1),
    "nn_furthest": ("nn_furthest", 1.0, 1),
    "nn_exclude4_classes": ("nn_exclude4_classes", 1.0, 1),
    "nn_furthest_class": ("nn_furthest_class", 1.0, 1),
    "threshold_003": ("threshold", 1.0, 1),
    "threshold_005": ("threshold", 1.0, 1),
    "oracle1": ("oracle", 1.0, 1),
    "oracle3": ("oracle", 1.0, 3),
}


@pytest.mark.parametrize("row", list(table5.ROWS))
def test_every_table5_row_is_a_valid_run_of_the_papers_setting(row, saved_flags, monkeypatch):
    calls = []
    monkeypatch.setattr(
        common, "run_cli", lambda flags, output_dir, train: calls.append(flags) or {}
    )
    common.table5_run(row, 2, 12000, 4, "mixed_bfloat16", "/runs")
    monkeypatch.chdir(REPO_ROOT)
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", *calls[0]])
    config = config_from_flags()
    ns3l = config.methods["ns3l"]
    assert (ns3l.selector, ns3l.weight, ns3l.num_negatives) == EXPECTED_NEGATIVES[row]
    assert (config.dataset, config.model, config.num_labeled) == (
        "fashion_mnist",
        "small_cnn",
        2000,
    )
    assert config.validation_size == 5000 and config.seed == 4
    assert (config.train_steps, config.lr_decay_step, config.eval_every) == (12000, 8000, 2000)
    assert config.precision == "mixed_bfloat16" and config.augments_in_model
    assert ns3l.views == 2
    assert config.resolved_methods["ns3l"].threshold == {"threshold_005": 0.05}.get(row, 0.03)


def test_budgets_decay_after_two_thirds_and_evaluate_about_six_times():
    assert common.budget_flags(1560) == [
        "--train_steps=1560",
        "--lr_decay_step=1040",
        "--eval_every=260",
        "--checkpoint_every=260",
    ]
    assert common.budget_flags(5000)[1:] == [
        "--lr_decay_step=3333",
        "--eval_every=625",
        "--checkpoint_every=125",
    ]
    assert common.budget_flags(12000)[2:] == ["--eval_every=2000", "--checkpoint_every=500"]
    assert common.budget_flags(4)[2] == "--eval_every=1"


def _fake_results(
    test_error, val_error=20.0, negatives=None, negative_error=None, best_val_test_error=None
):
    record = {"step": 1200, "test_error": test_error, "val_error": val_error}
    if negatives is not None:
        record.update(ns3l_negatives=negatives, ns3l_negative_error=negative_error)
    return {
        "test_error": test_error,
        "final_val_error": val_error,
        "best_val_test_error": test_error if best_val_test_error is None else best_val_test_error,
        "seconds": 100.0,
        "preprocessing_seconds": 2.5 if negatives == 1.0 else 0.0,
        "flags": {"lr_decay_step": 800},
        "history": [record],
    }


def test_report_gives_mean_and_std_beside_the_paper(tmp_path):
    runs = {
        "supervised": {
            1: _fake_results(17.0, best_val_test_error=16.0),
            2: _fake_results(18.0),
            3: _fake_results(19.0),
        },
        "nn_furthest": {
            1: _fake_results(16.0, 19.0, 1.0, 5.0, best_val_test_error=17.0),
            2: _fake_results(16.5, 18.0, 1.0, 4.0, best_val_test_error=17.0),
        },
    }
    report = table5.build_report(runs, 1200, 2, "mixed_bfloat16", 60.0)
    assert report["rows"]["supervised"]["test_error"] == pytest.approx((18.0, 1.0))
    assert "ns3l_negatives" not in report["rows"]["supervised"]
    nn = report["rows"]["nn_furthest"]
    assert nn["ns3l_negative_error"] == pytest.approx((4.5, np.sqrt(0.5)))
    # Paired by seed over the seeds both rows have: 16.0 - 17.0 = -1.0, 16.5 - 18.0 = -1.5.
    assert nn["paired_seeds"] == [1, 2]
    assert nn["paired_difference_to_supervised"] == pytest.approx((-1.25, np.sqrt(0.125)))
    assert nn["paired_val_difference_to_supervised"] == pytest.approx((-1.5, np.sqrt(0.5)))
    # At each run's best validation: 17.0 - 16.0 = +1.0, 17.0 - 18.0 = -1.0.
    assert nn["paired_best_val_difference_to_supervised"] == pytest.approx((0.0, np.sqrt(2.0)))
    table5.write_report(report, str(tmp_path / "table5"))
    table = (tmp_path / "table5.md").read_text().splitlines()
    assert "| Supervised | 3 | 18.00 ± 1.00 | 17.25 ± 0.22 | – | – | – | – | 100 |" in table
    assert (
        "| Furthest class with NN - 1 | 2 | 16.25 ± 0.35 | 16.76 ± 0.15 | -1.25 ± 0.35 | "
        "+0.00 ± 1.41 | 1.00 ± 0.00 | 4.50 ± 0.71 | 100 (+2.5 preprocessing) |"
    ) in table
    assert "all 5 runs took 0.1 h of training" in table[2]
    assert (tmp_path / "table5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["table5.json", "table5.md", "table5.png"]


def test_table5_plans_fewer_seeds_for_the_few_seed_rows_and_says_so_in_its_header():
    planned = table5.plan_seeds(
        ["supervised", "nn_furthest", "oracle3"], [1, 2, 3, 4, 5], ["nn_furthest"], 3
    )
    assert planned == {
        "supervised": [1, 2, 3, 4, 5],
        "nn_furthest": [1, 2, 3],
        "oracle3": [1, 2, 3, 4, 5],
    }
    assert table5.plan_seeds(["nn_furthest"], [2, 3], ["nn_furthest"], 3) == {"nn_furthest": [2, 3]}
    assert [table5.seeds_text(s) for s in ([1, 2, 3], [2, 5], [4])] == ["1–3", "2, 5", "4"]
    runs = {
        "supervised": {1: _fake_results(17.0), 2: _fake_results(18.0), 3: _fake_results(19.0)},
        "nn_furthest": {1: _fake_results(16.0, 19.0, 1.0, 5.0)},
        "oracle3": {1: _fake_results(15.0, 19.0, 3.0, 0.0)},
    }
    report = table5.build_report(runs, 1200, 2, "mixed_bfloat16", 60.0, planned)
    assert report["rows"]["nn_furthest"]["planned_seeds"] == [1, 2, 3]
    table = table5.markdown(report).splitlines()
    assert (
        "Seeds planned (`--seeds`, `--few_seed_rows`, `--few_seeds`): 1–5 for Supervised, "
        "Oracle - 3; 1–3 for Furthest class with NN - 1. "
    ) in table[2]
    assert table[8].startswith("| Supervised | 3 of 5 | 18.00 ± 1.00 |")
    assert table[9].startswith("| Furthest class with NN - 1 | 1 of 3 | 16.00 ± 0.00 |")
    assert table[10].startswith("| Oracle - 3 | 1 of 5 | 15.00 ± 0.00 |")


def test_budget_ablation_pairs_each_form_with_supervised():
    runs = {
        (1560, "supervised", 1): {1: _fake_results(17.0, 18.0), 2: _fake_results(18.0, 19.0)},
        (1560, "oracle3", 2): {1: _fake_results(15.0, 16.5, 3.0, 0.0)},
    }
    forms = budget_ablation.summarize(runs)["1560"]
    assert forms["oracle3_views2"]["label"] == "Oracle - 3, 2 views"
    assert forms["oracle3_views2"]["test_minus_supervised"] == pytest.approx((-2.0, 0.0))
    assert forms["oracle3_views2"]["val_minus_supervised"] == pytest.approx((-1.5, 0.0))
    assert forms["supervised"]["test_error"] == pytest.approx((17.5, np.sqrt(0.5)))


def test_validation_curve_averages_the_evaluations_every_run_has():
    runs = [
        {"history": [{"step": 500, "val_error": 20.0}, {"step": 1000, "val_error": 16.0}]},
        {
            "history": [
                {"step": 500, "val_error": 22.0},
                {"step": 1000, "val_error": 18.0},
                {"step": 1500, "val_error": 15.0},
            ]
        },
    ]
    curve = budget_ablation.validation_curve(runs)
    assert curve["steps"] == [500, 1000]
    means, stds = zip(*curve["val_error"], strict=True)
    assert means == pytest.approx((21.0, 17.0)) and stds == pytest.approx((np.sqrt(2.0),) * 2)


def _ablation_with_validation_errors(val_errors):
    """`summarize` of runs with the given final validation errors, `{(budget, row, views):
    {seed: val_error}}`; every test error is 15.0 (the choice must not read it)."""
    runs = {
        key: {seed: _fake_results(15.0, val, 3.0, 0.0) for seed, val in by_seed.items()}
        for key, by_seed in val_errors.items()
    }
    return budget_ablation.summarize(runs)


def test_the_ablation_chooses_table5s_budget_and_views_on_validation_only():
    sup = {(b, "supervised", 1): {1: 16.0, 2: 17.0} for b in (1560, 12000)}
    budgets = _ablation_with_validation_errors(
        {
            **sup,
            # 1,560 steps, one view: Threshold +0.5, Oracle -1.0 -> mean -0.25.
            (1560, "threshold_003", 1): {1: 16.5, 2: 17.5},
            (1560, "oracle3", 1): {1: 15.0, 2: 16.0},
            # two views: Threshold -0.5, Oracle -1.5 -> mean -1.0.
            (1560, "threshold_003", 2): {1: 15.5, 2: 16.5},
            (1560, "oracle3", 2): {1: 14.5, 2: 15.5},
            # 12,000 steps, one view: (-1.0 + -2.0) / 2 = -1.5, the lowest, on seed 1 only.
            (12000, "threshold_003", 1): {1: 15.0},
            (12000, "oracle3", 1): {1: 14.0, 2: 15.0},
            (12000, "threshold_003", 2): {1: 16.0, 2: 17.0},  # no Oracle row: not scored
        }
    )
    choice = budget_ablation.choose_on_validation(budgets, [1560, 12000], num_seeds=2)
    assert [(s["steps"], s["views"], s["seeds"]) for s in choice["scores"]] == [
        (1560, 1, 2),
        (1560, 2, 2),
        (12000, 1, 1),
    ]
    assert [s["val_minus_supervised"] for s in choice["scores"]] == pytest.approx(
        [-0.25, -1.0, -1.5]
    )
    assert (choice["steps"], choice["views"], choice["final"]) == (12000, 1, False)
    assert budget_ablation.choose_on_validation(budgets, [1560], num_seeds=2)["final"]
    assert budget_ablation.choose_on_validation({"1560": {}}, [1560], 2) is None

    tie = _ablation_with_validation_errors(
        {(b, row, v): {1: 16.0} for b in (1560, 5000) for row, v in budget_ablation.FORMS}
    )
    assert budget_ablation.choose_on_validation(tie, [1560, 5000], 1)["steps"] == 1560
    assert budget_ablation.choose_on_validation(tie, [1560, 5000], 1)["views"] == 1
    markdown = budget_ablation.markdown(
        {
            "precision": "float32",
            "machine": "m",
            "num_runs": 1,
            "training_seconds_all_runs": 1,
            "budgets": budgets,
            "choice": choice,
        }
    )
    assert "Chosen (provisional: the ablation is not complete): **12,000 steps, 1 view**" in (
        markdown
    )
    assert "| 1,560 | 2 | -1.00 | 2 |" in markdown.splitlines()


def _placement_runs():
    """Validation errors (test = validation + 1) by placement, row and seed at 1,560 steps."""
    val_errors = {
        "model": {
            "supervised": {1: 16.0, 2: 17.0, 3: 18.0},
            "threshold_003": {1: 15.5, 2: 16.0, 3: 9.0},
        },
        "pipeline": {"supervised": {1: 16.2, 2: 17.4}, "threshold_003": {1: 16.2, 2: 17.0}},
    }
    return {
        placement: {
            (1560, row, 1): {
                seed: _fake_results(val + 1.0, val, *(() if row == "supervised" else (8.0, 2.0)))
                for seed, val in by_seed.items()
            }
            for row, by_seed in rows.items()
        }
        for placement, rows in val_errors.items()
    }


def test_augment_placement_pairs_each_placement_then_the_placements_by_seed():
    report = augment_placement.compare(_placement_runs())
    model = report["placements"]["model"]["1560"]["threshold_003_views1"]
    assert model["val_minus_supervised"] == pytest.approx(
        (-3.5, np.std([-0.5, -1.0, -9.0], ddof=1))
    )
    # In-network -0.5, -1.0 and pipeline 0.0, -0.4 on seeds 1 and 2 (seed 3 has no pipeline
    # runs): changes -0.5 and -0.6.
    change = report["change"]["1560"]["threshold_003_views1"]
    assert change["seeds"] == [1, 2]
    assert change["val"] == pytest.approx((-0.55, np.sqrt(0.005)))
    assert change["test"] == pytest.approx(change["val"])
    markdown = augment_placement.markdown({"precision": "float32", "machine": "m", **report})
    lines = markdown.splitlines()
    assert (
        "| Threshold T = 0.03, 1 view | in the input pipeline, once per batch | 2 | 17.60 ± 0.57 | "
        "16.60 ± 0.57 | -0.20 ± 0.28 | -0.20 ± 0.28 | 2.00 ± 0.00 |"
    ) in lines
    assert "| Threshold T = 0.03, 1 view | 2 | -0.55 ± 0.07 | -0.55 ± 0.07 |" in lines


def test_augment_placement_reports_finished_runs_only(tmp_path):
    command = [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "augment_placement.py")]
    command += [f"--runs_root={tmp_path / 'runs'}", f"--results_dir={tmp_path}", "--report_only"]
    command += ["--budgets=1560", "--seeds=1,2"]
    empty = processes.run(command, capture_output=True, text=True)
    assert empty.returncode == 1
    assert empty.stderr.strip().splitlines()[-1] == (
        f"error: no finished run under --runs_root={tmp_path / 'runs'}; nothing to report"
    )
    directories = {"model": "table5", "pipeline": "augment_pipeline"}
    for placement, by_form in _placement_runs().items():
        for (steps, row, views), by_seed in by_form.items():
            name = row if row == "supervised" else f"{row}_views{views}"
            for seed, results in by_seed.items():
                run = tmp_path / "runs" / directories[placement] / f"{name}_{steps}steps_seed{seed}"
                run.mkdir(parents=True)
                (run / "results.json").write_text(json.dumps(results))
    finished = processes.run(command, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    report = json.loads((tmp_path / "augment_placement.json").read_text())
    assert report["change"]["1560"]["threshold_003_views1"]["val"] == pytest.approx(
        [-0.55, np.sqrt(0.005)]
    )
    assert sorted(os.listdir(tmp_path)) == [
        "augment_placement.json",
        "augment_placement.md",
        "runs",
    ]


def test_table5_takes_its_budget_and_views_from_a_final_ablation_choice(tmp_path):
    ablation = tmp_path / "budget_ablation.json"
    choice = {"steps": 12000, "views": 2, "final": True}
    ablation.write_text(json.dumps({"choice": choice}))
    assert table5.budget_and_views(None, None, str(ablation)) == (12000, 2)
    assert table5.budget_and_views(5000, None, str(ablation)) == (5000, 2)
    assert table5.budget_and_views(5000, 1, str(tmp_path / "absent.json")) == (5000, 1)

    ablation.write_text(json.dumps({"choice": {**choice, "final": False}}))
    result = processes.run(
        [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "table5.py")]
        + [f"--ablation={ablation}", f"--runs_dir={tmp_path / 'runs'}", "--report_only"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --ablation={ablation} has no final choice of budget and views yet (finish "
        "benchmarks/budget_ablation.py); pass --steps and --views"
    ]
    with pytest.raises(ValueError, match="absent.json: cannot read it"):
        table5.budget_and_views(None, 2, str(tmp_path / "absent.json"))


def test_precision_rows_are_paired_by_seed_and_skip_unmatched_seeds():
    def runs(errors):
        return [{"flags": {"seed": s}, "test_error": e} for s, e in errors.items()]

    float32 = runs({1: 15.0, 2: 14.0, 3: 16.0})
    bfloat16 = runs({1: 15.5, 3: 15.0, 4: 9.0})
    # Seeds 1 and 3: +0.5 and -1.0 -> mean -0.25, sample std 1.5 / sqrt(2).
    assert fmnist_2000.paired_by_seed(bfloat16, float32) == pytest.approx((-0.25, 1.5 / np.sqrt(2)))


def test_budget_ablation_chart_draws_each_form_alike_in_every_panel():
    runs = {
        (budget, row, views): {1: _fake_results(17.0 - offset, 16.0 - offset, 3.0, 0.0)}
        for budget in (1560, 5000)
        for offset, (row, views) in enumerate(budget_ablation.FORMS)
    }
    figure = budget_ablation.figure_of({"budgets": budget_ablation.summarize(runs)})
    looks = [  # errorbar containers: (data line, caps, bars), labelled by form
        {
            bars.get_label(): (bars.lines[0].get_color(), bars.lines[0].get_linestyle())
            for bars in axes.containers
        }
        for axes in figure.axes
    ]
    assert sorted(looks[0]) == sorted(
        budget_ablation.form_label(r, v) for r, v in budget_ablation.FORMS
    )
    assert len(looks) == 5  # three panels against the budget, one curve panel per budget
    for panel in looks[1:3]:  # the paired panels: every form but supervised, drawn alike
        assert panel == {k: v for k, v in looks[0].items() if k != "Supervised"}
    for panel in looks[3:]:  # the validation curves: every form, drawn alike
        assert panel == looks[0]
    oracle = [c for c in figure.axes[4].containers if c.get_label() == "Oracle - 3, 2 views"][0]
    assert list(oracle.lines[0].get_xdata()) == [1200]
    assert list(oracle.lines[0].get_ydata()) == [16.0 - budget_ablation.FORMS.index(("oracle3", 2))]
    assert looks[0]["Oracle - 3, 1 view"][0] == looks[0]["Oracle - 3, 2 views"][0]
    assert looks[0]["Oracle - 3, 1 view"][1] == "--" and looks[0]["Oracle - 3, 2 views"][1] == "-"
    assert looks[0]["Oracle - 3, 2 views"][0] != looks[0]["Threshold T = 0.03, 2 views"][0]


def test_report_only_reports_the_finished_runs_and_starts_none(tmp_path):
    runs = tmp_path / "runs"
    for name, test_error in (("supervised", 17.0), ("oracle3_views2", 15.5)):
        run = runs / f"{name}_1560steps_seed1"
        run.mkdir(parents=True)
        results = _fake_results(test_error, 16.0, *((3.0, 0.0) if "oracle" in name else ()))
        (run / "results.json").write_text(json.dumps(results))
    argv = ["--report_only", "--budgets=1560", "--seeds=1,2", f"--runs_dir={runs}"]
    _script(
        "budget_ablation.py", *argv, "--forms=supervised:1,oracle3:2", f"--results_dir={tmp_path}"
    )
    forms = json.loads((tmp_path / "budget_ablation.json").read_text())["budgets"]["1560"]
    assert forms["supervised"]["seeds"] == [1] and forms["oracle3_views2"]["seeds"] == [1]
    assert forms["oracle3_views2"]["test_minus_supervised"] == pytest.approx((-1.5, 0.0))
    assert sorted(os.listdir(runs)) == [
        "oracle3_views2_1560steps_seed1",
        "supervised_1560steps_seed1",
    ]

    empty = processes.run(
        [sys.executable, os.path.join(REPO_ROOT, "benchmarks", "table5.py"), "--report_only"]
        + [f"--runs_dir={tmp_path / 'none'}", f"--results_dir={tmp_path}"]
        + ["--steps=1560", "--views=2"],
        capture_output=True,
        text=True,
    )
    assert empty.returncode == 1
    assert empty.stderr.strip().splitlines()[-1] == (
        f"error: no finished run under --runs_dir={tmp_path / 'none'}; nothing to report"
    )
    assert not (tmp_path / "table5.json").exists()


def _script(name, *argv, timeout=600):
    result = processes.run(
        [sys.executable, os.path.join(REPO_ROOT, "benchmarks", name), *argv],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_readmes_headline_is_the_ten_seed_reports():
    """The README's Table 5 figures are those of `table5_ten_seeds.json`, as it rounds them."""
    with open(os.path.join(REPO_ROOT, "benchmarks", "results", "table5_ten_seeds.json")) as f:
        rows = json.load(f)["rows"]
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as f:
        readme = " ".join(f.read().replace("**", "").split())  # the words, not their emphasis
    for row in ("oracle3", "threshold_003"):
        test = rows[row]["paired_test_to_supervised"]
        assert test["n"] == 10
        low, high = test["ci95"]
        assert f"by {abs(test['mean']):.2f} points" in readme
        assert f"[−{abs(low):.2f}, −{abs(high):.2f}]" in readme
    threshold = rows["threshold_003"]["paired_test_to_supervised"]
    assert f"better on {threshold['negative']} of 10, sign test p = " in readme
    assert f"p = {threshold['sign_test_p']:.2f}" in readme


@pytest.mark.large
def test_step_time_times_a_row_of_each_kind(tmp_path):
    # Supervised, a base with a second forward pass (VAT), MixMatch's views and mixing, and
    # FlexMatch's strong views and per-image state, each with NS3L: the kinds of step the
    # script times (every method's step itself is checked in tests/methods).
    algorithms = ["supervised", "vat+ns3l", "mixmatch+ns3l", "flexmatch+ns3l"]
    _script(
        "step_time.py",
        "--models=small_cnn",
        f"--algorithms={','.join(algorithms)}",
        "--precisions=float32",
        "--steps=1",
        "--batch_size=4",
        f"--results_dir={tmp_path}",
    )
    report = json.loads((tmp_path / "step_time.json").read_text())
    assert set(algorithms) <= set(step_time.ALGORITHMS)
    assert [r["algorithm"] for r in report["rows"]] == algorithms
    for row in report["rows"]:
        assert row["seconds_per_step"] > 0 and row["gflops_per_step"] > 0
    supervised = report["rows"][0]["gflops_per_step"]
    # A supervised step is one forward and backward pass of 4 images: 3 x 36.6 MFLOP each.
    assert supervised == pytest.approx(4 * 3 * 0.0366, rel=0.05)
    assert report["matmul_roof_gflops"]["float32"] > 0


def test_frozen_statistics_cost_pairs_each_step_with_its_unrestored_twin():
    rows = [
        {"backbone": "wrn28_2", "algorithm": "vat+ns3l", "restore": True, "seconds_per_step": 1.1},
        {"backbone": "wrn28_2", "algorithm": "vat+ns3l", "restore": False, "seconds_per_step": 1.0},
        {"backbone": "wrn28_2", "algorithm": "ns3l", "restore": True, "seconds_per_step": 0.5},
    ]
    assert frozen_statistics_cost.overheads(rows) == [
        {"backbone": "wrn28_2", "algorithm": "vat+ns3l", "ratio": 1.1, "ms_per_step": 100.0}
    ]


@pytest.mark.large
def test_frozen_statistics_cost_runs(tmp_path):
    _script(
        "frozen_statistics_cost.py",
        "--backbones=small_cnn",
        "--algorithms=ns3l/2views",
        "--steps=1",
        "--batch_size=4",
        f"--results_dir={tmp_path}",
    )
    report = json.loads((tmp_path / "frozen_statistics_cost.json").read_text())
    assert [(r["restore"], r["algorithm"]) for r in report["rows"]] == [
        (True, "ns3l/2views"),
        (False, "ns3l/2views"),
    ]
    # The small CNN's 4 BatchNorms keep a moving mean and variance each: 2 × (32+32+64+64).
    assert report["rows"][0]["statistics_weights"] == 8
    assert report["rows"][0]["statistics_values"] == 384
    assert len(report["overheads"]) == 1 and report["overheads"][0]["ratio"] > 0


@pytest.mark.large
def test_input_pipeline_runs(tmp_path):
    _script(
        "input_pipeline.py",
        "--batches=3",
        "--step_batches=1",
        "--batch_size=16",
        f"--results_dir={tmp_path}",
    )
    report = json.loads((tmp_path / "input_pipeline.json").read_text())
    assert report["pipeline_images_per_second"] > 0 and report["step_images_per_second"] > 0


@pytest.mark.large
def test_table5_and_the_ablation_run_and_share_runs(tmp_path):
    tiny = ["--precision=float32", "--seeds=1", f"--runs_dir={tmp_path / 'runs'}"]
    tiny += [f"--results_dir={tmp_path}", "--extra_flags=--eval_every=4"]
    _script("budget_ablation.py", "--budgets=4", "--forms=supervised:1,oracle3:2", *tiny)
    ablation = json.loads((tmp_path / "budget_ablation.json").read_text())
    assert set(ablation["budgets"]["4"]) == {"supervised", "oracle3_views2"}
    runs = sorted(os.listdir(tmp_path / "runs"))
    assert runs == ["oracle3_views2_4steps_seed1", "supervised_4steps_seed1"]
    _script("table5.py", "--steps=4", "--views=2", "--rows=supervised,oracle3,nn_exclude", *tiny)
    table = json.loads((tmp_path / "table5.json").read_text())
    assert set(table["rows"]) == {"supervised", "oracle3", "nn_exclude"}
    assert table["rows"]["nn_exclude"]["ns3l_negatives"][0] == pytest.approx(1.0)
    assert table["rows"]["nn_exclude"]["planned_seeds"] == [1]
    assert len(os.listdir(tmp_path / "runs")) == 3  # supervised and oracle3 were reused
    assert (tmp_path / "table5.png").exists() and (tmp_path / "budget_ablation.png").exists()


@pytest.mark.large
def test_fmnist_2000_benchmark_runs(tmp_path):
    _script(
        "fmnist_2000.py",
        "--rows=supervised",
        "--seeds=1",
        "--train_steps=4",
        "--extra_flags=--eval_every=4,--lr_decay_step=0",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--results_dir={tmp_path}",
    )
    rows = json.loads((tmp_path / "fmnist_2000_ns3l_vs_supervised.json").read_text())["rows"]
    assert list(rows) == ["supervised (float32)"] and rows["supervised (float32)"]["seeds"] == [1]
    table = (tmp_path / "fmnist_2000_ns3l_vs_supervised.md").read_text()
    test_error = rows["supervised (float32)"]["final_test_error"][0]
    assert f"| supervised | float32 | 1 | {test_error:.2f} ± 0.00 |" in table


def test_paired_test_against_hand_computed_values():
    result = common.paired_test([-1.0, -2.0, -3.0, 0.5])
    # mean −1.375; std (n − 1) = sqrt(6.6875 / 3) = 1.49304; half-width 3.182 · 1.49304 / 2
    assert result["n"] == 4 and result["mean"] == pytest.approx(-1.375)
    assert result["ci95"] == pytest.approx([-1.375 - 2.375429, -1.375 + 2.375429], abs=1e-5)
    # 3 negative, 1 positive: P(≤ 1 of 4) = 5 / 16, two-sided 0.625
    assert (result["negative"], result["positive"]) == (3, 1)
    assert result["sign_test_p"] == pytest.approx(0.625)
    all_negative = common.paired_test([-0.1 * k for k in range(1, 11)])
    assert all_negative["sign_test_p"] == pytest.approx(2 / 1024)
    assert all_negative["ci95"][1] < 0
    with_a_tie = common.paired_test([0.0, -1.0, 1.0])
    assert (with_a_tie["negative"], with_a_tie["positive"], with_a_tie["sign_test_p"]) == (
        1,
        1,
        1.0,
    )
    with pytest.raises(ValueError, match="paired_test takes 2 to 16 differences, got 1"):
        common.paired_test([1.0])


def test_backends_report_pairs_the_seeds_both_backends_finished():
    run = lambda error, seconds: {"test_error": error, "seconds": seconds}  # noqa: E731
    results = {
        "tensorflow": {1: run(20.0, 100), 2: run(22.0, 110), 3: run(21.0, 90)},
        "jax": {1: run(21.0, 700), 2: run(21.0, 800)},
    }
    summary = backends.report(results, steps=600)
    assert summary["backends"]["tensorflow"]["test_error"] == pytest.approx((21.0, 1.0))
    assert summary["backends"]["jax"]["seconds"] == pytest.approx((750.0, 70.710678))
    paired = summary["jax_minus_tensorflow"]
    assert paired["seeds"] == [1, 2] and paired["mean"] == pytest.approx(0.0)
    assert (paired["negative"], paired["positive"]) == (1, 1)
    text = backends.markdown(summary)
    assert "| jax | 1, 2 | 21.00 ± 0.00 | 750.00 ± 70.71 |" in text
    assert "JAX − TensorFlow, paired by seed (1, 2): +0.00 % points" in text


@pytest.mark.parametrize("labels", fixmatch_ns3l.LABELS)
@pytest.mark.parametrize("row", fixmatch_ns3l.ROWS)
def test_every_fixmatch_row_is_a_valid_run(row, labels, saved_flags, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", *fixmatch_ns3l.row_flags(row, labels), "--seed=1"])
    config = config_from_flags()
    assert config.num_labeled == labels and config.algorithm == row.replace("_", "+")
    assert (config.optimizer, config.lr_schedule, config.ema_decay) == ("sgd", "cosine", 0.999)


def test_the_pilot_budget_is_where_validation_stays_near_its_lowest():
    history = [
        {"step": 250, "val_error": 30.0, "test_error": 0.0},
        {"step": 500, "val_error": 20.5},  # within 1 of 20.0, but 22.0 follows
        {"step": 750, "val_error": 22.0},
        {"step": 1000, "val_error": 20.9},
        {"step": 1250, "val_error": 20.0},
        {"step": 1500, "val_error": 20.6},
    ]
    assert fixmatch_ns3l.choose_budget(history, 1.0) == 1000
    assert fixmatch_ns3l.choose_budget(history, 2.5) == 500
    assert fixmatch_ns3l.choose_budget(history, 0.1) == 1500  # never settles: the whole pilot
    assert fixmatch_ns3l.choose_budget(history[:5], 0.1) == 1500  # 1250 rounded up to 500s


def test_the_fixmatch_report_pairs_rows_by_seed_against_base_and_supervised():
    def run(row, seed, error):
        return {"flags": {"seed": seed}, "test_error": error, "steps": 500, "seconds": 10.0}

    runs = {
        (40, "supervised"): [run("supervised", 1, 30.0), run("supervised", 2, 32.0)],
        (40, "fixmatch"): [run("fixmatch", 1, 20.0), run("fixmatch", 2, 25.0)],
        (40, "fixmatch_ns3l"): [run("fixmatch_ns3l", 2, 24.0), run("fixmatch_ns3l", 1, 19.0)],
        (40, "flexmatch"): [run("flexmatch", 1, 21.0)],
    }
    rows = ["supervised", "fixmatch", "fixmatch_ns3l", "flexmatch", "flexmatch_ns3l"]
    report = fixmatch_ns3l.report(runs, [40], rows, 0.0)
    cell = report["cells"]["40"]
    assert list(cell) == ["supervised", "fixmatch", "fixmatch_ns3l", "flexmatch"]
    assert cell["fixmatch"]["minus_supervised"]["mean"] == pytest.approx(-8.5)  # −10, −7
    ns3l = cell["fixmatch_ns3l"]["minus_base"]  # paired by seed, not by position: −1, −1
    assert ns3l["mean"] == pytest.approx(-1.0) and ns3l["negative"] == 2
    assert cell["flexmatch"]["minus_supervised"] is None  # one seed: no test
    table = fixmatch_ns3l.markdown(report)
    assert "| fixmatch_ns3l | 2, 1 | 500 | 21.50 ± 3.54 | -1.00 [-1.00, -1.00], 2−/0+" in table


@pytest.mark.large
def test_the_fixmatch_benchmark_pilots_then_runs_at_the_pilots_budget(tmp_path):
    common_flags = [
        "--labels=40",
        "--extra_flags=--unlabeled_batch_size=8,--batch_size=8,--num_validation=200",
        f"--runs_dir={tmp_path / 'runs'}",
        f"--results_dir={tmp_path}",
    ]
    out = _script(
        "fixmatch_ns3l.py", "--pilot", "--pilot_steps=4", "--pilot_eval_every=2", *common_flags
    )
    pilot = json.loads((tmp_path / "fixmatch_ns3l_pilot.json").read_text())
    assert pilot["budgets"] == {"40": 500} and "40 labels: a budget of 500 steps" in out
    assert [step for step, _ in pilot["validation_curves"]["40"]] == [2, 4]
    # The table's runs take the pilot's budget unless --steps says otherwise.
    _script("fixmatch_ns3l.py", "--rows=fixmatch", "--seeds=1", "--steps=4", *common_flags)
    report = json.loads((tmp_path / "fixmatch_ns3l.json").read_text())
    entry = report["cells"]["40"]["fixmatch"]
    assert entry["seeds"] == [1] and entry["steps"] == 4
    assert (tmp_path / "fixmatch_ns3l.png").exists()
    assert "| fixmatch | 1 | 4 |" in (tmp_path / "fixmatch_ns3l.md").read_text()
