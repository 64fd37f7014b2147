"""Supervised vs NS³L (T=0.03) on real Fashion-MNIST with 2,000 labels (paper's Table 5 rows).

    python benchmarks/fmnist_ns3l_vs_supervised.py [--seeds=1,2,3] [--train_steps=3000]

Each run is `python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg --seed=S` (plus
`--ns3l_weight=0` for supervised), so the benchmark measures exactly what the CLI does. Runs
whose results.json exists are skipped (resumable). Prints mean ± std test errors and writes
`benchmarks/results/fmnist_2000_ns3l_vs_supervised.{json,md}`.
"""

import json
import os
import platform
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")
PAPER = {"supervised": (17.25, 0.22), "ns3l": (16.47, 0.18)}  # Table 5, test error %
ROWS = {"supervised": ["--ns3l_weight=0"], "ns3l": []}

_SEEDS = flags.DEFINE_list("seeds", ["1", "2", "3"], "Labeled-subset seeds.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", None, "Override the flagfile's budget.")
_EXTRA = flags.DEFINE_list("extra_flags", [], "More flags for every run, e.g. --eval_every=500.")
_RUNS_DIR = flags.DEFINE_string(
    "runs_dir", os.path.join(RESULTS_DIR, "runs", "fmnist_2000"), "Where each run writes."
)
_NAME = flags.DEFINE_string("name", "fmnist_2000_ns3l_vs_supervised", "Output file stem.")


def _run(row: str, seed: int) -> dict:
    output_dir = os.path.join(_RUNS_DIR.value, f"{row}_seed{seed}")
    results_path = os.path.join(output_dir, "results.json")
    if not os.path.exists(results_path):
        command = [
            sys.executable,
            "-m",
            "ns3l_tf.train",
            "--flagfile=flags/fmnist_2000.cfg",
            f"--seed={seed}",
            f"--output_dir={output_dir}",
            *ROWS[row],
            *_EXTRA.value,
        ]
        if _TRAIN_STEPS.value:
            command.append(f"--train_steps={_TRAIN_STEPS.value}")
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(results_path) as f:
        return json.load(f)


def _mean_std(values) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def main(argv):
    del argv
    seeds = [int(s) for s in _SEEDS.value]
    start = time.time()
    runs = {row: [_run(row, seed) for seed in seeds] for row in ROWS}
    summary = {}
    for row, results in runs.items():
        summary[row] = {
            "final_test_error": _mean_std([r["test_error"] for r in results]),
            "best_val_test_error": _mean_std([r["best_val_test_error"] for r in results]),
            "final_val_error": _mean_std([r["final_val_error"] for r in results]),
            "seconds_per_run": _mean_std([r["seconds"] for r in results]),
            "per_seed_final_test_error": [r["test_error"] for r in results],
            "paper_test_error": PAPER[row],
        }
    flags_used = runs["ns3l"][0]["flags"]
    report = {
        "benchmark": "Fashion-MNIST 2,000 labels: supervised vs NS3L (T=0.03), small CNN",
        "seeds": seeds,
        "train_steps": flags_used["train_steps"],
        "flags": flags_used,
        "wall_seconds_this_invocation": round(time.time() - start, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "rows": summary,
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{_NAME.value}.json"), "w") as f:
        json.dump(report, f, indent=2)
    lines = [
        f"# {report['benchmark']}",
        "",
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), {report['train_steps']} steps of "
        f"{flags_used['batch_size']} labeled + {flags_used['unlabeled_batch_size']} unlabeled, "
        f"Adam {flags_used['learning_rate']} (×{flags_used['lr_decay_factor']} at step "
        f"{flags_used['lr_decay_step']}); {report['machine']}. Errors in %, mean ± std.",
        "",
        "| row | final test error | test error at best val | final val error | paper | s/run |",
        "|---|---|---|---|---|---|",
    ]
    for row, s in summary.items():
        fmt = lambda ms: f"{ms[0]:.2f} ± {ms[1]:.2f}"  # noqa: E731
        lines.append(
            f"| {row} | {fmt(s['final_test_error'])} | {fmt(s['best_val_test_error'])} | "
            f"{fmt(s['final_val_error'])} | {fmt(s['paper_test_error'])} | "
            f"{s['seconds_per_run'][0]:.0f} |"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS_DIR, f"{_NAME.value}.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    app.run(main)
