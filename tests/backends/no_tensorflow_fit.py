"""Trains on real Fashion-MNIST where TensorFlow cannot be imported; prints JSON for
`test_no_tensorflow.py`.

    python tests/backends/no_tensorflow_fit.py OUTPUT_DIR

Every import of `tensorflow` or `tensorflow_datasets` fails here, as in an environment with
JAX alone: the IDX files are read, split, batched by `PairedBatches` and trained on by
`SSLModel` on JAX, with the model's own augmentation, then saved into OUTPUT_DIR and
reloaded.
"""

import json
import os
import sys

import refuse_tensorflow  # from here on, TensorFlow and TFDS are not installed

os.environ["KERAS_BACKEND"] = "jax"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import ns3l_tf  # noqa: E402
from ns3l_tf import data, models  # noqa: E402
from ns3l_tf.data.numpy_batches import PairedBatches  # noqa: E402
from ns3l_tf.models import augmentation, preprocessing  # noqa: E402


class RecordedBatches(PairedBatches):
    """Records the batch indices `fit` asks for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked = []

    def __getitem__(self, index):
        self.asked.append(int(index))
        return super().__getitem__(index)


def main():
    ssl_data = data.load_ssl_data("fashion_mnist", num_labeled=100, num_validation=100, seed=1)
    keras.utils.set_random_seed(0)
    model = ns3l_tf.SSLModel(
        models.small_cnn(),
        10,
        algorithm="ns3l",
        seed=0,
        preprocessing=preprocessing.standardize(ssl_data.mean, ssl_data.std),
        augmentation=augmentation.input_augmentation(2, False, 0.0, seed=1),
        ns3l_threshold=0.05,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model(ssl_data.test_images[:1])
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    train = RecordedBatches(ssl_data, 16, 16, seed=1)
    history = model.fit(train, steps_per_epoch=3, epochs=2, verbose=0)
    changed = [
        not np.array_equal(keras.ops.convert_to_numpy(w), b)
        for w, b in zip(model.trainable_weights, before, strict=True)
    ]
    evaluation = model.evaluate(
        ssl_data.test_images[:500], ssl_data.test_labels[:500], batch_size=250, verbose=0,
        return_dict=True,
    )  # fmt: skip
    path = os.path.join(sys.argv[1], "model.keras")
    model.save(path)
    reloaded = ns3l_tf.load_model(path)
    images = ssl_data.test_images[:64]
    reloaded_equal = bool(
        np.array_equal(model.predict(images, verbose=0), reloaded.predict(images, verbose=0))
    )
    try:
        data.load_ssl_data("cifar10", num_labeled=250, seed=1)
        tfds_error = None
    except data.DataNotFoundError as error:
        tfds_error = str(error)
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "tensorflow_loaded": refuse_tensorflow.loaded(),
                "source": ssl_data.source.get("directory", ""),
                "asked": train.asked,
                "losses": [float(v) for v in history.history["loss"]],
                "ns3l_negatives": float(history.history["ns3l_negatives"][-1]),
                "weights_changed": sum(changed),
                "weights": len(changed),
                "error": float(evaluation["error"]),
                "reloaded_predicts_alike": reloaded_equal,
                "tfds_error": tfds_error,
            }
        )
    )


if __name__ == "__main__":
    main()
