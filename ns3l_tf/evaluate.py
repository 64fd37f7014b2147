"""Evaluate a finished run's model, predict new images, or export it.

    python -m ns3l_tf.evaluate --run_dir=runs/x                       # test error, last weights
    python -m ns3l_tf.evaluate --run_dir=runs/x --weights=best --split=validation
    python -m ns3l_tf.evaluate --run_dir=runs/x --images=shirts/ --output=shirts.csv
    python -m ns3l_tf.evaluate --run_dir=runs/x --export=tflite      # → runs/x/export/model.tflite

(`ns3l-evaluate` once installed.) The model is the run's `model.keras` (its last weights: the
weight EMA where the run evaluated one), or with `--weights=best` the weights of its lowest
validation error. It takes raw images, pixel values 0–255, and applies the run's
preprocessing itself. `--split` evaluates the run's own test or validation split (read as the
run read it) and prints the error; `--output` also writes every image's probabilities.
`--images` (a `.npy` array `(N, H, W, C)` or a directory of PNG/JPEG files of the run's image
size) writes probabilities and the predicted class per image to `--output` (CSV, or NPY of the
`(N, K)` probabilities). Evaluating a split also writes the run's evaluation report
(`evaluation.json`: error, top-5 error, balanced and per-class accuracy, macro precision,
recall and F1, NLL, Brier score, ECE, the confusion matrix; and its two pictures, see
`ns3l_tf.evaluation_report`). `--export` writes a SavedModel or a TFLite file whose `serve`
function maps raw float32 images to probabilities.

Bad input (a missing or unfinished run, images of another shape, an unknown format) gets one
line on stderr and exit code 2; the traceback only under `--verbose`.
"""

import csv
import os

import numpy as np
from absl import flags

from ns3l_tf import cli, io_utils
from ns3l_tf import run_dir as run_dir_lib

_RUN_DIR = flags.DEFINE_string("run_dir", None, "A finished run's directory (--output_dir).")
_WEIGHTS = flags.DEFINE_enum(
    "weights", "last", ["last", "best"], "last: model.keras; best: lowest validation error."
)
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "validation"], "The run's split to evaluate.")
_IMAGES = flags.DEFINE_string(
    "images", None, "Predict these instead: a .npy array (N, H, W, C) or a directory of images."
)
_OUTPUT = flags.DEFINE_string(
    "output", None, "Write probabilities here: .csv or .npy (default with --images: "
    "predictions.csv in the current directory)."
)  # fmt: skip
_EXPORT = flags.DEFINE_enum(
    "export", None, ["saved_model", "tflite"], "Export the model instead of evaluating it."
)
_EXPORT_PATH = flags.DEFINE_string(
    "export_path", None, "Where --export writes (default: <run_dir>/export/saved_model or "
    "<run_dir>/export/model.tflite)."
)  # fmt: skip
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 1000, "Images per forward pass.", lower_bound=1)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Where the run's dataset is (default: where the run read it)."
)


def check_flags() -> str | None:
    """Usage errors found from the flags alone; the output path (or None)."""
    if not _RUN_DIR.value:
        cli.usage_error("--run_dir is required: the directory of a finished run")
    if _EXPORT.value and (_IMAGES.value or _OUTPUT.value):
        cli.usage_error("--export writes the model only: drop --images and --output")
    output = _OUTPUT.value or ("predictions.csv" if _IMAGES.value else None)
    if output and not output.endswith((".csv", ".npy")):
        cli.usage_error(f"--output={output}: must end in .csv or .npy")
    if _IMAGES.value and not os.path.exists(_IMAGES.value):
        cli.usage_error(f"--images={_IMAGES.value}: no such file or directory")
    try:
        run_dir_lib.finished_model_path(_RUN_DIR.value)
    except run_dir_lib.RunDirError as error:
        cli.usage_error(str(error))
    return output


def write_predictions(path: str, probabilities: np.ndarray, names: list[str], labels=None):
    """`.npy`: the `(N, K)` probabilities; `.csv`: one row per image — its name, predicted
    class, label (for a split) and the K probabilities."""
    if path.endswith(".npy"):
        io_utils.atomic_write(path, lambda tmp: np.save(tmp, probabilities), suffix=".npy")
        return

    def write(tmp):
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            header = ["image", "predicted_class", *(["label"] if labels is not None else [])]
            writer.writerow(header + [f"p{k}" for k in range(probabilities.shape[1])])
            for i, (name, row) in enumerate(zip(names, probabilities)):
                label = [int(labels[i])] if labels is not None else []
                writer.writerow([name, int(np.argmax(row)), *label, *(f"{p:.6g}" for p in row)])

    io_utils.atomic_write(path, write)


def split_images(run_dir: str, split: str, data_dir: str | None):
    """The run's `split` as it read it (its flags in `results.json`; the data from
    `data_dir` if given): raw images and labels."""
    from ns3l_tf import data as data_lib
    from ns3l_tf.config import Config

    flags_of_run = run_dir_lib.RunDirectory(run_dir).finished()["flags"]
    config = Config(**{**flags_of_run, **({"data_dir": data_dir} if data_dir else {})})
    data = data_lib.load_ssl_data(**config.split_arguments())
    if split == "validation":
        if not len(data.validation_labels):
            cli.usage_error(f"--split=validation: the run at {run_dir} held out no validation")
        return data.validation_images, data.validation_labels
    return data.test_images, data.test_labels


def main(argv):
    cli.reject_arguments(argv)
    output = check_flags()
    cli.require_tensorflow()
    from ns3l_tf import data as data_lib
    from ns3l_tf import inference  # TensorFlow: only once the flags are good

    run_dir = _RUN_DIR.value
    try:
        model = inference.load_run_model(run_dir, _WEIGHTS.value)
        if _EXPORT.value:
            default = "saved_model" if _EXPORT.value == "saved_model" else "model.tflite"
            path = _EXPORT_PATH.value or os.path.join(run_dir, "export", default)
            inference.export(model, path, _EXPORT.value)
            print(f"exported {_EXPORT.value} ({_WEIGHTS.value} weights) to {path}")
            return
        if _IMAGES.value:
            images, names = inference.read_images(_IMAGES.value, model.image_shape)
            probabilities = inference.predict_probabilities(model, images, _BATCH_SIZE.value)
            write_predictions(output, probabilities, names)
            print(f"{len(images)} images: probabilities and predicted classes in {output}")
            return
        images, labels = split_images(run_dir, _SPLIT.value, _DATA_DIR.value)
        images = inference.check_images(images, model.image_shape, f"--split={_SPLIT.value}")
        probabilities = inference.predict_probabilities(model, images, _BATCH_SIZE.value)
        if output:
            write_predictions(output, probabilities, [str(i) for i in range(len(images))], labels)
        report = inference.write_evaluation(
            run_dir, _SPLIT.value, _WEIGHTS.value, probabilities, labels
        )
        print(
            f"{_SPLIT.value} error {report['error']:.2f}% on {len(labels)} images "
            f"({_WEIGHTS.value} weights of {run_dir}); balanced accuracy "
            f"{report['balanced_accuracy']:.2f}%, ECE {report['ece']:.4f}; report in "
            f"{os.path.join(run_dir, inference.EVALUATION_FILE)}"
            + (f"; probabilities in {output}" if output else "")
        )
    except (inference.InputError, run_dir_lib.RunDirError, data_lib.DataNotFoundError) as error:
        cli.usage_error(str(error))
    except (data_lib.CorruptDataError, data_lib.DownloadError, run_dir_lib.DamagedFileError) as e:
        cli.runtime_error(str(e))
    except OSError as error:
        cli.runtime_error(io_utils.os_error_message(error))


def run():
    """The `ns3l-evaluate` console script."""
    cli.run(main, __name__)


if __name__ == "__main__":
    run()
