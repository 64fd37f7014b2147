"""Inspect a dataset split: sizes, labeled counts per class, digest, and augmented samples.

    python -m ns3l_tf.inspect_data --dataset=cifar10 --num_labeled=4000 --seed=1 [--png=augment.png]

Takes the same data flags as `ns3l_tf.train` (`--dataset --data_dir --num_labeled
--num_validation --seed --extra_unlabeled`), so it shows exactly the split a run would use.
`--png` saves a grid: the first row holds labeled images as stored, every further row the same
images through the training augmentation with another seed.
"""

import os
import pathlib

import numpy as np
from absl import flags

from ns3l_tf import cli, io_utils
from ns3l_tf import config as config_lib
from ns3l_tf import data as data_lib

_PNG = flags.DEFINE_string("png", None, "Write a grid of augmented training images here.")
_PNG_COLUMNS = flags.DEFINE_integer("png_columns", 12, "Images per row of the grid.", lower_bound=1)
_PNG_ROWS = flags.DEFINE_integer(
    "png_rows", 4, "Augmented rows below the originals.", lower_bound=1
)
config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)


def describe(data: data_lib.SSLData, config: config_lib.Config) -> str:
    """A human-readable summary of a split and of how a run would feed it to the model."""
    info = data.info
    counts = np.bincount(data.labeled_labels, minlength=info.num_classes)
    extra = f" + {data.extra_size} extra ({info.extra_split})" if data.extra_size else ""
    where = "inside the model, every pass" if config.augments_in_model else "in the pipeline"
    noise = f", Gaussian noise {config.input_noise:g}" if config.input_noise else ""
    lines = [
        f"dataset     {info.name}: {'x'.join(map(str, info.image_shape))}, "
        f"{info.num_classes} classes",
        f"labeled     {len(data.labeled_labels)}",
        f"unlabeled   {len(data.unlabeled_images)}{extra}",
        f"validation  {len(data.validation_labels)}",
        f"test        {len(data.test_labels)}",
        "labeled per class  " + " ".join(f"{k}:{n}" for k, n in enumerate(counts)),
        f"labeled digest     {data.labeled_digest()}  (SHA-256 of labeled images + labels)",
        f"channel mean/std   {[round(float(m), 4) for m in data.mean]} / "
        f"{[round(float(s), 4) for s in data.std]}",
        f"preprocessing      {config.preprocessing} (inside the model)",
        f"augmentation       {where}: translate ±{config.max_translation} px (reflect), "
        f"{'horizontal flips' if config.flips else 'no flips'}{noise}",
    ]
    return "\n".join(lines)


def augmentation_grid(
    data: data_lib.SSLData, columns: int, rows: int, seed: int, max_translation: int, flip: bool
) -> np.ndarray:
    """uint8 `(H', W', C)` grid: originals on top, `rows` augmented copies below, 2 px gaps."""
    import tensorflow as tf

    from ns3l_tf.data import augment as augment_lib

    images = data.labeled_images[:columns]
    versions = [images] + [
        augment_lib.augment(images, tf.constant([seed, row]), max_translation, flip).numpy()
        for row in range(rows)
    ]
    pixels = np.pad(
        np.stack(versions), [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)], constant_values=255
    )
    grid = pixels.transpose(0, 2, 1, 3, 4)  # (rows, H, columns, W, C)
    height, width = grid.shape[0] * grid.shape[1], grid.shape[2] * grid.shape[3]
    grid = grid.reshape(height, width, grid.shape[-1])
    scale = max(1, 192 // data.info.image_shape[0])  # small images are hard to see
    return grid.repeat(scale, axis=0).repeat(scale, axis=1)


def main(argv):
    cli.reject_arguments(argv)
    try:
        config = config_lib.config_from_flags()
    except config_lib.ConfigError as error:
        cli.usage_error(str(error))
    cli.require_tensorflow()
    from ns3l_tf import experiment  # TensorFlow: only once flags are valid

    try:
        data = experiment.load_data(config)
    except data_lib.DataNotFoundError as error:
        cli.usage_error(str(error))
    except (data_lib.CorruptDataError, data_lib.DownloadError) as error:
        cli.runtime_error(str(error))
    print(describe(data, config))
    if _PNG.value:
        import tensorflow as tf

        grid = augmentation_grid(
            data,
            _PNG_COLUMNS.value,
            _PNG_ROWS.value,
            config.seed,
            config.max_translation,
            config.flips,
        )
        png = tf.io.encode_png(grid).numpy()
        io_utils.atomic_write(_PNG.value, lambda path: pathlib.Path(path).write_bytes(png), ".png")
        print(f"wrote {os.path.abspath(_PNG.value)}: {grid.shape[1]}x{grid.shape[0]} px")


def run():
    """The `ns3l-data` console script."""
    cli.run(main, __name__, config_lib.define_methods_flags)


if __name__ == "__main__":
    run()
