"""Stochastic input augmentation inside the model, redrawn at every training-mode call.

Oliver et al.'s testbed augments inside the network (`lib/networks.py:140-152`): a random
horizontal flip per image (where the dataset allows), a random translation of up to ±2 px per
image with reflect padding, then Gaussian noise (σ = 0.15 on CIFAR-10), each drawn afresh in
every forward pass. So VAT's clean and perturbed passes, and NS³L's two views, see different
augmentations of the same images. In inference mode the layers pass images through unchanged.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ns3l_tf")
class RandomReflectTranslation(keras.layers.Layer):
    """Translates each image by an integer offset drawn uniformly from [−s, s]² per image,
    filling the border by reflection (`tf.pad(..., "REFLECT")`: d c b | a b c d | c b a).

    `keras.layers.RandomTranslation` fills with "reflect" = d c b a | a b c d (the edge pixel
    repeated) and draws continuous offsets, so it is not the reference's augmentation.

    Args:
      max_shift: s, the largest shift in pixels per axis.
      seed: seeds the layer's `keras.random.SeedGenerator`.

    Call args:
      images: `(B, H, W, C)` float images.
      training: translate only when True.
    """

    def __init__(self, max_shift: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_shift = max_shift
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or not self.max_shift:
            return images
        shift = self.max_shift
        height, width = images.shape[1], images.shape[2]
        padded = ops.pad(images, [[0, 0], [shift, shift], [shift, shift], [0, 0]], mode="reflect")
        offsets = keras.random.randint(
            (ops.shape(images)[0], 2), 0, 2 * shift + 1, seed=self.seed_generator
        )
        rows = offsets[:, :1] + ops.arange(height)[None, :]  # (B, H) rows of the padded image
        cols = offsets[:, 1:] + ops.arange(width)[None, :]  # (B, W)
        cropped = ops.take_along_axis(padded, rows[:, :, None, None], axis=1)
        return ops.take_along_axis(cropped, cols[:, None, :, None], axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_shift": self.max_shift, "seed": self.seed}


def input_augmentation(
    max_translation: int, flip: bool, noise_stddev: float, seed: int | None = None
) -> keras.Sequential | None:
    """Oliver et al.'s in-network augmentation: flip (if `flip`), then a reflect-padded
    translation of up to `max_translation` px, then Gaussian noise of `noise_stddev` (if > 0),
    each per image and redrawn at every training-mode call; None when it does nothing.

    Args:
      max_translation: largest shift in pixels (2 in Oliver et al.).
      flip: random horizontal flips (CIFAR, STL-10; not SVHN or Fashion-MNIST).
      noise_stddev: σ of additive Gaussian noise, in preprocessed input units (0.15 on CIFAR).
      seed: seeds the three layers' random draws (seed, seed + 1, seed + 2).
    """
    seeds = [None] * 3 if seed is None else [seed, seed + 1, seed + 2]
    layers = []
    if flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seeds[0], dtype="float32"))
    if max_translation:
        layers.append(RandomReflectTranslation(max_translation, seed=seeds[1], dtype="float32"))
    if noise_stddev:
        layers.append(keras.layers.GaussianNoise(noise_stddev, seed=seeds[2], dtype="float32"))
    return keras.Sequential(layers, name="augmentation") if layers else None
