"""What keeping auxiliary passes off a backbone's moving statistics costs per training step.

    python benchmarks/frozen_statistics_cost.py [--backbones=wrn28_2,mobilenet_v3_small]
        [--algorithms=vat+ns3l,mixmatch+ns3l,ns3l/2views] [--steps=6]

`SSLModel` runs VAT's perturbed passes, MixMatch's guessing and later interleaved passes and
NS³L's second view in training mode, then puts back every moving statistic those passes
updated (`ns3l_tf.models.layers.BackboneState.preserved_statistics`): a copy of the
statistics before each pass and an assignment after it. Each configuration times the step
`fit` runs (64 labeled + 64 unlabeled 32×32×3 images, float32) twice on the same model: as
shipped, and with the restore switched off (statistics then wrong: the cost's baseline
only). Backbones: the package's WRN-28-2 and `keras.applications.MobileNetV3Small`
(`weights=None`, `classifier_activation=None`, its own 0-255 input rescaling); `small_cnn`
on request. Writes
`benchmarks/results/frozen_statistics_cost.{json,md}`.
"""

import contextlib
import os

import keras
import numpy as np
import tensorflow as tf
from absl import app, flags
from common import RESULTS_DIR, machine
from step_time import median_step_seconds, synthetic_batch

from ns3l_tf import SSLModel, io_utils, models
from ns3l_tf.models import layers

FLAGS = flags.FLAGS

SHAPE = (32, 32, 3)
BACKBONES = {
    "wrn28_2": lambda: models.build_backbone("wrn28_2", 10, SHAPE),
    "mobilenet_v3_small": lambda: keras.applications.MobileNetV3Small(
        input_shape=SHAPE, weights=None, classes=10, classifier_activation=None
    ),
    "small_cnn": lambda: models.build_backbone("small_cnn", 10, SHAPE),
}


@contextlib.contextmanager
def restore_switched_off():
    """Auxiliary passes update the statistics as if they were the updating pass."""
    original = layers.BackboneState.preserved_statistics
    layers.BackboneState.preserved_statistics = lambda self: contextlib.nullcontext()
    try:
        yield
    finally:
        layers.BackboneState.preserved_statistics = original


def time_row(backbone: str, row: str, restore: bool, steps: int, batch_size: int) -> dict:
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    algorithm, _, variant = row.partition("/")
    settings = {"ns3l_views": 2} if variant == "2views" else {}
    model = SSLModel(BACKBONES[backbone](), 10, algorithm=algorithm, seed=0, **settings)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build_for_training()
    batch, _ = synthetic_batch(model, SHAPE, batch_size)
    batch = tf.nest.map_structure(tf.constant, batch)
    with contextlib.nullcontext() if restore else restore_switched_off():
        _, seconds = median_step_seconds(model, batch, steps)  # traced inside the block
    statistics = model._backbone_state.statistics
    return {
        "backbone": backbone,
        "algorithm": row,
        "restore": restore,
        "seconds_per_step": round(seconds, 4),
        "statistics_weights": len(statistics),
        "statistics_values": int(sum(np.prod(w.shape) for w in statistics)),
    }


def overheads(rows: list[dict]) -> list[dict]:
    """Per backbone and algorithm: the step with the restore over the step without."""
    seconds = {(r["backbone"], r["algorithm"], r["restore"]): r["seconds_per_step"] for r in rows}
    return [
        {
            "backbone": backbone,
            "algorithm": algorithm,
            "ratio": round(value / seconds[(backbone, algorithm, False)], 3),
            "ms_per_step": round(1000 * (value - seconds[(backbone, algorithm, False)]), 1),
        }
        for (backbone, algorithm, restore), value in seconds.items()
        if restore and (backbone, algorithm, False) in seconds
    ]


def markdown(report: dict) -> str:
    lines = [
        "# Cost of leaving auxiliary passes off the moving statistics",
        "",
        f"{report['machine']}; batch {report['batch_size']} labeled + {report['batch_size']} "
        "unlabeled 32×32×3 (×2 augmentations for MixMatch), float32, median of "
        f"{report['steps']} steps after 2 warm-up steps. "
        "`python benchmarks/frozen_statistics_cost.py`.",
        "",
        "| backbone | algorithm | statistics (weights / values) | s/step restored | "
        "s/step not restored | ratio | ms/step |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = {(r["backbone"], r["algorithm"], r["restore"]): r for r in report["rows"]}
    for o in report["overheads"]:
        on = rows[(o["backbone"], o["algorithm"], True)]
        off = rows[(o["backbone"], o["algorithm"], False)]
        lines.append(
            f"| {o['backbone']} | {o['algorithm']} | {on['statistics_weights']} / "
            f"{on['statistics_values']:,} | {on['seconds_per_step']:.3f} | "
            f"{off['seconds_per_step']:.3f} | {o['ratio']:.3f} | {o['ms_per_step']:+.1f} |"
        )
    return "\n".join(lines) + "\n"


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_list("backbones", ["wrn28_2", "mobilenet_v3_small"], "Backbones to time.")
    flags.DEFINE_list(
        "algorithms", ["vat+ns3l", "mixmatch+ns3l", "ns3l/2views"], "Algorithms to time."
    )
    flags.DEFINE_integer("steps", 6, "Timed steps per configuration.")
    flags.DEFINE_integer("batch_size", 64, "Labeled and unlabeled batch size.")
    flags.DEFINE_string("results_dir", RESULTS_DIR, "Output.")


def main(argv):
    del argv
    rows = []
    for backbone in FLAGS.backbones:
        for row in FLAGS.algorithms:
            for restore in (True, False):
                rows.append(time_row(backbone, row, restore, FLAGS.steps, FLAGS.batch_size))
                print(rows[-1], flush=True)
    report = {
        "machine": machine(),
        "batch_size": FLAGS.batch_size,
        "steps": FLAGS.steps,
        "rows": rows,
        "overheads": overheads(rows),
    }
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    io_utils.write_json(os.path.join(FLAGS.results_dir, "frozen_statistics_cost.json"), report)
    io_utils.write_text(
        os.path.join(FLAGS.results_dir, "frozen_statistics_cost.md"), markdown(report)
    )
    print(markdown(report))


if __name__ == "__main__":
    define_flags()
    app.run(main)
