"""What the training benchmarks share: resumable CLI runs and their summary statistics."""

import json
import math
import os
import platform
import subprocess
import sys
from typing import NoReturn

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")


def run_cli(train_flags: list[str], output_dir: str, train: bool = True) -> dict | None:
    """`python -m ns3l_tf.train <train_flags> --output_dir=<output_dir>`, unless that run's
    `results.json` exists already (benchmarks resume where they stopped); its results. With
    `train=False` nothing is started: an unfinished run's results are None."""
    results_path = os.path.join(output_dir, "results.json")
    if not os.path.exists(results_path):
        if not train:
            return None
        command = [
            sys.executable,
            "-m",
            "ns3l_tf.train",
            *train_flags,
            f"--output_dir={output_dir}",
        ]
        print("$", " ".join(command[1:]), flush=True)
        subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    with open(results_path) as f:
        return json.load(f)


def define_report_only_flag(flags) -> None:
    """`--report_only`: rewrite a benchmark's report from its finished runs, start none."""
    flags.DEFINE_bool(
        "report_only", False, "Start no run: rewrite the report from the runs already finished."
    )


def no_finished_runs(runs_dir: str, flag: str = "runs_dir") -> SystemExit:
    """The one-line failure (exit code 1) of a report with nothing to report under `--<flag>`."""
    return SystemExit(f"error: no finished run under --{flag}={runs_dir}; nothing to report")


def usage_error(message: str) -> NoReturn:
    """Ends a benchmark with `error: <message>` on one stderr line and exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


# Two-sided 95 % quantiles of Student's t by degrees of freedom (t_{0.975, df}).
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131}  # fmt: skip


def paired_test(differences) -> dict:
    """Whether paired differences (a row minus its baseline, seed by seed) are distinguishable
    from zero: the mean with its 95 % t-interval, and the exact two-sided sign test.

    Args:
      differences: 2 to 16 paired differences (in % points); exact zeros count for neither
        sign and leave the sign test.

    Returns:
      `{"n", "mean", "ci95": [low, high], "negative", "positive", "sign_test_p"}`.
    """
    values = np.asarray(differences, np.float64)
    n = len(values)
    if not 2 <= n <= 16:
        raise ValueError(f"paired_test takes 2 to 16 differences, got {n}")
    half = T_975[n - 1] * values.std(ddof=1) / np.sqrt(n)
    negative, positive = int((values < 0).sum()), int((values > 0).sum())
    signed = negative + positive
    tail = sum(math.comb(signed, k) for k in range(min(negative, positive) + 1)) / 2**signed
    return {
        "n": n,
        "mean": float(values.mean()),
        "ci95": [float(values.mean() - half), float(values.mean() + half)],
        "negative": negative,
        "positive": positive,
        "sign_test_p": float(min(1.0, 2 * tail)),
    }


def mean_std_text(mean_and_std, signed: bool = False) -> str:
    """`mean ± std` with two decimals (a sign on the mean when `signed`); `–` for None."""
    if not mean_and_std:
        return "–"
    mean, std = mean_and_std
    return f"{mean:+.2f} ± {std:.2f}" if signed else f"{mean:.2f} ± {std:.2f}"


def machine() -> str:
    """E.g. `x86_64, 2 cores`."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


# The paper's Table 5 rows on Fashion-MNIST: the label as in the paper, the paper's test error
# (mean, std) and the row's flags on top of flags/fmnist_2000.cfg. The caption: "the number
# after the dash indicates the number of negative labels per sample selected".
TABLE5_ROWS = {
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
    "nn_exclude": (
        "Exclude class of NN - 1",
        (17.12, 0.15),
        ["--ns3l_selector=nn_exclude", "--ns3l_num_negatives=1"],
    ),
    "nn_exclude4": (
        "Exclude 4 nearest classes with NN - 1",
        (17.13, 0.21),
        ["--ns3l_selector=nn_exclude4", "--ns3l_num_negatives=1"],
    ),
    "nn_furthest": ("Furthest class with NN - 1", (16.76, 0.15), ["--ns3l_selector=nn_furthest"]),
    # The same two rows read class-wise (classes ranked by their nearest labeled member).
    "nn_exclude4_classes": (
        "Exclude 4 nearest classes with NN - 1 (class-wise)",
        (17.13, 0.21),
        ["--ns3l_selector=nn_exclude4_classes", "--ns3l_num_negatives=1"],
    ),
    "nn_furthest_class": (
        "Furthest class with NN - 1 (class-wise)",
        (16.76, 0.15),
        ["--ns3l_selector=nn_furthest_class"],
    ),
    "threshold_003": ("Threshold T = 0.03", (16.47, 0.18), ["--ns3l_threshold=0.03"]),
    "threshold_005": ("Threshold T = 0.05", (16.59, 0.19), ["--ns3l_threshold=0.05"]),
    "oracle1": ("Oracle - 1", (16.37, 0.12), ["--ns3l_selector=oracle", "--ns3l_num_negatives=1"]),
    "oracle3": ("Oracle - 3", (15.20, 0.66), ["--ns3l_selector=oracle", "--ns3l_num_negatives=3"]),
}
# Training images held out for validation, so that budgets and forms are chosen on them.
FMNIST_VALIDATION = 5000


def _largest_divisor(number: int, at_most: int) -> int:
    return max(d for d in range(1, max(1, at_most) + 1) if number % d == 0)


def budget_flags(steps: int, evaluations: int = 6, checkpoint_steps: int = 500) -> list[str]:
    """A budget of `steps`: learning rate ×0.2 after two thirds of it (as flags/common/fmnist.cfg's
    2,000 of 3,000), evaluated about `evaluations` times (at a divisor of `steps`), with a
    resumable checkpoint at least every `checkpoint_steps` (an interrupted benchmark loses
    little; checkpoints do not change a run's results)."""
    every = _largest_divisor(steps, steps // evaluations)
    return [
        f"--train_steps={steps}",
        f"--lr_decay_step={round(2 * steps / 3)}",
        f"--eval_every={every}",
        f"--checkpoint_every={_largest_divisor(every, checkpoint_steps)}",
    ]


def table5_run(
    row: str,
    views: int,
    steps: int,
    seed: int,
    precision: str,
    runs_dir: str,
    extra=(),
    train: bool = True,
) -> dict | None:
    """One Fashion-MNIST run of a Table 5 row (resumable): μ from `views` passes, `steps` steps,
    2,000 labeled and 5,000 validation images, then the `extra` flags; its results (None for
    an unfinished run when `train=False`)."""
    form = [] if row == "supervised" else [f"--ns3l_views={views}"]
    name = row if row == "supervised" else f"{row}_views{views}"
    flags = [
        "--flagfile=flags/fmnist_2000.cfg",
        f"--num_validation={FMNIST_VALIDATION}",
        *TABLE5_ROWS[row][2],
        *form,
        *budget_flags(steps),
        f"--precision={precision}",
        f"--seed={seed}",
        *extra,
    ]
    return run_cli(flags, os.path.join(runs_dir, f"{name}_{steps}steps_seed{seed}"), train)


def paired(results: list[dict], baseline: list[dict], key: str) -> tuple[float, float]:
    """Mean ± std over seeds of `result[key] − baseline[key]`, runs paired by position (seed)."""
    return mean_std([r[key] - b[key] for r, b in zip(results, baseline, strict=True)])
