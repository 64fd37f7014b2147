"""A finished run's model at work: its error on a split, probabilities for new images, export.

    model = load_run_model("runs/fashion_mnist_2000_ns3l_seed1", weights="best")
    probabilities = predict_probabilities(model, read_images("shirts/", model.image_shape))
    export(model, "exported", "saved_model")      # or "tflite"

A run's `model.keras` takes the dataset's raw images — uint8 (or float) pixel values 0–255,
`(N, H, W, C)` — and applies its preprocessing (scaling, standardisation or ZCA, fitted on the
run's training split) itself; its output is logits, `predict_probabilities` their softmax.
"""

import contextlib
import os
import pathlib
import zipfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from ns3l_tf import evaluation_report, io_utils, methods
from ns3l_tf import run_dir as run_dir_lib
from ns3l_tf.models import precision
from ns3l_tf.ssl_model import SSLModel, load_model

BEST_WEIGHTS_FILE = os.path.join("checkpoints", "best.weights.h5")
EVALUATION_FILE = "evaluation.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
EXPORT_FORMATS = ("saved_model", "tflite")


class InputError(ValueError):
    """A run, weights or images that cannot be used; the message names the file and why."""


def load_run_model(run_dir: str, weights: str = "last") -> SSLModel:
    """A finished run's model, with its last weights (`model.keras`: the weight EMA where the
    run evaluated one) or those of its lowest validation error (`checkpoints/best.weights.h5`).

    Raises:
      RunDirError: no finished run there.
      InputError: no best weights (a run without validation data).
      DamagedFileError: `model.keras` or the best weights cannot be read (truncated, empty).
    """
    if weights not in ("last", "best"):
        raise InputError(f"--weights={weights}: allowed: last, best")
    path = run_dir_lib.finished_model_path(run_dir)
    # A method of the run's own --methods_module must be registered before its model loads.
    flags_of_run = run_dir_lib.RunDirectory(run_dir).finished().get("flags", {})
    methods.load_methods_module(flags_of_run.get("methods_module"))
    with _reading(path, "a .keras archive"):
        model = load_model(path, compile=False)
    if weights == "best":
        path = os.path.join(run_dir, BEST_WEIGHTS_FILE)
        if not os.path.isfile(path):
            raise InputError(
                f"--weights=best: {path} does not exist (the run had no validation data); "
                "use --weights=last"
            )
        with _reading(path, "an HDF5 weights file"):
            model.load_weights(path)
    return model


@contextlib.contextmanager
def _reading(path: str, what: str):
    """Turns a failure to read the existing file `path` into one `DamagedFileError` line.

    Keras reports a truncated or empty `.keras` or `.weights.h5` file as one of several
    errors (a bad zip archive, "File not found", an HDF5 `OSError`); the file exists, so each
    means the same: it is damaged."""
    try:
        yield
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as error:
        summary = " ".join(str(error).split())[:200]
        raise run_dir_lib.DamagedFileError(
            f"{path}: damaged, not readable as {what} ({type(error).__name__}: {summary})"
        ) from None


def check_images(images: np.ndarray, image_shape: tuple, source: str) -> np.ndarray:
    """`(N, H, W, C)` float32 images of the model's shape; `(N, H, W)` is taken as one channel.

    Images whose largest value is at most 1 (already scaled to 0–1?) are taken, with a
    one-line warning naming `source`.

    Raises:
      InputError: another shape, no images, complex, NaN or infinite values, or values outside
        0–255 (naming `source`).
    """
    images = np.asarray(images)
    if images.ndim == 3 and image_shape[-1] == 1:
        images = images[..., None]
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(image_shape) or not len(images):
        raise InputError(
            f"{source}: images of shape {images.shape}; the model takes (N, "
            f"{', '.join(map(str, image_shape))}) raw images"
        )
    if not np.issubdtype(images.dtype, np.number) or np.iscomplexobj(images):
        raise InputError(f"{source}: {images.dtype} values, not pixel values")
    finite = np.isfinite(images)
    if not finite.all():
        raise InputError(
            f"{source}: {int(images.size - finite.sum())} NaN or infinite values; the model "
            "takes raw pixel values 0-255"
        )
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 255:
        raise InputError(
            f"{source}: values from {low:g} to {high:g}; the model takes raw pixel values 0-255"
        )
    if high <= 1:
        logging.warning(
            "%s: every value is at most %g: images already scaled to 0-1? The model takes raw "
            "pixel values 0-255 and will see them as nearly black",
            source,
            high,
        )
    return images.astype("float32")


def read_images(path: str, image_shape: tuple) -> tuple[np.ndarray, list[str]]:
    """Images from a `.npy` file `(N, H, W, C)` or a directory of image files (PNG, JPEG, BMP,
    GIF; sorted by name, decoded to the model's channels, never resized), and their names.

    Raises:
      InputError: a missing path, an unreadable file, or images of another size.
    """
    if os.path.isdir(path):
        names = sorted(f for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
        if not names:
            raise InputError(f"--images={path}: no {', '.join(IMAGE_SUFFIXES)} files in it")
        images = []
        for name in names:
            file = os.path.join(path, name)
            try:
                image = tf.io.decode_image(
                    tf.io.read_file(file), channels=image_shape[-1], expand_animations=False
                ).numpy()
            except tf.errors.OpError as error:
                raise InputError(f"{file}: cannot be decoded ({error.message})") from None
            if image.shape != tuple(image_shape):
                raise InputError(
                    f"{file}: {image.shape[1]}x{image.shape[0]} pixels; the model takes "
                    f"{image_shape[1]}x{image_shape[0]} (resize it first)"
                )
            images.append(image)
        return check_images(np.stack(images), image_shape, path), names
    if not path.endswith(".npy"):
        raise InputError(f"--images={path}: not a .npy file or a directory of images")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"--images={path}: cannot be read ({error})") from None
    images = check_images(array, image_shape, path)
    return images, [str(i) for i in range(len(images))]


def predict_probabilities(model: SSLModel, images: np.ndarray, batch_size: int = 1000):
    """Raw `(N, H, W, C)` images → `(N, K)` float32 class probabilities (softmax of the
    model's logits, in inference mode)."""
    logits = model.predict(images, batch_size=batch_size, verbose=0)
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def write_evaluation(run_dir: str, split: str, weights: str, probabilities, labels) -> dict:
    """Writes the evaluation report (`ns3l_tf.evaluation_report`) of `weights` on `split` into
    `run_dir`: the entry `"<split>/<weights>"` of `evaluation.json` (other entries kept) and,
    where matplotlib is installed, `<split>_<weights>_confusion_matrix.png` and
    `<split>_<weights>_reliability_diagram.png`. Returns the report.

    Raises:
      DamagedFileError: an existing `evaluation.json` cannot be read.
    """
    report = evaluation_report.report(probabilities, labels)
    path = os.path.join(run_dir, EVALUATION_FILE)
    reports = run_dir_lib.read_json(path) if os.path.exists(path) else {}
    reports[f"{split}/{weights}"] = report
    io_utils.write_json(path, reports)
    prefix = os.path.join(run_dir, f"{split}_{weights}_")
    if evaluation_report.write_pictures(report, prefix, f"{split}, {weights} weights") is None:
        logging.info("pictures of %s skipped: pip install matplotlib to draw them", path)
    return report


def export(model: SSLModel, path: str, format: str) -> str:
    """Exports `model` for serving: one function `serve` from raw float32 `(N, H, W, C)`
    images (pixel values 0–255) to `(N, K)` class probabilities, computed in float32 (a
    mixed-precision package backbone switches to it: `precision.full_precision`).

    Args:
      format: "saved_model" (a TensorFlow SavedModel directory at `path`) or "tflite" (a
        TensorFlow Lite flatbuffer file at `path`, converted from the SavedModel).

    Returns:
      The path written.
    """
    if format not in EXPORT_FORMATS:
        raise InputError(f"--export={format}: allowed: {', '.join(EXPORT_FORMATS)}")
    spec = tf.TensorSpec((None, *model.image_shape), tf.float32, name="images")
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        with precision.full_precision():  # TFLite's kernels take no bfloat16 or float16
            return keras.ops.softmax(model(images, training=False), axis=-1)

    archive.add_endpoint("serve", serve, [spec])
    if format == "saved_model":
        archive.write_out(path, verbose=False)
        return path
    saved = path + ".saved_model"
    archive.write_out(saved, verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved, signature_keys=["serve"])
    flatbuffer = converter.convert()
    io_utils.atomic_write(path, lambda tmp: pathlib.Path(tmp).write_bytes(flatbuffer))
    tf.io.gfile.rmtree(saved)
    return path
