"""Where NS³L's gain appears on Fashion-MNIST: budgets × (one view, a second view).

    python benchmarks/budget_ablation.py                     # 5 rows × 3 budgets × seeds 1-3
    python benchmarks/budget_ablation.py --budgets=1560 --seeds=1 --runs_dir=/tmp/x  # a slice
    python benchmarks/budget_ablation.py --report_only       # the report of the finished runs

Rows: Supervised, Threshold T = 0.03 and Oracle - 3, the last two with μ from the base
method's pass (`--ns3l_views=1`) and from a second pass on a fresh view (`--ns3l_views=2`, the
authors' loss). Every run is `python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg` with
5,000 validation images (so budgets and forms are chosen on the validation split, never on
the test split), the row's flags and a budget (learning rate ×0.2 after two thirds of it); see
`common.table5_run`. Runs whose `results.json` exists are reused (resumable across sessions;
Table 5 reuses them too), and the report is rewritten after every finished run:
`benchmarks/results/budget_ablation.{json,md,png}` with, per budget and row, the final test
and validation errors and their paired differences to the supervised run of the same seed
(charted against the budget, beside each budget's validation error at every evaluation of its
runs), and Table 5's budget and number of views chosen on the validation differences alone
(`choose_on_validation`), which `benchmarks/table5.py` runs at by default.
"""

import os
import time

import numpy as np
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
    table5_run,
)

from ns3l_tf import io_utils

FLAGS = flags.FLAGS

# (Table 5 row, NS3L views): supervised is the baseline every other form is paired with.
FORMS = [
    ("supervised", 1),
    ("threshold_003", 1),
    ("threshold_003", 2),
    ("oracle3", 1),
    ("oracle3", 2),
]


def form_label(row: str, views: int) -> str:
    label = TABLE5_ROWS[row][0]
    return label if row == "supervised" else f"{label}, {views} view{'s' * (views > 1)}"


def validation_curve(results: list[dict]) -> dict:
    """The validation error at each evaluation every run of `results` has: `{"steps": [...],
    "val_error": [(mean, std) over the runs, in %, one per step]}`."""
    by_run = [
        {h["step"]: h["val_error"] for h in r["history"] if "val_error" in h} for r in results
    ]
    steps = sorted(set.intersection(*(set(errors) for errors in by_run)))
    return {"steps": steps, "val_error": [mean_std([e[s] for e in by_run]) for s in steps]}


def summarize(runs: dict) -> dict:
    """`runs[(budget, row, views)]` = results by seed → per budget and form: errors (mean ±
    std) and the differences to supervised paired by seed, over the seeds every form has."""
    report = {}
    for budget in sorted({key[0] for key in runs}):
        supervised = runs.get((budget, "supervised", 1), {})
        forms = {}
        for (steps, row, views), by_seed in sorted(runs.items()):
            if steps != budget:
                continue
            seeds = sorted(by_seed)
            results = [by_seed[s] for s in seeds]
            last = [r["history"][-1] for r in results]
            entry = {
                "label": form_label(row, views),
                "row": row,
                "views": views,
                "seeds": seeds,
                "test_error": mean_std([r["test_error"] for r in results]),
                "val_error": mean_std([r["final_val_error"] for r in results]),
                "seconds_per_run": mean_std([r["seconds"] for r in results]),
                "per_seed_test_error": [r["test_error"] for r in results],
                "val_curve": validation_curve(results),
            }
            if row != "supervised":
                entry["ns3l_negatives"] = mean_std([x["ns3l_negatives"] for x in last])
                entry["ns3l_negative_error"] = mean_std([x["ns3l_negative_error"] for x in last])
                common = [s for s in seeds if s in supervised]
                if common:
                    mine = [by_seed[s] for s in common]
                    base = [supervised[s] for s in common]
                    entry["paired_seeds"] = common
                    entry["test_minus_supervised"] = paired(mine, base, "test_error")
                    entry["val_minus_supervised"] = paired(mine, base, "final_val_error")
            forms[f"{row}_views{views}" if row != "supervised" else row] = entry
        report[str(budget)] = forms
    return report


# The NS³L rows whose validation differences choose Table 5's budget and number of views.
CHOICE_ROWS = ("threshold_003", "oracle3")
CHOICE_RULE = (
    "the budget and number of views whose Threshold T = 0.03 and Oracle - 3 rows have the "
    "lowest mean paired validation difference to supervised (ties: fewer steps, then fewer "
    "views); final once every budget has every form at every seed"
)


def choose_on_validation(budgets: dict, expected_budgets: list[int], num_seeds: int) -> dict | None:
    """Table 5's budget and views, chosen on the validation split only (`CHOICE_RULE`).

    Args:
      budgets: `summarize(...)`'s report, by budget (a string) and form.
      expected_budgets: the budgets the ablation runs; the choice is final only when each has
        both rows of `CHOICE_ROWS` with one view and with two, paired over `num_seeds` seeds.
      num_seeds: seeds per form.

    Returns:
      `{"steps", "views", "final", "rule", "scores": [{"steps", "views",
      "val_minus_supervised", "seeds"}]}`, or None while no budget has both rows in one form.
    """
    scores = []
    for budget, forms in sorted(budgets.items(), key=lambda item: int(item[0])):
        for views in (1, 2):
            entries = [forms.get(f"{row}_views{views}", {}) for row in CHOICE_ROWS]
            if all("val_minus_supervised" in entry for entry in entries):
                scores.append(
                    {
                        "steps": int(budget),
                        "views": views,
                        "val_minus_supervised": float(
                            np.mean([entry["val_minus_supervised"][0] for entry in entries])
                        ),
                        "seeds": min(len(entry["paired_seeds"]) for entry in entries),
                    }
                )
    if not scores:
        return None
    best = min(scores, key=lambda s: (round(s["val_minus_supervised"], 6), s["steps"], s["views"]))
    complete = {(s["steps"], s["views"]) for s in scores if s["seeds"] >= num_seeds}
    final = all((budget, views) in complete for budget in expected_budgets for views in (1, 2))
    return {
        "steps": best["steps"],
        "views": best["views"],
        "final": final,
        "rule": CHOICE_RULE,
        "scores": scores,
    }


def markdown(report: dict) -> str:
    lines = [
        "# NS³L on Fashion-MNIST: which budget, one view or two",
        "",
        "Small CNN, 2,000 labeled / 53,000 unlabeled / 5,000 validation images, 64 + 64 images "
        f"per step, Adam 1e-3 (×0.2 after two thirds of the steps), {report['precision']}; "
        f"{report['machine']}; {report['num_runs']} runs, "
        f"{report['training_seconds_all_runs'] / 3600:.1f} h of training. Errors in % after "
        "the last step, mean ± std over seeds; *minus supervised*: the difference to the "
        "supervised run of the same seed (same labeled set), negative is better. Choose on the "
        "validation columns; the test columns are reported.",
    ]
    for budget, forms in report["budgets"].items():
        lines += [
            "",
            f"## {int(budget):,} steps",
            "",
            "| row | seeds | test error | val error | test − supervised | val − supervised | "
            "negatives / image | negative error % | s / run |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for entry in forms.values():
            lines.append(
                f"| {entry['label']} | {len(entry['seeds'])} | "
                f"{mean_std_text(entry['test_error'])} | {mean_std_text(entry['val_error'])} | "
                f"{mean_std_text(entry.get('test_minus_supervised'), signed=True)} | "
                f"{mean_std_text(entry.get('val_minus_supervised'), signed=True)} | "
                f"{mean_std_text(entry.get('ns3l_negatives'))} | "
                f"{mean_std_text(entry.get('ns3l_negative_error'))} | "
                f"{entry['seconds_per_run'][0]:.0f} |"
            )
    choice = report.get("choice")
    if choice:
        status = "final" if choice["final"] else "provisional: the ablation is not complete"
        lines += [
            "",
            "## Table 5's budget and views, chosen on validation",
            "",
            f"Rule: {choice['rule']}. Chosen ({status}): **{choice['steps']:,} steps, "
            f"{choice['views']} view{'s' * (choice['views'] > 1)}**; "
            + (
                "`benchmarks/table5.py` runs there by default."
                if choice["final"]
                else "`benchmarks/table5.py` takes it as its default once it is final."
            ),
            "",
            "| steps | views | mean val − supervised (Threshold, Oracle - 3) | seeds |",
            "|---|---|---|---|",
            *(
                f"| {s['steps']:,} | {s['views']} | {s['val_minus_supervised']:+.2f} | "
                f"{s['seeds']} |"
                for s in choice["scores"]
            ),
        ]
    return "\n".join(lines) + "\n"


def form_style(row: str, views: int) -> dict:
    """One look per form in every panel: a colour per row (in `FORMS` order), dashed for μ
    from the method's own pass (one view), solid otherwise."""
    rows = list(dict.fromkeys(r for r, _ in FORMS))
    colour = f"C{rows.index(row) if row in rows else len(rows)}"
    one_view = row != "supervised" and views == 1
    return {"color": colour, "linestyle": "--" if one_view else "-", "marker": "o", "capsize": 3}


def figure_of(report: dict):
    """The chart as a matplotlib figure. Top row: test error, and the test and validation
    differences to supervised, against the budget; bottom row, one panel per budget: the
    validation error at each evaluation of the runs. One line per form (mean ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted(report["budgets"], key=int)
    names = {name for forms in report["budgets"].values() for name in forms}
    width = max(3, len(budgets))  # panels per row
    figure, grid = plt.subplots(2, width, figsize=(5 * width, 8.8), squeeze=False)
    panels = grid[0][:3]
    for unused in [*grid[0][3:], *grid[1][len(budgets) :]]:
        figure.delaxes(unused)
    columns = ("test_error", "test_minus_supervised", "val_minus_supervised")
    titles = ("test error %", "test error − supervised", "validation error − supervised")
    for index, name in enumerate(sorted(names)):
        dodge = 1.0 + 0.025 * (index - (len(names) - 1) / 2)  # side by side at each budget
        present = [b for b in budgets if name in report["budgets"][b]]
        entries = [report["budgets"][b][name] for b in present]
        style = form_style(entries[0]["row"], entries[0]["views"])
        for axes, column in zip(panels, columns):
            points = [(int(b) * dodge, e[column]) for b, e in zip(present, entries) if column in e]
            if points:
                axes.errorbar(
                    [steps for steps, _ in points],
                    [value[0] for _, value in points],
                    [value[1] for _, value in points],
                    label=entries[0]["label"],
                    **style,
                )
    for axes, title in zip(panels, titles):
        if axes is not panels[0]:
            axes.axhline(0.0, color="gray", linewidth=1)
        axes.set_xscale("log")
        axes.minorticks_off()
        axes.set_xlim(int(budgets[0]) / 1.25, int(budgets[-1]) * 1.25)
        axes.set_xticks([int(b) for b in budgets], [f"{int(b):,}" for b in budgets])
        axes.set_xlabel("training steps (64 labeled + 64 unlabeled)")
        axes.set_title(title)
    panels[0].legend(fontsize=8)
    for axes, budget in zip(grid[1], budgets):
        for _, entry in sorted(report["budgets"][budget].items()):
            curve = entry.get("val_curve", {"steps": []})
            if curve["steps"]:
                axes.errorbar(
                    curve["steps"],
                    [value[0] for value in curve["val_error"]],
                    [value[1] for value in curve["val_error"]],
                    label=entry["label"],
                    **form_style(entry["row"], entry["views"]),
                )
        axes.set_xlabel("training step")
        axes.set_title(f"validation error % during the {int(budget):,}-step runs")
    figure.suptitle("Fashion-MNIST, 2,000 labels: NS³L against the budget (choose on validation)")
    figure.tight_layout()
    return figure


def chart(report: dict, path: str) -> None:
    """Writes `figure_of(report)` to the PNG `path`."""
    import matplotlib.pyplot as plt

    figure = figure_of(report)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(report: dict, stem: str) -> None:
    """`<stem>.json`, `<stem>.md` and `<stem>.png`, each written atomically."""
    io_utils.write_json(f"{stem}.json", report)
    io_utils.write_text(f"{stem}.md", markdown(report))
    io_utils.atomic_write(f"{stem}.png", lambda p: chart(report, p), suffix=".png")


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("budgets", ["1560", "5000", "12000"], "Training steps per run.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Labeled-subset seeds.")
    flags.DEFINE_string("precision", "mixed_bfloat16", "--precision of every run.")
    flags.DEFINE_string(
        "runs_dir", os.path.join(RESULTS_DIR, "runs", "table5"), "Where each run writes."
    )
    flags.DEFINE_list(
        "forms",
        [f"{row}:{views}" for row, views in FORMS],
        "Rows and NS3L views, row:views (supervised:1 is the baseline every row is paired with).",
    )
    flags.DEFINE_list("extra_flags", [], "More flags for every run (tests: --eval_every).")
    flags.DEFINE_string("name", "budget_ablation", "Output file stem in --results_dir.")
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Where the report goes.")
    define_report_only_flag(flags)


def main(argv):
    del argv
    budgets, seeds = [int(b) for b in FLAGS.budgets], [int(s) for s in FLAGS.seeds]
    forms = [(row, int(views)) for row, views in (f.split(":") for f in FLAGS.forms)]
    start, runs, report = time.time(), {}, None
    for budget in budgets:  # cheap budgets first: every interruption leaves whole budgets
        for seed in seeds:
            for row, views in forms:
                result = table5_run(
                    row,
                    views,
                    budget,
                    seed,
                    FLAGS.precision,
                    FLAGS.runs_dir,
                    FLAGS.extra_flags,
                    train=not FLAGS.report_only,
                )
                if result is None:
                    continue
                runs.setdefault((budget, row, views), {})[seed] = result
                report = {
                    "benchmark": "NS3L budget ablation, Fashion-MNIST, 2,000 labels",
                    "precision": FLAGS.precision,
                    "machine": machine(),
                    "num_runs": sum(map(len, runs.values())),
                    "training_seconds_all_runs": round(
                        sum(r["seconds"] for rs in runs.values() for r in rs.values())
                    ),
                    "wall_seconds_this_invocation": round(time.time() - start),
                    "budgets": summarize(runs),
                }
                report["choice"] = choose_on_validation(report["budgets"], budgets, len(seeds))
                write_report(report, os.path.join(FLAGS.results_dir, FLAGS.name))
    if report is None:
        raise no_finished_runs(FLAGS.runs_dir)
    print(markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
