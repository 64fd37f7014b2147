"""Methods compared on real Fashion-MNIST with 2,000 labels and one budget.

    python benchmarks/fmnist_2000.py                       # supervised vs NS³L, seeds 1-3
    python benchmarks/fmnist_2000.py --rows=ns3l,vat_ns3l --precisions=float32,mixed_bfloat16 \
        --name=fmnist_2000_precision                       # bfloat16 against float32
    python benchmarks/fmnist_2000.py --rows=supervised,pseudo_label,vat,vat_entmin,ns3l,\
        vat_ns3l,mixmatch,mixmatch_ns3l --seeds=1,2 --name=fmnist_2000_methods
    python benchmarks/fmnist_2000.py --report_only         # the report of the finished runs

Each run is `python -m ns3l_tf.train --flagfile=<the row's flagfile> --seed=S`, so the
benchmark measures exactly what the CLI does: `supervised` and `ns3l` are the paper's Table 5
rows (`flags/fmnist_2000.cfg` with and without `--ns3l_weight=0`), every other row is
`flags/fmnist_2000_<row>.cfg`. Runs whose results.json exists are skipped (resumable; rows
share runs across invocations). Prints mean ± std test errors and rewrites
`benchmarks/results/<name>.{json,md}` after every finished run.
"""

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
    paired,
    run_cli,
)

from ns3l_tf import io_utils

FLAGS = flags.FLAGS

PAPER = {"supervised": (17.25, 0.22), "ns3l": (16.47, 0.18)}  # Table 5, test error %


def row_flags(row: str) -> list[str]:
    """The CLI flags of a row: its flagfile (and `--ns3l_weight=0` for supervised)."""
    if row == "supervised":
        return ["--flagfile=flags/fmnist_2000.cfg", "--ns3l_weight=0"]
    if row == "ns3l":
        return ["--flagfile=flags/fmnist_2000.cfg"]
    return [f"--flagfile=flags/fmnist_2000_{row}.cfg"]


def _run(row: str, precision: str, seed: int) -> dict | None:
    extra = [
        *FLAGS.extra_flags,
        *([f"--train_steps={FLAGS.train_steps}"] if FLAGS.train_steps else []),
        f"--precision={precision}",
    ]
    output_dir = os.path.join(FLAGS.runs_dir, f"{row}_{precision}_seed{seed}")
    return run_cli(
        [*row_flags(row), f"--seed={seed}", *extra], output_dir, train=not FLAGS.report_only
    )


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("rows", ["supervised", "ns3l"], "Rows (methods) to compare.")
    flags.DEFINE_list("precisions", ["float32"], "--precision values; each row runs in each.")
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Labeled-subset seeds.")
    flags.DEFINE_integer("train_steps", None, "Override the flagfile's budget.")
    flags.DEFINE_list("extra_flags", [], "More flags for every run, e.g. --eval_every=500.")
    flags.DEFINE_string(
        "runs_dir", os.path.join(RESULTS_DIR, "runs", "fmnist_2000"), "Where each run writes."
    )
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Where the report goes.")
    flags.DEFINE_string("name", "fmnist_2000_ns3l_vs_supervised", "Output file stem.")
    define_report_only_flag(flags)


def report(runs: dict, seeds: list[int], start: float) -> dict:
    """The report of the runs finished so far: `runs[(row, precision)]` = their results."""
    summary, base_precision = {}, FLAGS.precisions[0]
    for (row, precision), results in runs.items():
        entry = summary[f"{row} ({precision})"] = {
            "row": row,
            "precision": precision,
            "seeds": [r["flags"]["seed"] for r in results],
            "final_test_error": mean_std([r["test_error"] for r in results]),
            "best_val_test_error": mean_std([r["best_val_test_error"] for r in results]),
            "final_val_error": mean_std([r["final_val_error"] for r in results]),
            "seconds_per_run": mean_std([r["seconds"] for r in results]),
            "per_seed_final_test_error": [r["test_error"] for r in results],
            "paper_test_error": PAPER.get(row),
        }
        if precision != base_precision and (row, base_precision) in runs:
            base = runs[(row, base_precision)]
            entry["paired_difference_to_base_precision"] = paired_by_seed(results, base)
    flags_used = next(iter(runs.values()))[0]["flags"]
    return {
        "benchmark": f"Fashion-MNIST 2,000 labels, small CNN: {', '.join(FLAGS.rows)}",
        "seeds": seeds,
        "train_steps": flags_used["train_steps"],
        "flags": flags_used,
        "wall_seconds_this_invocation": round(time.time() - start, 1),
        "training_seconds_all_runs": round(
            sum(r["seconds"] for rs in runs.values() for r in rs), 1
        ),
        "machine": machine(),
        "rows": summary,
    }


def paired_by_seed(results: list[dict], baseline: list[dict]) -> tuple[float, float]:
    """Mean ± std of the final test error minus the baseline run's of the same seed, over the
    seeds both finished (the same seed draws the same labeled set, so pairing removes its
    spread)."""
    by_seed = {r["flags"]["seed"]: r for r in baseline}
    common = [r for r in results if r["flags"]["seed"] in by_seed]
    return paired(common, [by_seed[r["flags"]["seed"]] for r in common], "test_error")


def markdown(report: dict) -> str:
    flags_used, summary = report["flags"], report["rows"]
    seeds = report["seeds"]
    lines = [
        f"# {report['benchmark']}",
        "",
        f"Seeds {', '.join(map(str, seeds))}, {report['train_steps']} steps of "
        f"{flags_used['batch_size']} labeled + {flags_used['unlabeled_batch_size']} unlabeled, "
        f"Adam {flags_used['learning_rate']} (×{flags_used['lr_decay_factor']} at step "
        f"{flags_used['lr_decay_step']}); {report['machine']}. Errors in %, mean ± std over "
        "the seeds finished so far. *s/run* is each run's wall time with its evaluations, "
        "whatever else shared the CPU (`step_time.md` measures speed).",
        "",
        "| row | precision | seeds | final test error | test error at best val | "
        "final val error | paper | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in summary.values():
        lines.append(
            f"| {s['row']} | {s['precision']} | {', '.join(map(str, s['seeds']))} | "
            f"{mean_std_text(s['final_test_error'])} | {mean_std_text(s['best_val_test_error'])} | "
            f"{mean_std_text(s['final_val_error'])} | {mean_std_text(s['paper_test_error'])} | "
            f"{s['seconds_per_run'][0]:.0f} |"
        )
    if len(FLAGS.precisions) > 1:
        lines += ["", f"Mean final test error minus {FLAGS.precisions[0]}'s, per row:", ""]
        for row in FLAGS.rows:
            base = summary.get(f"{row} ({FLAGS.precisions[0]})")
            for precision in FLAGS.precisions[1:]:
                other = summary.get(f"{row} ({precision})")
                if base and other:
                    difference = other["final_test_error"][0] - base["final_test_error"][0]
                    mean, std = other["paired_difference_to_base_precision"]
                    lines.append(
                        f"- {row}, {precision}: {difference:+.2f} points (seeds "
                        f"{', '.join(map(str, other['seeds']))} against "
                        f"{', '.join(map(str, base['seeds']))}); paired by seed "
                        f"{mean:+.2f} ± {std:.2f}"
                    )
    lines += [
        "",
        f"Training time of all {sum(len(s['seeds']) for s in summary.values())} runs: "
        f"{report['training_seconds_all_runs'] / 60:.0f} min (this invocation: "
        f"{report['wall_seconds_this_invocation'] / 60:.0f} min; finished runs are reused).",
    ]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    seeds = [int(s) for s in FLAGS.seeds]
    start, runs, current = time.time(), {}, None
    stem = os.path.join(FLAGS.results_dir, FLAGS.name)
    for row in FLAGS.rows:
        for precision in FLAGS.precisions:
            for seed in seeds:  # the report is rewritten after every finished run
                result = _run(row, precision, seed)
                if result is None:
                    continue
                runs.setdefault((row, precision), []).append(result)
                current = report(runs, seeds, start)
                io_utils.write_json(f"{stem}.json", current)
                io_utils.write_text(f"{stem}.md", markdown(current))
    if current is None:
        raise no_finished_runs(FLAGS.runs_dir)
    print(markdown(current))


if __name__ == "__main__":
    define_flags()
    app.run(main)
