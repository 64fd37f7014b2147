"""The paper's Table 5 on real Fashion-MNIST: every way of choosing NS³L's negatives.

    python benchmarks/table5.py                      # 10 rows x 3 seeds, 1,200 steps each
    python benchmarks/table5.py --steps=3000 --decay_step=2000 --eval_interval=500 --seeds=1,2,3,4,5

Every run is `python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg <row flags> --seed=S`
with `--num_validation=0`, so, as in the paper, 2,000 images are labeled and the other 58,000
unlabeled; the figure is the test error after the last step. Runs whose `results.json` exists
are skipped, so an interrupted benchmark resumes. Writes `benchmarks/results/table5.json`,
`table5.md` (mean ± std beside the paper's number, with the mean number of negatives per
image and the negative error rate, i.e. the share of unlabeled images whose negatives include
their true class, over the last evaluation interval) and `table5.png` (bars with error bars).
"""

import os
import time

from absl import app, flags
from common import RESULTS_DIR, machine, mean_std, run_cli

from ns3l_tf import io_utils

# Row name → (label as in the paper, the paper's test error mean and std, the row's flags).
ROWS = {
    "supervised": ("Supervised", (17.25, 0.22), ["--ns3l_weight=0"]),
    "uniform1": (
        "Uniform - 1",
        (18.64, 0.38),
        ["--ns3l_selector=uniform", "--ns3l_num_negatives=1"],
    ),
    "uniform3": (
        "Uniform - 3",
        (19.35, 0.33),
        ["--ns3l_selector=uniform", "--ns3l_num_negatives=3"],
    ),
    "nn_exclude": ("Exclude nearest class with NN", (17.12, 0.15), ["--ns3l_selector=nn_exclude"]),
    "nn_exclude4": (
        "Exclude 4 nearest classes with NN",
        (17.13, 0.21),
        ["--ns3l_selector=nn_exclude4"],
    ),
    "nn_furthest": ("Furthest class with NN", (16.76, 0.15), ["--ns3l_selector=nn_furthest"]),
    "threshold_003": ("Threshold T = 0.03", (16.47, 0.18), ["--ns3l_threshold=0.03"]),
    "threshold_005": ("Threshold T = 0.05", (16.59, 0.19), ["--ns3l_threshold=0.05"]),
    "oracle1": ("Oracle - 1", (16.37, 0.12), ["--ns3l_selector=oracle", "--ns3l_num_negatives=1"]),
    "oracle3": ("Oracle - 3", (15.20, 0.66), ["--ns3l_selector=oracle", "--ns3l_num_negatives=3"]),
}

_ROWS = flags.DEFINE_list("rows", list(ROWS), f"Rows to run, of: {', '.join(ROWS)}.")
_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "Labeled-subset seeds.")
_TRAIN_STEPS = flags.DEFINE_integer("steps", 1200, "Steps of 64 labeled + 64 unlabeled.")
_LR_DECAY_STEP = flags.DEFINE_integer("decay_step", 800, "Learning rate x0.2 after it.")
_EVAL_EVERY = flags.DEFINE_integer("eval_interval", 400, "Steps between evaluations.")
_RUNS_DIR = flags.DEFINE_string("runs_dir", None, "Default: results/runs/table5_<steps>steps.")
_NAME = flags.DEFINE_string("name", "table5", "Output file stem in benchmarks/results.")


def row_flags(row: str) -> list[str]:
    """The CLI flags of a Table 5 row, before the seed and the budget."""
    return ["--flagfile=flags/fmnist_2000.cfg", "--num_validation=0", *ROWS[row][2]]


def summarize(results: list[dict], supervised: list[dict] | None = None) -> dict:
    """Mean ± std over seeds of a row's test error, negatives per image, negative error rate
    (the last evaluation interval's training averages) and times; given the supervised runs
    of the same seeds, also the paired difference to them (each seed draws its own labeled
    set, and the paired difference removes that share of the spread)."""
    last = [r["history"][-1] for r in results]
    summary = {
        "test_error": mean_std([r["test_error"] for r in results]),
        "per_seed_test_error": [r["test_error"] for r in results],
        "seconds_per_run": mean_std([r["seconds"] for r in results]),
        "preprocessing_seconds": mean_std([r.get("preprocessing_seconds", 0.0) for r in results]),
    }
    for key in ("ns3l_negatives", "ns3l_negative_error"):
        if all(key in record for record in last):
            summary[key] = mean_std([record[key] for record in last])
    if supervised is not None:
        differences = [r["test_error"] - s["test_error"] for r, s in zip(results, supervised)]
        summary["paired_difference_to_supervised"] = mean_std(differences)
    return summary


def markdown(report: dict) -> str:
    """Table 5 as markdown: ours beside the paper's, row by row."""
    fmt = lambda ms: f"{ms[0]:.2f} ± {ms[1]:.2f}" if ms else "–"  # noqa: E731
    lines = [
        "# Table 5 on Fashion-MNIST: how NS³L chooses negatives",
        "",
        f"Small CNN, 2,000 labeled / 58,000 unlabeled images, {report['train_steps']:,} steps of "
        f"64 labeled + 64 unlabeled (Adam 1e-3, ×0.2 after step {report['lr_decay_step']}), "
        f"seeds {', '.join(map(str, report['seeds']))}; test error in % after the last step, "
        f"mean ± std. The paper trained for 50 epochs. {report['machine']}; all "
        f"{report['num_runs']} runs took {report['training_seconds_all_runs'] / 60:.0f} min "
        "of training.",
        "",
        "Negatives per image and negative error (% of unlabeled images whose negatives include "
        "their true class) are the training averages over the last evaluation interval.",
        "",
        "Minus supervised: the row's test error minus the supervised run's of the same seed "
        "(the same labeled set), mean ± std over seeds; negative is better.",
        "",
        "| row | test error | paper | minus supervised | negatives / image | "
        "negative error % | s / run |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in report["rows"].values():
        negatives = fmt(s.get("ns3l_negatives"))
        negative_error = fmt(s.get("ns3l_negative_error"))
        seconds = f"{s['seconds_per_run'][0]:.0f}"
        if s["preprocessing_seconds"][0] > 0.05:
            seconds += f" (+{s['preprocessing_seconds'][0]:.1f} NN masks)"
        difference = s.get("paired_difference_to_supervised")
        difference = f"{difference[0]:+.2f} ± {difference[1]:.2f}" if difference else "–"
        lines.append(
            f"| {s['label']} | {fmt(s['test_error'])} | {fmt(s['paper'])} | {difference} | "
            f"{negatives} | {negative_error} | {seconds} |"
        )
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
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_report(report: dict, stem: str) -> None:
    """`<stem>.json`, `<stem>.md` and `<stem>.png`, each written atomically."""
    io_utils.write_json(f"{stem}.json", report)

    def write_markdown(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(markdown(report))

    io_utils.atomic_write(f"{stem}.md", write_markdown, suffix=".md")
    io_utils.atomic_write(f"{stem}.png", lambda path: bar_chart(report, path), suffix=".png")


def main(argv):
    del argv
    unknown = [row for row in _ROWS.value if row not in ROWS]
    if unknown:
        raise app.UsageError(f"--rows: unknown {unknown}; allowed: {', '.join(ROWS)}")
    seeds = [int(s) for s in _SEEDS.value]
    steps = _TRAIN_STEPS.value
    runs_dir = _RUNS_DIR.value or os.path.join(RESULTS_DIR, "runs", f"table5_{steps}steps")
    budget = [
        f"--train_steps={steps}",
        f"--lr_decay_step={_LR_DECAY_STEP.value}",
        f"--eval_every={_EVAL_EVERY.value}",
    ]
    start = time.time()
    runs = {}
    for seed in seeds:  # seed-major: an interrupted run leaves every row with some seeds
        for row in _ROWS.value:
            output_dir = os.path.join(runs_dir, f"{row}_seed{seed}")
            result = run_cli([*row_flags(row), f"--seed={seed}", *budget], output_dir)
            runs.setdefault(row, []).append(result)
    report = {
        "benchmark": "Table 5 on Fashion-MNIST, 2,000 labels, small CNN",
        "seeds": seeds,
        "train_steps": steps,
        "lr_decay_step": _LR_DECAY_STEP.value,
        "machine": machine(),
        "num_runs": sum(map(len, runs.values())),
        "training_seconds_all_runs": round(sum(r["seconds"] for rs in runs.values() for r in rs)),
        "wall_seconds_this_invocation": round(time.time() - start, 1),
        "rows": {
            row: {
                "label": ROWS[row][0],
                "paper": ROWS[row][1],
                **summarize(results, None if row == "supervised" else runs.get("supervised")),
            }
            for row, results in runs.items()
        },
    }
    write_report(report, os.path.join(RESULTS_DIR, _NAME.value))
    print(markdown(report))


if __name__ == "__main__":
    app.run(main)
