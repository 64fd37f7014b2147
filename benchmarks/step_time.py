"""Median training-step time of every method, with and without NS³L and XLA.

    python benchmarks/step_time.py [--models=wrn28_2,small_cnn] [--xla=false,true] [--steps=6]

Each configuration builds a fresh `SSLModel`, compiles it (`jit_compile` on or off), runs the
same function `fit` runs on a fixed batch (64 labeled + 64 unlabeled, two augmentations for
MixMatch), discards 2 warm-up steps (tracing) and reports the median of `--steps` timed steps
and the images per second it consumes. Rows accumulate in `benchmarks/results/step_time.json`
(a rerun of some configurations replaces just those rows; the file is rewritten after each
one), which also renders as `step_time.md`, with the paper's claims checked: adding NS³L costs
≤ 5% over the same method (for methods that already process unlabeled data), and NS³L alone
takes ≤ half of VAT's step time.
"""

import json
import os
import platform
import time

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags

from ns3l_tf import SSLModel, models

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SHAPES = {"wrn28_2": (32, 32, 3), "small_cnn": (28, 28, 1)}
ALGORITHMS = [
    "supervised",
    "ns3l",
    "pseudo_label",
    "pseudo_label+ns3l",
    "vat",
    "vat+ns3l",
    "vat+entmin",
    "vat+entmin+ns3l",
    "mixmatch",
    "mixmatch+ns3l",
]
NS3L_OVERHEAD_BUDGET = 1.05
NS3L_VS_VAT_BUDGET = 0.5

_MODELS = flags.DEFINE_list("models", ["wrn28_2", "small_cnn"], "Backbones to time.")
_ALGORITHMS = flags.DEFINE_list("algorithms", ALGORITHMS, "Algorithms to time.")
_XLA = flags.DEFINE_list("xla", ["false", "true"], "jit_compile settings to time.")
_STEPS = flags.DEFINE_integer("steps", 6, "Timed steps per configuration.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Labeled and unlabeled batch size.")


def _batch(model: SSLModel, shape, batch_size: int):
    rng = np.random.default_rng(0)
    x_l = rng.normal(size=(batch_size, *shape)).astype("float32")
    y_l = (np.arange(batch_size) % 10).astype("int64")
    if not model.uses_unlabeled_data:
        return (x_l, y_l), batch_size
    augmentations = model.unlabeled_augmentations
    u_shape = (augmentations, batch_size) if augmentations > 1 else (batch_size,)
    x_u = rng.normal(size=(*u_shape, *shape)).astype("float32")
    return ((x_l, y_l), x_u), batch_size * (1 + augmentations)


def time_step(model_name: str, algorithm: str, xla: bool, steps: int, batch_size: int) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    shape = SHAPES[model_name]
    model = SSLModel(models.build_backbone(model_name, 10, shape), 10, algorithm=algorithm, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=xla)
    model(np.zeros((1, *shape), "float32"))
    batch, images = _batch(model, shape, batch_size)
    batch = tf.nest.map_structure(tf.constant, batch)
    model.make_train_function()
    train_function = model.train_function  # the tf.function that fit runs

    def run():
        start = time.perf_counter()
        float(train_function(iter([batch]))["loss"])  # blocks until the step is done
        return time.perf_counter() - start

    first = run()
    run()
    seconds = float(np.median([run() for _ in range(steps)]))
    return {
        "model": model_name,
        "algorithm": algorithm,
        "xla": xla,
        "seconds_per_step": round(seconds, 4),
        "images_per_second": round(images / seconds, 1),
        "first_call_seconds": round(first, 2),
    }


def _checks(rows):
    by_key = {(r["model"], r["algorithm"], r["xla"]): r["seconds_per_step"] for r in rows}
    checks = []
    for (model, algorithm, xla), seconds in sorted(by_key.items()):
        if algorithm.endswith("+ns3l") and not algorithm.startswith("supervised"):
            base = by_key.get((model, algorithm.removesuffix("+ns3l"), xla))
            if base:
                ratio = seconds / base
                checks.append(
                    {
                        "check": f"{algorithm} / {algorithm.removesuffix('+ns3l')}",
                        "model": model,
                        "xla": xla,
                        "ratio": round(ratio, 3),
                        "budget": NS3L_OVERHEAD_BUDGET,
                        "met": ratio <= NS3L_OVERHEAD_BUDGET,
                    }
                )
        if algorithm == "ns3l" and (model, "vat", xla) in by_key:
            ratio = seconds / by_key[(model, "vat", xla)]
            checks.append(
                {
                    "check": "ns3l / vat",
                    "model": model,
                    "xla": xla,
                    "ratio": round(ratio, 3),
                    "budget": NS3L_VS_VAT_BUDGET,
                    "met": ratio <= NS3L_VS_VAT_BUDGET,
                }
            )
    return checks


def _key(row):
    return (row["model"], row["algorithm"], row["xla"])


def _load_rows(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {_key(row): row for row in json.load(f)["rows"]}


def _order(row):
    algorithm = ALGORITHMS.index(row["algorithm"]) if row["algorithm"] in ALGORITHMS else 99
    return list(SHAPES).index(row["model"]), row["xla"], algorithm


def _write(path: str, rows: dict, machine: str) -> dict:
    ordered = sorted(rows.values(), key=_order)
    report = {"machine": machine, "batch_size": _BATCH.value, "rows": ordered}
    report["checks"] = _checks(ordered)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return report


def main(argv):
    del argv
    machine = f"{platform.machine()}, {os.cpu_count()} cores, no GPU, TF {tf.__version__}"
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, "step_time.json")
    rows = _load_rows(path)
    report = _write(path, rows, machine)
    for model_name in _MODELS.value:
        for xla in [x.lower() == "true" for x in _XLA.value]:
            for algorithm in _ALGORITHMS.value:
                row = time_step(model_name, algorithm, xla, _STEPS.value, _BATCH.value)
                rows[_key(row)] = row
                print(json.dumps(row), flush=True)
                report = _write(path, rows, machine)
    lines = [
        "# Training-step time per method",
        "",
        f"{machine}; batch {_BATCH.value} labeled + {_BATCH.value} unlabeled (×2 augmentations "
        "for MixMatch); median of timed steps after 2 warm-up steps; "
        "`python benchmarks/step_time.py`.",
        "",
        "| model | algorithm | XLA | s/step | images/s | first call (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {r['algorithm']} | {'on' if r['xla'] else 'off'} | "
            f"{r['seconds_per_step']:.3f} | {r['images_per_second']:.0f} | "
            f"{r['first_call_seconds']:.1f} |"
        )
    lines += ["", "| check | model | XLA | ratio | budget | met |", "|---|---|---|---|---|---|"]
    for c in report["checks"]:
        lines.append(
            f"| {c['check']} | {c['model']} | {'on' if c['xla'] else 'off'} | {c['ratio']:.2f} | "
            f"≤ {c['budget']} | {'yes' if c['met'] else 'no'} |"
        )
    table = "\n".join(lines) + "\n"
    with open(os.path.join(RESULTS_DIR, "step_time.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    app.run(main)
