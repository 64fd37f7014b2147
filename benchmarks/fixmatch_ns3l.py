"""Does NS³L help today's strongest bases? FixMatch and FlexMatch with and without it, on
Fashion-MNIST with 40 and 250 labels.

    python benchmarks/fixmatch_ns3l.py --pilot        # seed 0, FixMatch: the budget, on validation
    python benchmarks/fixmatch_ns3l.py                # 5 rows x 2 label counts x seeds 1-3
    python benchmarks/fixmatch_ns3l.py --report_only  # the report of the finished runs

Every run is `python -m ns3l_tf.train --flagfile=flags/fmnist_<labels>_<row>.cfg --seed=S`
(the FixMatch recipe of `flags/common/fmnist_fixmatch.cfg` on the small CNN; the supervised
row is `fmnist_<labels>_fixmatch.cfg` with `--algorithm=supervised`, the same optimizer and
EMA on the labeled images alone) and a budget of steps. Seeds pair the rows: one seed draws
one labeled set for all of them.

**The budget comes from a pilot that reads only validation errors**: FixMatch at each label
count on seed 0 (no row of the table uses it), `--pilot_steps` long, evaluated every
`--pilot_eval_every` steps; the budget is the first evaluation step from which the validation
error stays within `--plateau_points` of the pilot's lowest, rounded up to a multiple of 500
(`choose_budget`). The cosine schedule then spans that budget. The pilot writes
`benchmarks/results/fixmatch_ns3l_pilot.json`; the table's runs read their budget from it.

Runs whose `results.json` exists are reused (resumable across sessions; a killed run resumes
from its last checkpoint). After every finished run the report is rewritten:
`benchmarks/results/fixmatch_ns3l.{json,md,png}`, with each row's final test error, its
difference to its base (NS³L's rows) and to supervised, paired by seed, each with a 95 %
t-interval and a sign test.
"""

import json
import math
import os
import time

from absl import app, flags
from common import (
    RESULTS_DIR,
    define_report_only_flag,
    machine,
    mean_std,
    mean_std_text,
    no_finished_runs,
    paired_test,
    run_cli,
    usage_error,
)

from ns3l_tf import io_utils

FLAGS = flags.FLAGS

ROWS = ("supervised", "fixmatch", "fixmatch_ns3l", "flexmatch", "flexmatch_ns3l")
# Each NS³L row against the row it adds the term to.
BASES = {"fixmatch_ns3l": "fixmatch", "flexmatch_ns3l": "flexmatch"}
LABELS = (40, 250)
PILOT_SEED = 0


def row_flags(row: str, labels: int) -> list[str]:
    """The CLI flags of a row at `labels` labels (before the budget and seed)."""
    if row == "supervised":
        return [f"--flagfile=flags/fmnist_{labels}_fixmatch.cfg", "--algorithm=supervised"]
    return [f"--flagfile=flags/fmnist_{labels}_{row}.cfg"]


def budget_flags(steps: int, eval_every: int) -> list[str]:
    """`steps` steps, evaluated every `eval_every`, a checkpoint at each evaluation."""
    return [f"--train_steps={steps}", f"--eval_every={eval_every}"]


def choose_budget(history: list[dict], plateau_points: float, multiple: int = 500) -> int:
    """The first evaluation step from which the validation error stays within
    `plateau_points` of its lowest (the last step where it never settles), rounded up to a
    multiple of `multiple`.

    Args:
      history: a run's `results.json` history: `{"step", "val_error", ...}` per evaluation.
      plateau_points: how close to the lowest validation error, in % points.
      multiple: the budget's granularity in steps.

    Returns:
      The budget in steps. Only `val_error` is read.
    """
    errors = [(entry["step"], entry["val_error"]) for entry in history]
    lowest = min(error for _, error in errors)
    for index, (step, _) in enumerate(errors):
        if all(error <= lowest + plateau_points for _, error in errors[index:]):
            return multiple * math.ceil(step / multiple)
    return multiple * math.ceil(errors[-1][0] / multiple)  # it never settled: the whole pilot


def pilot_path() -> str:
    return os.path.join(FLAGS.results_dir, f"{FLAGS.name}_pilot.json")


def run_pilot() -> dict:
    """FixMatch on seed 0 at each label count; the budgets chosen on validation."""
    budgets, curves = {}, {}
    for labels in (int(n) for n in FLAGS.labels):
        output_dir = os.path.join(FLAGS.runs_dir, f"pilot_fixmatch_{labels}labels_seed0")
        flags_ = [
            *row_flags("fixmatch", labels),
            *budget_flags(FLAGS.pilot_steps, FLAGS.pilot_eval_every),
            f"--seed={PILOT_SEED}",
            *FLAGS.extra_flags,
        ]
        result = run_cli(flags_, output_dir, train=not FLAGS.report_only)
        if result is None:
            raise no_finished_runs(output_dir, "runs_dir")
        curves[labels] = [(e["step"], e["val_error"]) for e in result["history"]]
        budgets[labels] = choose_budget(result["history"], FLAGS.plateau_points)
    pilot = {
        "benchmark": "FixMatch pilot on Fashion-MNIST, seed 0: the budget, on validation only",
        "rule": f"first evaluation within {FLAGS.plateau_points} points of the lowest validation "
        "error and staying there, rounded up to 500 steps",
        "pilot_steps": FLAGS.pilot_steps,
        "budgets": {str(k): v for k, v in budgets.items()},
        "validation_curves": {str(k): v for k, v in curves.items()},
        "machine": machine(),
    }
    io_utils.write_json(pilot_path(), pilot)
    return pilot


def budget_for(labels: int) -> int:
    """The run budget at `labels` labels: `--steps`, else the pilot's choice."""
    if FLAGS.steps:
        return FLAGS.steps
    if not os.path.exists(pilot_path()):
        usage_error(f"no pilot at {pilot_path()}: run with --pilot first, or give --steps")
    with open(pilot_path()) as f:
        pilot = json.load(f)
    if str(labels) not in pilot["budgets"]:
        usage_error(f"the pilot chose no budget for {labels} labels: rerun --pilot with them")
    return pilot["budgets"][str(labels)]


def run_row(row: str, labels: int, seed: int, steps: int) -> dict | None:
    output_dir = os.path.join(FLAGS.runs_dir, f"{row}_{labels}labels_{steps}steps_seed{seed}")
    flags_ = [
        *row_flags(row, labels),
        *budget_flags(steps, steps // 4),
        f"--seed={seed}",
        *FLAGS.extra_flags,
    ]
    return run_cli(flags_, output_dir, train=not FLAGS.report_only)


def paired_difference(results: dict, row: str, baseline: str) -> dict | None:
    """`row` minus `baseline`, final test error, over the seeds both finished (≥ 2)."""
    by_seed = {r["flags"]["seed"]: r["test_error"] for r in results.get(baseline, [])}
    pairs = [(r["test_error"], by_seed.get(r["flags"]["seed"])) for r in results.get(row, [])]
    pairs = [(a, b) for a, b in pairs if b is not None]
    if len(pairs) < 2:
        return None
    return paired_test([a - b for a, b in pairs])


def report(runs: dict, labels_list: list[int], rows_list: list[str], start: float) -> dict:
    """`runs[(labels, row)]` = finished results → the report of `labels_list` × `rows_list`."""
    cells = {}
    for labels in labels_list:
        results = {row: runs.get((labels, row), []) for row in rows_list}
        rows = {}
        for row, finished in results.items():
            if not finished:
                continue
            rows[row] = {
                "seeds": [r["flags"]["seed"] for r in finished],
                "test_error": mean_std([r["test_error"] for r in finished]),
                "per_seed_test_error": [r["test_error"] for r in finished],
                "steps": finished[0]["steps"],
                "seconds_per_run": mean_std([r["seconds"] for r in finished]),
                "minus_supervised": paired_difference(results, row, "supervised")
                if row != "supervised"
                else None,
                "minus_base": paired_difference(results, row, BASES[row]) if row in BASES else None,
            }
        cells[str(labels)] = rows
    return {
        "benchmark": "NS3L on FixMatch and FlexMatch, Fashion-MNIST, small CNN",
        "labels": list(labels_list),
        "cells": cells,
        "wall_seconds_this_invocation": round(time.time() - start, 1),
        "training_seconds_all_runs": round(sum(r["seconds"] for rs in runs.values() for r in rs)),
        "machine": machine(),
    }


def _difference_text(test: dict | None) -> str:
    if not test:
        return "–"
    low, high = test["ci95"]
    return (
        f"{test['mean']:+.2f} [{low:+.2f}, {high:+.2f}], {test['negative']}−/{test['positive']}+"
        f", p = {test['sign_test_p']:.2f}"
    )


def markdown(report: dict) -> str:
    lines = [
        f"# {report['benchmark']}",
        "",
        "Test error in % after the last step (EMA weights), mean ± std over the seeds finished; "
        "differences are paired by seed (the same labeled set): mean, 95 % t-interval, how "
        "many seeds went down (−) and up (+), and the exact sign test's p. Negative is better. "
        "Budgets from the validation-only pilot (`fixmatch_ns3l_pilot.json`). "
        f"{report['machine']}; all runs took "
        f"{report['training_seconds_all_runs'] / 3600:.1f} h of training.",
    ]
    for labels, rows in report["cells"].items():
        lines += ["", f"## {labels} labels", ""]
        if not rows:
            lines.append("No run has finished yet.")
            continue
        lines += [
            "| row | seeds | steps | test error | minus its base | minus supervised | s / run |",
            "|---|---|---|---|---|---|---|",
        ]
        for row, entry in rows.items():
            lines.append(
                f"| {row} | {', '.join(map(str, entry['seeds']))} | {entry['steps']} | "
                f"{mean_std_text(entry['test_error'])} | {_difference_text(entry['minus_base'])} | "
                f"{_difference_text(entry['minus_supervised'])} | "
                f"{entry['seconds_per_run'][0]:.0f} |"
            )
    return "\n".join(lines) + "\n"


def chart(report: dict, path: str) -> None:
    """Per label count, each row's per-seed test errors and their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = report["cells"]
    figure, axes = plt.subplots(1, len(cells), figsize=(5 * len(cells), 3.6), squeeze=False)
    for axis, (labels, rows) in zip(axes[0], cells.items()):
        for position, entry in enumerate(rows.values()):
            errors = entry["per_seed_test_error"]
            axis.scatter([position] * len(errors), errors, s=14, color="0.55")
            axis.scatter([position], [entry["test_error"][0]], marker="_", s=400, color="C0")
        axis.set_xticks(range(len(rows)), [r.replace("_", "+\n") for r in rows], fontsize=8)
        axis.set_title(f"Fashion-MNIST, {labels} labels")
        axis.set_ylabel("test error (%)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv):
    del argv
    unknown = [row for row in FLAGS.rows if row not in ROWS]
    if unknown:
        usage_error(f"--rows: unknown {unknown}; allowed: {', '.join(ROWS)}")
    if FLAGS.pilot:
        pilot = run_pilot()
        for labels, steps in pilot["budgets"].items():
            print(f"{labels} labels: a budget of {steps} steps ({pilot['rule']})")
        return
    start, runs, current = time.time(), {}, None
    stem = os.path.join(FLAGS.results_dir, FLAGS.name)
    labels_list = [int(n) for n in FLAGS.labels]
    budgets = {labels: budget_for(labels) for labels in labels_list}
    for seed in (int(s) for s in FLAGS.seeds):  # seed-major: a partial table pairs every row
        for labels in labels_list:
            for row in FLAGS.rows:
                result = run_row(row, labels, seed, budgets[labels])
                if result is None:
                    continue
                runs.setdefault((labels, row), []).append(result)
                current = report(runs, labels_list, FLAGS.rows, start)
                io_utils.write_json(f"{stem}.json", current)
                io_utils.write_text(f"{stem}.md", markdown(current))
                chart(current, f"{stem}.png")
    if current is None:
        raise no_finished_runs(FLAGS.runs_dir)
    print(markdown(current))


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of: {', '.join(ROWS)}.")
    flags.DEFINE_list("labels", [str(n) for n in LABELS], "Label counts (flags/fmnist_<n>_*).")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Labeled-subset seeds of the table.")
    flags.DEFINE_integer("steps", None, "The budget of every run (default: the pilot's choice).")
    flags.DEFINE_bool("pilot", False, "Run the pilot (seed 0, FixMatch) and choose the budgets.")
    flags.DEFINE_integer("pilot_steps", 4000, "The pilot's steps.")
    flags.DEFINE_integer("pilot_eval_every", 250, "Steps between the pilot's evaluations.")
    flags.DEFINE_float("plateau_points", 1.0, "The pilot rule's margin, in validation % points.")
    flags.DEFINE_list("extra_flags", [], "More flags for every run (tests: --num_validation).")
    flags.DEFINE_string(
        "runs_dir", os.path.join(RESULTS_DIR, "runs", "fixmatch_ns3l"), "Where each run writes."
    )
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Where the reports go.")
    flags.DEFINE_string("name", "fixmatch_ns3l", "Output file stem in --results_dir.")
    define_report_only_flag(flags)


if __name__ == "__main__":
    define_flags()
    app.run(main)
