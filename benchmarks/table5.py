"""The paper's Table 5 on real Fashion-MNIST: every way of choosing NS³L's negatives.

    python benchmarks/table5.py                   # 12 rows, seeds 1-5 (1-3 for NN and Uniform)
    python benchmarks/table5.py --steps=1560 --views=1 --seeds=1,2 --runs_dir=/tmp/t5   # a slice
    python benchmarks/table5.py --report_only      # the table of the finished runs, start none

Every run is `python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg <row flags>` with
2,000 labeled, 5,000 validation and 53,000 unlabeled images (the paper used all 58,000 as
unlabeled; the validation images are what the budget and the form were chosen on, in
`budget_ablation.py`, whose runs this table reuses), NS³L's μ from `--views` passes and a
budget of `--steps` steps (learning rate ×0.2 after two thirds of it). Without `--steps` and
`--views`, both come from the ablation's final choice on validation (`--ablation`, the
`choice` of `budget_ablation.json`); an unfinished ablation is a usage error. The figure is the test
error after the last step. Runs whose `results.json` exists are reused, so an interrupted
benchmark resumes; seeds run in order, every row within a seed, so a partial table has every
row. Writes `benchmarks/results/table5.{json,md,png}`: mean ± std beside the paper's number,
the difference to the supervised run of the same seed, and the mean number of negatives per
image and the negative error rate (the share of unlabeled images whose negatives include their
true class) over the last evaluation interval.
"""

import json
import os
import time

from absl import app, flags
from common import (
    RESULTS_DIR,
    TABLE5_ROWS,
    define_report_only_flag,
    machine,
    mean_std,
    mean_std_text,
    no_finished_runs,
    paired,
    paired_test,
    table5_run,
    usage_error,
)

from ns3l_tf import io_utils

FLAGS = flags.FLAGS

ROWS = TABLE5_ROWS
FEW_SEED_ROWS = [
    "uniform1",
    "uniform3",
    "nn_exclude",
    "nn_exclude4",
    "nn_furthest",
    "nn_exclude4_classes",
    "nn_furthest_class",
]


def plan_seeds(
    rows: list[str], seeds: list[int], few_seed_rows: list[str], few_seeds: int
) -> dict[str, list[int]]:
    """The seeds each row is to run: every one of `seeds`, but only the first `few_seeds` of
    them for the `few_seed_rows` (what 2 CPU cores can train across a few sessions)."""
    return {row: seeds[:few_seeds] if row in few_seed_rows else list(seeds) for row in rows}


def seeds_text(seeds: list[int]) -> str:
    """`[1, 2, 3]` as "1–3", `[2, 5]` as "2, 5"."""
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}–{seeds[-1]}"
    return ", ".join(map(str, seeds))


def planned_seeds_text(report: dict) -> str:
    """Which seeds each row is to run, grouped by their seeds, as one sentence ("" if the
    report has no plan)."""
    groups = {}
    for summary in report["rows"].values():
        if "planned_seeds" in summary:
            key = tuple(summary["planned_seeds"])
            groups.setdefault(key, []).append(summary["label"])
    if not groups:
        return ""
    parts = [
        f"{seeds_text(list(seeds))} for {', '.join(labels)}" for seeds, labels in groups.items()
    ]
    return f"Seeds planned (`--seeds`, `--few_seed_rows`, `--few_seeds`): {'; '.join(parts)}. "


def summarize(results: dict, supervised: dict | None = None) -> dict:
    """Mean ± std over seeds of a row's test and validation errors, negatives per image,
    negative error rate (the last evaluation interval's training averages) and times; given
    the supervised runs, the difference to them paired by seed (each seed draws its own
    labeled set, and the paired difference removes that share of the spread), after the last
    step and, where the runs were validated, at each run's lowest validation error.

    Args:
      results: `{seed: results.json}` of the row.
      supervised: `{seed: results.json}` of the supervised row, or None.
    """
    seeds = sorted(results)
    runs = [results[s] for s in seeds]
    last = [r["history"][-1] for r in runs]
    summary = {
        "seeds": seeds,
        "test_error": mean_std([r["test_error"] for r in runs]),
        "val_error": mean_std([r["final_val_error"] for r in runs]),
        "per_seed_test_error": [r["test_error"] for r in runs],
        "seconds_per_run": mean_std([r["seconds"] for r in runs]),
        "preprocessing_seconds": mean_std([r.get("preprocessing_seconds", 0.0) for r in runs]),
    }
    for key in ("ns3l_negatives", "ns3l_negative_error"):
        if all(key in record for record in last):
            summary[key] = mean_std([record[key] for record in last])
    common = [s for s in seeds if supervised and s in supervised]
    if common:
        mine, base = [results[s] for s in common], [supervised[s] for s in common]
        summary["paired_seeds"] = common
        summary["paired_difference_to_supervised"] = paired(mine, base, "test_error")
        summary["paired_val_difference_to_supervised"] = paired(mine, base, "final_val_error")
        if all(r.get("best_val_test_error") is not None for r in mine + base):
            summary["paired_best_val_difference_to_supervised"] = paired(
                mine, base, "best_val_test_error"
            )
        if 2 <= len(common) <= 16:
            differences = [r["test_error"] - b["test_error"] for r, b in zip(mine, base)]
            summary["paired_test_to_supervised"] = paired_test(differences)
    return summary


def paired_tests_text(report: dict) -> list[str]:
    """One line per row with a paired test against supervised (none for supervised)."""
    lines = []
    for s in report["rows"].values():
        test = s.get("paired_test_to_supervised")
        if test is None or s["label"] == "Supervised":
            continue
        low, high = test["ci95"]
        verdict = "distinguishable from zero" if high < 0 or low > 0 else "not distinguishable"
        lines.append(
            f"- {s['label']} − Supervised over {test['n']} paired seeds: {test['mean']:+.2f}, "
            f"95 % t-interval [{low:+.2f}, {high:+.2f}] ({verdict}); better on "
            f"{test['negative']}, worse on {test['positive']}; sign test p = "
            f"{test['sign_test_p']:.3f}"
        )
    return lines


def markdown(report: dict) -> str:
    """Table 5 as markdown: ours beside the paper's, row by row."""
    views = report["views"]
    lines = [
        "# Table 5 on Fashion-MNIST: how NS³L chooses negatives",
        "",
        f"Small CNN, 2,000 labeled / 53,000 unlabeled / 5,000 validation images, "
        f"{report['train_steps']:,} steps of 64 labeled + 64 unlabeled (Adam 1e-3, ×0.2 after "
        f"step {report['lr_decay_step']:,}), NS³L's μ from {views} pass{'es' * (views > 1)}, "
        f"{report['precision']}; test error in % after the last step, mean ± std over the "
        f"seeds in the *seeds* column. The paper trained for 50 epochs, with 5 seeds. "
        f"{planned_seeds_text(report)}"
        f"{report['machine']}; all {report['num_runs']} runs took "
        f"{report['training_seconds_all_runs'] / 3600:.1f} h of training.",
        "",
        "Minus supervised: the row's test error minus the supervised run's of the same seed "
        "(the same labeled set), mean ± std over the seeds both have; negative is better. "
        "At best validation: the same difference for each run's test error at its evaluation "
        "with the lowest validation error (Oliver et al.'s report, a check on the last step's "
        "noise). "
        "Negatives per image and negative error (% of unlabeled images whose negatives include "
        "their true class) are the training averages over the last evaluation interval.",
        "",
        "| row | seeds | test error | paper | minus supervised | at best validation | "
        "negatives / image | negative error % | s / run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report["rows"].values():
        seeds = f"{len(s['seeds'])}"
        if "planned_seeds" in s:
            seeds += f" of {len(s['planned_seeds'])}"
        seconds = f"{s['seconds_per_run'][0]:.0f}"
        if s["preprocessing_seconds"][0] > 0.05:
            seconds += f" (+{s['preprocessing_seconds'][0]:.1f} preprocessing)"
        difference = mean_std_text(s.get("paired_difference_to_supervised"), signed=True)
        best_val_difference = mean_std_text(
            s.get("paired_best_val_difference_to_supervised"), signed=True
        )
        lines.append(
            f"| {s['label']} | {seeds} | {mean_std_text(s['test_error'])} | "
            f"{mean_std_text(s['paper'])} | "
            f"{difference} | {best_val_difference} | {mean_std_text(s.get('ns3l_negatives'))} | "
            f"{mean_std_text(s.get('ns3l_negative_error'))} | {seconds} |"
        )
    tests = paired_tests_text(report)
    if tests:
        lines += ["", "Paired tests of the test error after the last step against supervised:"]
        lines += tests
    return "\n".join(lines) + "\n"


def bar_chart(report: dict, path: str) -> None:
    """Ours (mean ± std over seeds) and the paper's test error per row, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(report["rows"].values())
    positions = range(len(rows))
    figure, axes = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
    for offset, key, name in ((-0.2, "test_error", "ns3l_tf"), (0.2, "paper", "paper")):
        means = [r[key][0] for r in rows]
        stds = [r[key][1] for r in rows]
        axes.barh([p + offset for p in positions], means, 0.4, xerr=stds, capsize=3, label=name)
    axes.set_yticks(list(positions), [r["label"] for r in rows])
    axes.invert_yaxis()
    low = min(r[k][0] - r[k][1] for r in rows for k in ("test_error", "paper"))
    high = max(r[k][0] + r[k][1] for r in rows for k in ("test_error", "paper"))
    axes.set_xlim(low - 0.5, high + 0.5)
    if "supervised" in report["rows"]:  # what a selector must beat
        supervised = report["rows"]["supervised"]["test_error"][0]
        axes.axvline(supervised, color="tab:blue", linestyle="--", linewidth=1)
    axes.set_xlabel(
        f"test error % ({report['train_steps']:,} steps; paper: 50 epochs); "
        "dashed: ns3l_tf supervised"
    )
    axes.set_title("Table 5, Fashion-MNIST, 2,000 labels")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120, bbox_inches="tight")  # long row labels
    plt.close(figure)


def write_report(report: dict, stem: str) -> None:
    """`<stem>.json`, `<stem>.md` and `<stem>.png`, each written atomically."""
    io_utils.write_json(f"{stem}.json", report)
    io_utils.write_text(f"{stem}.md", markdown(report))
    io_utils.atomic_write(f"{stem}.png", lambda path: bar_chart(report, path), suffix=".png")


def build_report(
    runs: dict,
    steps: int,
    views: int,
    precision: str,
    seconds: float,
    planned: dict[str, list[int]] | None = None,
) -> dict:
    """The report of `runs` (`{row: {seed: results.json}}`), each row with its seeds from
    `planned` (`plan_seeds`) where given."""
    first = next(r for by_seed in runs.values() for r in by_seed.values())
    return {
        "benchmark": "Table 5 on Fashion-MNIST, 2,000 labels, small CNN",
        "train_steps": steps,
        "lr_decay_step": first["flags"]["lr_decay_step"],
        "views": views,
        "precision": precision,
        "machine": machine(),
        "num_runs": sum(map(len, runs.values())),
        "training_seconds_all_runs": round(
            sum(r["seconds"] for by_seed in runs.values() for r in by_seed.values())
        ),
        "wall_seconds_this_invocation": round(seconds),
        "rows": {
            row: {
                "label": ROWS[row][0],
                "paper": ROWS[row][1],
                **summarize(by_seed, None if row == "supervised" else runs.get("supervised")),
                **({"planned_seeds": planned[row]} if planned and row in planned else {}),
            }
            for row, by_seed in runs.items()
        },
    }


def budget_and_views(steps: int | None, views: int | None, ablation_path: str) -> tuple[int, int]:
    """`--steps` and `--views`, each defaulting to the budget ablation's final choice on the
    validation split (`budget_ablation.choose_on_validation`).

    Raises:
      ValueError: a default is needed and `ablation_path` has no final choice.
    """
    if steps is not None and views is not None:
        return steps, views
    try:
        with open(ablation_path) as f:
            choice = json.load(f).get("choice")
    except (OSError, ValueError) as error:
        raise ValueError(
            f"--ablation={ablation_path}: cannot read it ({error}); pass --steps and --views"
        ) from None
    if not choice or not choice["final"]:
        raise ValueError(
            f"--ablation={ablation_path} has no final choice of budget and views yet (finish "
            "benchmarks/budget_ablation.py); pass --steps and --views"
        )
    return (
        choice["steps"] if steps is None else steps,
        choice["views"] if views is None else views,
    )


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of: {', '.join(ROWS)}.")
    flags.DEFINE_list("seeds", ["1", "2", "3", "4", "5"], "Labeled-subset seeds.")
    flags.DEFINE_list(
        "few_seed_rows", FEW_SEED_ROWS, "Rows that run only the first --few_seeds seeds."
    )
    flags.DEFINE_integer("few_seeds", 3, "Seeds of the --few_seed_rows.")
    flags.DEFINE_integer(
        "steps", None, "Training steps of 64 labeled + 64 unlabeled (default: --ablation's choice)."
    )
    flags.DEFINE_integer("views", None, "NS3L's --ns3l_views (default: --ablation's choice).")
    flags.DEFINE_string(
        "ablation",
        os.path.join(RESULTS_DIR, "budget_ablation.json"),
        "The budget ablation whose choice on validation gives the default --steps and --views.",
    )
    flags.DEFINE_string("precision", "mixed_bfloat16", "--precision of every run.")
    flags.DEFINE_string(
        "runs_dir", os.path.join(RESULTS_DIR, "runs", "table5"), "Where each run writes."
    )
    flags.DEFINE_list("extra_flags", [], "More flags for every run (tests: --eval_every).")
    flags.DEFINE_string("name", "table5", "Output file stem in --results_dir.")
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Where the report goes.")
    define_report_only_flag(flags)


def main(argv):
    del argv
    unknown = [row for row in FLAGS.rows if row not in ROWS]
    if unknown:
        usage_error(f"--rows: unknown {unknown}; allowed: {', '.join(ROWS)}")
    try:
        steps, views = budget_and_views(FLAGS.steps, FLAGS.views, FLAGS.ablation)
    except ValueError as error:
        usage_error(str(error))
    seeds = [int(s) for s in FLAGS.seeds]
    planned = plan_seeds(FLAGS.rows, seeds, FLAGS.few_seed_rows, FLAGS.few_seeds)
    start, runs, report = time.time(), {}, None
    for seed in seeds:  # seed-major: a partial table has every row
        for row in FLAGS.rows:
            if seed not in planned[row]:
                continue
            result = table5_run(
                row,
                views,
                steps,
                seed,
                FLAGS.precision,
                FLAGS.runs_dir,
                FLAGS.extra_flags,
                train=not FLAGS.report_only,
            )
            if result is None:
                continue
            runs.setdefault(row, {})[seed] = result
            seconds = time.time() - start
            report = build_report(runs, steps, views, FLAGS.precision, seconds, planned)
            write_report(report, os.path.join(FLAGS.results_dir, FLAGS.name))
    if report is None:
        raise no_finished_runs(FLAGS.runs_dir)
    print(markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
