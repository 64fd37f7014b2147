"""Input preprocessing as Keras layers: raw images (uint8, 0–255) in, network inputs out.

The layers hold their statistics, fitted on the training images, as weights or config, so a
saved `SSLModel` takes the dataset's raw images (`ns3l_tf.models.PREPROCESSING` names them):

- `standardize(mean, std)`: per-channel `(x / 255 − mean) / std` (`keras.layers.Rescaling`).
- `rescale()`: `x / 127.5 − 1`, into [−1, 1] (`keras.layers.Rescaling`): SVHN in Oliver et
  al. (`lib/dataset_utils.py:239-243`), every dataset in MixMatch (`libml/data.py:45`).
- `fit_gcn_zca(images)`: global contrast normalisation (×55) then ZCA whitening with 0.1·I
  added to the covariance, as Oliver et al. preprocess CIFAR-10
  (`build_tfrecords.py:166-173`, `lib/dataset_utils.py:409-483`).
"""

import keras
import numpy as np
from keras import ops

GCN_SCALE = 55.0
GCN_EPSILON = 1e-10
ZCA_IDENTITY_SCALE = 0.1
ZCA_EPSILON = 1e-10


def global_contrast_normalize(images, scale: float = GCN_SCALE, epsilon: float = GCN_EPSILON):
    """Per image: subtract its mean, divide by its L2 norm (left alone below `epsilon`),
    times `scale`. `images` `(N, D)` float; NumPy arrays or backend tensors."""
    centred = images - ops.mean(images, axis=-1, keepdims=True)
    norm = ops.sqrt(ops.sum(ops.square(centred), axis=-1, keepdims=True))
    return scale * centred / ops.where(norm < epsilon, ops.ones_like(norm), norm)


@keras.saving.register_keras_serializable(package="ns3l_tf")
class GCNZCA(keras.layers.Layer):
    """Global contrast normalisation, then ZCA whitening: `(gcn(x) − mean) · W`.

    Args:
      mean: `(D,)` mean of the GCN'd training images, D = H·W·C.
      whitening: `(D, D)` ZCA matrix `U diag(1/√(S + 1e-10)) Uᵀ` of their covariance + 0.1·I.
      Both are non-trainable weights (saved with the model); omit them to load weights later.

    Call args:
      images: `(..., H, W, C)` raw images (any dtype, 0–255).

    Returns:
      float32 `(..., H, W, C)`.
    """

    def __init__(self, mean=None, whitening=None, **kwargs):
        super().__init__(**kwargs)
        self._initial = (mean, whitening)

    def build(self, input_shape):
        size = int(np.prod(input_shape[-3:]))
        mean, whitening = self._initial
        self.mean = self.add_weight(
            shape=(size,),
            initializer="zeros" if mean is None else keras.initializers.Constant(mean),
            trainable=False,
            name="mean",
        )
        self.whitening = self.add_weight(
            shape=(size, size),
            initializer="identity" if whitening is None else keras.initializers.Constant(whitening),
            trainable=False,
            name="whitening",
        )

    def call(self, images):
        shape = ops.shape(images)
        flat = ops.reshape(ops.cast(images, "float32"), (-1, self.mean.shape[0]))
        whitened = ops.matmul(global_contrast_normalize(flat) - self.mean, self.whitening)
        return ops.reshape(whitened, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return super().get_config()  # the statistics are weights, restored with the model's


def fit_gcn_zca(images: np.ndarray) -> GCNZCA:
    """A `GCNZCA` fitted on `images` `(N, H, W, C)` (float64 statistics, as the reference)."""
    flat = global_contrast_normalize(images.reshape(len(images), -1).astype(np.float64))
    flat = np.asarray(flat)
    covariance = np.cov(flat, rowvar=False)
    u, s, _ = np.linalg.svd(covariance + ZCA_IDENTITY_SCALE * np.eye(len(covariance)))
    whitening = (u * (1.0 / np.sqrt(s + ZCA_EPSILON))) @ u.T
    mean = flat.mean(axis=0).astype("float32")
    return GCNZCA(mean, whitening.astype("float32"), dtype="float32")


def standardize(mean, std) -> keras.layers.Rescaling:
    """Per-channel `(x / 255 − mean) / std` for raw 0–255 images, as `x · scale + offset`;
    `mean`, `std` `(C,)` on the [0, 1] scale (`SSLData.mean`, `SSLData.std`)."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    scale, offset = 1.0 / (255.0 * std), -mean / std
    return keras.layers.Rescaling(
        scale.astype(np.float32), offset=offset.astype(np.float32), dtype="float32"
    )


def rescale() -> keras.layers.Rescaling:
    """`x / 127.5 − 1`: raw 0–255 images into [−1, 1]."""
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, dtype="float32")
