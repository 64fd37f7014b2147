"""NS³L on real Fashion-MNIST trained on TensorFlow and on JAX: the same test error?

    python benchmarks/backends.py                        # seeds 1-3, 1,200 steps, float32
    python benchmarks/backends.py --report_only          # the table of the finished runs

Every run is `python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg --backend=<b>` with
2,000 labeled, 5,000 validation and 53,000 unlabeled images, NS³L with T = 0.03, float32 on
both backends (XLA's CPU bfloat16 is slower than its float32), `--steps` steps with the
learning rate ×0.2 after two thirds of them. The budget is what JAX's CPU step allows (a
jitted NS³L step of 64 + 64 images takes 0.18 s on 2 cores, against 0.08 s on TensorFlow:
`step_time.md`); the question is only whether the backends agree. Their random streams
differ (Keras draws with `tf.random` on one and `jax.random` on the other), so a seed pairs
the data split, not the draws: agreement means a paired difference within seed noise. Runs
whose `results.json` exists are reused, so an interrupted benchmark resumes. Writes
`benchmarks/results/backends.{json,md}`: per backend the mean ± std of the final test error
and the seconds per run, and the paired JAX − TensorFlow differences with their t-interval
and sign test.
"""

import json
import os

from absl import app, flags
from common import (
    FMNIST_VALIDATION,
    RESULTS_DIR,
    budget_flags,
    define_report_only_flag,
    machine,
    mean_std,
    mean_std_text,
    no_finished_runs,
    paired_test,
    run_cli,
)

from ns3l_tf import io_utils

FLAGS = flags.FLAGS
BACKENDS = ("tensorflow", "jax")


def run(backend: str, seed: int, steps: int, runs_dir: str, train: bool) -> dict | None:
    flags_of_run = [
        "--flagfile=flags/fmnist_2000.cfg",
        f"--num_validation={FMNIST_VALIDATION}",
        *budget_flags(steps),
        "--precision=float32",
        f"--backend={backend}",
        f"--seed={seed}",
    ]
    name = f"{backend}_{steps}steps_seed{seed}"
    return run_cli(flags_of_run, os.path.join(runs_dir, name), train)


def report(results: dict[str, dict[int, dict]], steps: int) -> dict:
    """The summary of the finished runs: per backend, and paired over the seeds both have."""
    summary = {"machine": machine(), "steps": steps, "backends": {}, "runs": {}}
    for backend, by_seed in results.items():
        errors = [r["test_error"] for r in by_seed.values()]
        summary["backends"][backend] = {
            "seeds": sorted(by_seed),
            "test_error": mean_std(errors) if errors else None,
            "seconds": mean_std([r["seconds"] for r in by_seed.values()]) if errors else None,
        }
        summary["runs"][backend] = {str(s): r["test_error"] for s, r in sorted(by_seed.items())}
    both = sorted(set(results["tensorflow"]) & set(results["jax"]))
    if len(both) >= 2:
        differences = [
            results["jax"][s]["test_error"] - results["tensorflow"][s]["test_error"] for s in both
        ]
        summary["jax_minus_tensorflow"] = {"seeds": both, **paired_test(differences)}
    return summary


def markdown(summary: dict) -> str:
    lines = [
        "# The same run on TensorFlow and on JAX",
        "",
        f"NS³L (T = 0.03, λ₁ = 1), Fashion-MNIST with 2,000 labels, small CNN, float32, "
        f"{summary['steps']} steps; {summary['machine']}. `python benchmarks/backends.py`.",
        "",
        "| backend | seeds | test error (%) | seconds per run |",
        "|---|---|---|---|",
    ]
    for backend, row in summary["backends"].items():
        lines.append(
            f"| {backend} | {', '.join(map(str, row['seeds']))} | "
            f"{mean_std_text(row['test_error'])} | {mean_std_text(row['seconds'])} |"
        )
    paired = summary.get("jax_minus_tensorflow")
    if paired:
        low, high = paired["ci95"]
        lines += [
            "",
            f"JAX − TensorFlow, paired by seed ({', '.join(map(str, paired['seeds']))}): "
            f"{paired['mean']:+.2f} % points, 95 % t-interval [{low:+.2f}, {high:+.2f}], "
            f"sign test p = {paired['sign_test_p']:.3f}.",
        ]
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    seeds = [int(s) for s in FLAGS.seeds]
    results = {backend: {} for backend in BACKENDS}
    for seed in seeds:
        for backend in BACKENDS:
            finished = run(backend, seed, FLAGS.steps, FLAGS.runs_dir, not FLAGS.report_only)
            if finished is not None:
                results[backend][seed] = finished
    if not any(results.values()):
        raise no_finished_runs(FLAGS.runs_dir)
    summary = report(results, FLAGS.steps)
    io_utils.write_json(os.path.join(FLAGS.results_dir, "backends.json"), summary)
    text = markdown(summary)
    with open(os.path.join(FLAGS.results_dir, "backends.md"), "w", encoding="utf-8") as f:
        f.write(text)
    print(text)
    print(json.dumps(summary["backends"]))


if __name__ == "__main__":
    flags.DEFINE_list("seeds", ["1", "2", "3"], "Seeds, each run on both backends.")
    flags.DEFINE_integer("steps", 1200, "Training steps per run (the demo's budget).")
    flags.DEFINE_string(
        "runs_dir", os.path.join(RESULTS_DIR, "runs", "backends"), "Where each run writes."
    )
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Where the report goes.")
    define_report_only_flag(flags)
    app.run(main)
