"""Input throughput vs what a WRN-28-2 training step consumes, on CIFAR-shaped data.

    python benchmarks/input_pipeline.py [--batches=300] [--step_batches=8]

The pipeline is `ns3l_tf.data.train_dataset` over random uint8 32×32×3 images (4,000 labeled,
41,000 unlabeled, the CIFAR-10 4000-label split sizes) with CIFAR's augmentation (reflect
translation ±2 px, flips) and MixMatch's two augmentations of each unlabeled image. It counts
the augmented images delivered per second (64 labeled + 2 × 64 unlabeled per batch). The
consumer is a WRN-28-2 supervised + NS³L train step on 64 + 64 images (the step-time
benchmark of the methods issue will add MixMatch's own step). Writes
`benchmarks/results/input_pipeline.{json,md}`; the pipeline should deliver ≥ 5× what the step
consumes.
"""

import json
import os
import platform
import time

import keras
import numpy as np
from absl import app, flags

from ns3l_tf import SSLModel, models
from ns3l_tf import data as data_lib
from ns3l_tf.models import preprocessing

FLAGS = flags.FLAGS

REQUIRED_RATIO = 5.0


def cifar_shaped_data() -> data_lib.SSLData:
    """Random CIFAR-10-shaped images split like CIFAR-10 with 4,000 labels."""
    rng = np.random.default_rng(0)
    raw = data_lib.RawData(
        train_images=rng.integers(0, 256, (50_000, 32, 32, 3), dtype=np.uint8),
        train_labels=np.arange(50_000, dtype=np.int64) % 10,
        test_images=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
        test_labels=np.arange(10, dtype=np.int64),
    )
    return data_lib.ssl_data_from_raw(data_lib.DATASETS["cifar10"], raw, 4000, 5000, seed=0)


def pipeline_images_per_second(data, batch_size: int, augmentations: int, batches: int):
    ds = data_lib.train_dataset(data, batch_size, batch_size, 0, augmentations)
    iterator = iter(ds)
    for _ in range(20):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    seconds = time.perf_counter() - start
    return batches * batch_size * (1 + augmentations) / seconds


def step_images_per_second(data, batch_size: int, steps: int):
    model = SSLModel(
        models.wrn28_2(),
        10,
        algorithm="ns3l",
        ns3l_threshold=0.04,
        preprocessing=preprocessing.rescale(),  # the pipeline delivers raw images
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.build_for_training()  # before the trace: it would trace twice otherwise
    batches = list(data_lib.train_dataset(data, batch_size, batch_size, 0).take(steps + 2))
    model.make_train_function()
    step = model.train_function  # the tf.function that fit runs

    def run(batch):
        logs = step(iter([batch]))
        float(logs["loss"])  # wait for the step to finish

    for batch in batches[:2]:
        run(batch)
    times = []
    for batch in batches[2:]:
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return 2 * batch_size / median, median


def define_flags():
    """The command line's flags (defined only when run as a script, so tests can import it)."""
    flags.DEFINE_integer("batches", 300, "Pipeline batches timed (after 20 warm-up).")
    flags.DEFINE_integer("step_batches", 8, "Train steps timed (after 2 warm-up).")
    flags.DEFINE_integer("batch_size", 64, "Labeled (and unlabeled) batch size.")
    flags.DEFINE_integer("augmentations", 2, "Augmentations per unlabeled image.")
    flags.DEFINE_string(
        "results_dir",
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
        "Output.",
    )


def main(argv):
    del argv
    data = cifar_shaped_data()
    pipeline = pipeline_images_per_second(
        data, FLAGS.batch_size, FLAGS.augmentations, FLAGS.batches
    )
    consumed, step_seconds = step_images_per_second(data, FLAGS.batch_size, FLAGS.step_batches)
    report = {
        "pipeline_images_per_second": round(pipeline, 1),
        "pipeline": f"CIFAR-shaped, {FLAGS.batch_size} labeled + {FLAGS.augmentations} x "
        f"{FLAGS.batch_size} unlabeled per batch, translate + flip",
        "step_images_per_second": round(consumed, 1),
        "step": f"WRN-28-2 supervised + NS3L, {FLAGS.batch_size} + {FLAGS.batch_size} images",
        "step_seconds_median": round(step_seconds, 4),
        "ratio": round(pipeline / consumed, 1),
        "required_ratio": REQUIRED_RATIO,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, no GPU",
    }
    os.makedirs(FLAGS.results_dir, exist_ok=True)
    with open(os.path.join(FLAGS.results_dir, "input_pipeline.json"), "w") as f:
        json.dump(report, f, indent=2)
    table = (
        "# Input pipeline throughput vs WRN-28-2 step consumption\n\n"
        f"{report['machine']}; `python benchmarks/input_pipeline.py`.\n\n"
        "| what | images/s |\n|---|---|\n"
        f"| pipeline: {report['pipeline']} | {report['pipeline_images_per_second']:,.0f} |\n"
        f"| step: {report['step']} ({step_seconds:.3f} s/step) | "
        f"{report['step_images_per_second']:,.0f} |\n\n"
        f"Ratio {report['ratio']}x (required ≥ {REQUIRED_RATIO:.0f}x): "
        f"{'met' if report['ratio'] >= REQUIRED_RATIO else 'NOT met'}.\n"
    )
    with open(os.path.join(FLAGS.results_dir, "input_pipeline.md"), "w") as f:
        f.write(table)
    print(table)


if __name__ == "__main__":
    define_flags()
    app.run(main)
