"""Does it matter where Fashion-MNIST's images are augmented, for NS³L's gain?

    python benchmarks/augment_placement.py                    # trains what is missing
    python benchmarks/augment_placement.py --report_only       # the report of the finished runs

Issue 12's second difference: the authors' testbed augments inside the network, redrawn at
every forward pass (`--augment=model`, the Fashion-MNIST default since then); before, each
image was translated once per batch in the `tf.data` pipeline (`--augment=pipeline`). Rows:
Supervised, Threshold T = 0.03 and Oracle - 3, with μ from the method's own pass (one view:
with the pipeline's augmentation a second pass would see the same view, so the second-view
form is not comparable). The in-network runs are the budget ablation's (`runs/table5`,
reused); the pipeline runs write to `runs/augment_pipeline`; every run is resumable. Each
NS³L row is paired with the supervised run of its own placement and seed, then the two
placements' differences are paired by seed: `augment_placement.{json,md}`.
"""

import os
import time

from absl import app, flags
from budget_ablation import summarize
from common import (
    RESULTS_DIR,
    define_report_only_flag,
    machine,
    mean_std,
    mean_std_text,
    no_finished_runs,
    table5_run,
)

from ns3l_tf import io_utils

FLAGS = flags.FLAGS

# Placement → (its label, the runs directory under benchmarks/results/runs, its flags).
PLACEMENTS = {
    "model": ("inside the network, redrawn every pass", "table5", []),
    "pipeline": (
        "in the input pipeline, once per batch",
        "augment_pipeline",
        ["--augment=pipeline"],
    ),
}
FORMS = [("supervised", 1), ("threshold_003", 1), ("oracle3", 1)]
COLUMNS = {"test": "test_error", "val": "final_val_error"}


def compare(runs: dict) -> dict:
    """`runs[placement][(budget, row, views)]` = results by seed → per placement the budget
    ablation's `summarize`, and per budget and NS³L form the change in-network − pipeline of
    the paired differences to supervised, paired by seed over the seeds all four runs have.

    Returns:
      `{"placements": {placement: summarize(...)}, "change": {budget: {form: {"seeds",
      "test", "val"}}}}`, each of "test" and "val" a (mean, std) in points; negative: the
      augmentation inside the network helps NS³L more than the pipeline's.
    """
    change = {}
    model, pipeline = runs.get("model", {}), runs.get("pipeline", {})
    for (budget, row, views), by_seed in sorted(model.items()):
        if row == "supervised" or (budget, row, views) not in pipeline:
            continue
        model_sup = model.get((budget, "supervised", 1), {})
        pipeline_sup = pipeline.get((budget, "supervised", 1), {})
        pipeline_row = pipeline[(budget, row, views)]
        seeds = sorted(set(by_seed) & set(model_sup) & set(pipeline_sup) & set(pipeline_row))
        if not seeds:
            continue
        entry = {"seeds": seeds}
        for name, key in COLUMNS.items():
            entry[name] = mean_std(
                [
                    (by_seed[s][key] - model_sup[s][key])
                    - (pipeline_row[s][key] - pipeline_sup[s][key])
                    for s in seeds
                ]
            )
        change.setdefault(str(budget), {})[f"{row}_views{views}"] = entry
    return {
        "placements": {placement: summarize(r) for placement, r in runs.items()},
        "change": change,
    }


def markdown(report: dict) -> str:
    placements = report["placements"]
    lines = [
        "# NS³L on Fashion-MNIST: augmentation inside the network or in the pipeline",
        "",
        "Small CNN, 2,000 labeled / 53,000 unlabeled / 5,000 validation images, 64 + 64 images "
        f"per step, Adam 1e-3 (×0.2 after two thirds of the steps), {report['precision']}; "
        f"{report['machine']}; μ from the method's own pass. Errors in % after the last step, "
        "mean ± std over seeds; *− supervised*: the difference to the supervised run of the "
        "same placement and seed, negative is better; *change*: in-network minus pipeline of "
        "that difference, paired by seed (negative: NS³L gains more with the augmentation "
        "inside the network).",
    ]
    budgets = sorted({b for forms in placements.values() for b in forms}, key=int)
    for budget in budgets:
        lines += [
            "",
            f"## {int(budget):,} steps",
            "",
            "| row | augmentation | seeds | test error | val error | test − supervised | "
            "val − supervised | negative error % |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, _ in FORMS:
            form = name if name == "supervised" else f"{name}_views1"
            for placement, (label, _, _) in PLACEMENTS.items():
                entry = placements.get(placement, {}).get(budget, {}).get(form)
                if entry is None:
                    continue
                lines.append(
                    f"| {entry['label']} | {label} | {len(entry['seeds'])} | "
                    f"{mean_std_text(entry['test_error'])} | {mean_std_text(entry['val_error'])} | "
                    f"{mean_std_text(entry.get('test_minus_supervised'), signed=True)} | "
                    f"{mean_std_text(entry.get('val_minus_supervised'), signed=True)} | "
                    f"{mean_std_text(entry.get('ns3l_negative_error'))} |"
                )
        change = report["change"].get(budget, {})
        if change:
            lines += [
                "",
                "| row | seeds | change, test − supervised | change, val − supervised |",
                "|---|---|---|---|",
            ]
            for form, entry in change.items():
                label = placements["model"][budget][form]["label"]
                lines.append(
                    f"| {label} | {len(entry['seeds'])} | "
                    f"{mean_std_text(entry['test'], signed=True)} | "
                    f"{mean_std_text(entry['val'], signed=True)} |"
                )
    return "\n".join(lines) + "\n"


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("budgets", ["1560", "12000"], "Training steps per run.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Labeled-subset seeds.")
    flags.DEFINE_string("precision", "mixed_bfloat16", "--precision of every run.")
    flags.DEFINE_string(
        "runs_root", os.path.join(RESULTS_DIR, "runs"), "Holds each placement's runs directory."
    )
    flags.DEFINE_list("extra_flags", [], "More flags for every run (tests: --eval_every).")
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Where augment_placement.* go.")
    define_report_only_flag(flags)


def main(argv):
    del argv
    start, runs = time.time(), {}
    for budget in (int(b) for b in FLAGS.budgets):
        for seed in (int(s) for s in FLAGS.seeds):
            for placement, (_, directory, placement_flags) in PLACEMENTS.items():
                for row, views in FORMS:
                    result = table5_run(
                        row,
                        views,
                        budget,
                        seed,
                        FLAGS.precision,
                        os.path.join(FLAGS.runs_root, directory),
                        [*placement_flags, *FLAGS.extra_flags],
                        train=not FLAGS.report_only,
                    )
                    if result is not None:
                        by_form = runs.setdefault(placement, {})
                        by_form.setdefault((budget, row, views), {})[seed] = result
    if not runs:
        raise no_finished_runs(FLAGS.runs_root, "runs_root")
    report = {
        "benchmark": "NS3L augmentation placement, Fashion-MNIST, 2,000 labels",
        "precision": FLAGS.precision,
        "machine": machine(),
        "wall_seconds_this_invocation": round(time.time() - start),
        **compare(runs),
    }
    stem = os.path.join(FLAGS.results_dir, "augment_placement")
    io_utils.write_json(f"{stem}.json", report)
    io_utils.write_text(f"{stem}.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
