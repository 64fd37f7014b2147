"""WRN-28-2 as in Oliver et al. (2018; brain-research/realistic-ssl-evaluation
`lib/networks.py`) and MixMatch (google-research/mixmatch `libml/models.py`)."""

import keras

from ns3l_tf.models.layers import LEAKY_RELU_SLOPE, batch_norm

# He-normal as in the reference: std = sqrt(2 / (k * k * out_channels)), i.e. fan_out.
_CONV_INIT = keras.initializers.VarianceScaling(
    2.0, mode="fan_out", distribution="untruncated_normal"
)


def _conv(filters: int, kernel_size: int, strides: int = 1):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer=_CONV_INIT,
    )


def _activate(x):
    return keras.layers.LeakyReLU(LEAKY_RELU_SLOPE)(batch_norm()(x))


def _residual_unit(x, filters: int, strides: int, activate_before_residual: bool):
    """Pre-activation unit: BN–lReLU–conv3×3–BN–lReLU–conv3×3 plus a shortcut.

    With `activate_before_residual` the shortcut also starts from the activated input (first
    unit of the first group); otherwise it starts from the raw input. A 1×1 convolution
    replaces the identity shortcut when the number of channels changes.
    """
    if activate_before_residual:
        x = _activate(x)
        shortcut = x
        residual = x
    else:
        shortcut = x
        residual = _activate(x)
    residual = _conv(filters, 3, strides)(residual)
    residual = _activate(residual)
    residual = _conv(filters, 3)(residual)
    if shortcut.shape[-1] != filters:
        shortcut = _conv(filters, 1, strides)(shortcut)
    return keras.layers.Add()([shortcut, residual])


def wide_resnet(
    num_classes: int,
    input_shape=(32, 32, 3),
    depth: int = 28,
    width: int = 2,
    groups: int = 3,
    name: str | None = None,
):
    """Wide ResNet WRN-depth-width with leaky ReLU(0.1) and BN momentum 0.999.

    Args:
      num_classes: number of output logits K.
      input_shape: `(height, width, channels)` of the normalised float input images.
      depth: 6n + 4 for the usual three groups of n units (28 gives 4 units per group).
      width: widening factor applied to (16, 32, 64, …).
      groups: groups of units, each after the first halving the resolution and doubling the
        filters (3 in WRN; MixMatch's `--scales`).
      name: model name; defaults to `wrn{depth}_{width}`.

    Returns:
      A functional `keras.Model` mapping `(batch, *input_shape)` images to `(batch, K)` logits.
    """
    if (depth - 4) % 6:
        raise ValueError(f"depth must be 6n + 4, got {depth}")
    units_per_group = (depth - 4) // 6
    images = keras.Input(shape=input_shape, name="images")
    x = _conv(16, 3)(images)
    for group in range(groups):
        filters, strides = 16 << group, 2 if group else 1
        for unit in range(units_per_group):
            x = _residual_unit(
                x,
                filters * width,
                strides if unit == 0 else 1,
                activate_before_residual=(group == 0 and unit == 0),
            )
    x = _activate(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(
        num_classes, kernel_initializer=keras.initializers.GlorotNormal(), name="logits"
    )(x)
    return keras.Model(images, logits, name=name or f"wrn{depth}_{width}")


def wrn28_2(num_classes: int = 10, input_shape=(32, 32, 3)):
    """WRN-28-2: 1,471,226 parameters for 10 classes on 32×32×3 (1,467,610 trainable)."""
    return wide_resnet(num_classes, input_shape, depth=28, width=2)


def wrn_stl10(num_classes: int = 10, input_shape=(96, 96, 3)):
    """WRN-28-2's units in four groups (32, 64, 128, 256 filters; 96 → 48 → 24 → 12 px):
    the network of MixMatch's STL-10 runs (`--scales=4`, `runs/table2.sh:18`; a group per
    scale, `libml/models.py:104-107`). 5,937,146 parameters for 10 classes."""
    return wide_resnet(num_classes, input_shape, depth=28, width=2, groups=4, name="wrn_stl10")
