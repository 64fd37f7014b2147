"""What the training benchmarks share: resumable CLI runs and their summary statistics."""

import json
import os
import platform
import subprocess
import sys

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO_ROOT, "benchmarks", "results")


def run_cli(train_flags: list[str], output_dir: str) -> dict:
    """`python -m ns3l_tf.train <train_flags> --output_dir=<output_dir>`, unless that run's
    `results.json` exists already (benchmarks resume where they stopped); its results."""
    results_path = os.path.join(output_dir, "results.json")
    if not os.path.exists(results_path):
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


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def machine() -> str:
    """E.g. `x86_64, 2 cores`."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
