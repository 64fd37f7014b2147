"""FixMatch's strong augmentation as a Keras layer: RandAugment with random magnitudes, then
Cutout, per image, on raw 0–255 images.

It follows the reference's RandAugment pool with Cutout (google-research/fixmatch
`libml/augment.py:37-42`, the 14 operations; `:198`, two operations per image drawn with
replacement, each applied with probability 0.5 at a magnitude drawn afresh; `:222`, then
`cutout_numpy`, a square of half the image side, `third_party/auto_augment/augmentations.py:
102-121` with size 16 of 32). It is built from the sub-layers of `keras.layers.RandAugment`,
which cannot be used as it is: it draws its operations once per *batch*, not per image, and
has neither Identity nor Cutout.

How the Keras sub-layers differ from the reference (`augmentations.py:254-420`):
- magnitudes are continuous, uniform over the whole range per image, where the reference
  draws an integer level in 1 … 9 of 10;
- Brightness adds an offset (the reference scales by a factor in [0.28, 1.72]); Color
  (saturation) is dropped for one-channel images, where it is the identity;
- rotations, shears and translations fill with mid-gray 127.5, the value of the reference's
  Cutout (`augmentations.py:_cutout_pil_impl`, `(127, 127, 127)`).
"""

import keras
from keras import ops

# Geometric operations fill the pixels they uncover with mid-gray (see the list above).
_FILL = {"fill_mode": "constant", "fill_value": 127.5}


def _operations(channels: int) -> dict:
    """`{name: layer or None}` for the reference's 14 operations (Color only in colour), each
    a Keras sub-layer with the reference's range."""
    layers = keras.layers
    value_range = (0, 255)
    operations = {
        "identity": None,
        "auto_contrast": layers.AutoContrast(value_range=value_range),
        "equalize": layers.Equalization(value_range=value_range),
        "rotate": layers.RandomRotation(30 / 360, **_FILL),  # ±30°
        "solarize": layers.Solarization(threshold_factor=(0.1, 0.9), value_range=value_range),
        "color": layers.RandomColorDegeneration(0.9, value_range=value_range),
        "contrast": layers.RandomContrast(0.9, value_range=value_range),  # ×[0.1, 1.9]
        "brightness": layers.RandomBrightness(0.3, value_range=value_range),
        "sharpness": layers.RandomSharpness(0.9, value_range=value_range),
        "shear_x": layers.RandomShear(x_factor=0.3, **_FILL),
        "shear_y": layers.RandomShear(y_factor=0.3, **_FILL),
        "translate_x": layers.RandomTranslation(0.0, 0.3, **_FILL),  # 10 px of 32
        "translate_y": layers.RandomTranslation(0.3, 0.0, **_FILL),
        "posterize": layers.RandomPosterization((1, 4), value_range=value_range),  # bits
    }
    if channels == 1:
        del operations["color"]
    return operations


@keras.saving.register_keras_serializable(package="ns3l_tf")
class StrongAugmentation(keras.layers.Layer):
    """RandAugment (two operations per image, each with probability `apply_probability`, at
    random magnitudes), then Cutout of a mid-gray square of `cutout_fraction` of the side.

    Args:
      num_operations: operations drawn per image, with replacement (2).
      apply_probability: the chance that a drawn operation is applied (0.5).
      cutout_fraction: the side of the Cutout square over the image side (0.5).
      seed: seeds the layer's `keras.random.SeedGenerator` (every draw comes from it).

    Call args:
      images: `(B, H, W, C)` float images in 0–255.
      training: augment only when True.

    Returns:
      `(B, H, W, C)` float32 images in 0–255.
    """

    def __init__(
        self,
        num_operations: int = 2,
        apply_probability: float = 0.5,
        cutout_fraction: float = 0.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_operations = num_operations
        self.apply_probability = apply_probability
        self.cutout_fraction = cutout_fraction
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.operations = None

    def build(self, input_shape):
        self.operations = _operations(int(input_shape[-1]))
        for layer in self.operations.values():
            if layer is not None:
                layer.build(input_shape)

    def call(self, images, training=True):
        if not training:
            return images
        images = ops.cast(images, "float32")
        for _ in range(self.num_operations):
            images = self._one_operation(images)
        return ops.clip(self._cutout(images), 0.0, 255.0)

    def _one_operation(self, images):
        """Each image through one operation of its own draw, or unchanged."""
        batch = ops.shape(images)[0]
        chosen = keras.random.randint((batch,), 0, len(self.operations), seed=self.seed_generator)
        applied = keras.random.uniform((batch,), seed=self.seed_generator) < self.apply_probability
        chosen = ops.where(applied, chosen, 0)  # 0: identity
        result = images
        for index, layer in enumerate(self.operations.values()):
            if layer is None:
                continue
            transformation = layer.get_random_transformation(
                images, training=True, seed=self.seed_generator
            )
            transformed = ops.cast(layer.transform_images(images, transformation), "float32")
            result = ops.where(ops.reshape(chosen == index, (-1, 1, 1, 1)), transformed, result)
        return result

    def _cutout(self, images):
        """A mid-gray square of side `cutout_fraction · H` at a uniform centre per image,
        clipped at the border (`augmentations.py:create_cutout_mask`)."""
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        half = int(self.cutout_fraction * min(height, width)) // 2
        centre = keras.random.randint((batch, 2), 0, min(height, width), seed=self.seed_generator)
        rows = ops.arange(height)[None, :]
        cols = ops.arange(width)[None, :]
        in_rows = (rows >= centre[:, :1] - half) & (rows < centre[:, :1] + half)  # (B, H)
        in_cols = (cols >= centre[:, 1:] - half) & (cols < centre[:, 1:] + half)  # (B, W)
        square = in_rows[:, :, None, None] & in_cols[:, None, :, None]
        return ops.where(square, 127.5, images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "num_operations": self.num_operations,
            "apply_probability": self.apply_probability,
            "cutout_fraction": self.cutout_fraction,
            "seed": self.seed,
        }
