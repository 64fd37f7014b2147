"""The "small CNN" of the paper's Table 5 (Fashion-MNIST, Section 5), which the paper does not
specify: two blocks of two 3×3 convolutions (32, then 64 filters) with BatchNorm and leaky
ReLU, each block max-pooled, then global average pooling and a dense layer."""

import keras

from ns3l_tf.models.layers import LEAKY_RELU_SLOPE, batch_norm

# Fashion-MNIST runs last thousands of steps, not WRN's hundreds of thousands: with momentum
# 0.999 the moving statistics would still be mostly their initial values at evaluation.
# He-normal (fan-in) convolutions keep activations at variance O(1), the scale of the moving
# variance's initial value 1.0; under Glorot init the first layer's variance is about 0.02 and
# the leftover 0.99^t of that initial value dominates evaluation for the first ~1,000 steps.
SMALL_CNN_BATCH_NORM_MOMENTUM = 0.99


def small_cnn(num_classes: int = 10, input_shape=(28, 28, 1), name: str = "small_cnn"):
    """conv3×3(32)–BN–lReLU ×2 – maxpool – conv3×3(64)–BN–lReLU ×2 – maxpool – GAP – dense.

    Convolutions are He-normal without bias (BN follows); BN momentum 0.99, epsilon 1e-3.

    Args:
      num_classes: number of output logits K.
      input_shape: `(height, width, channels)` of the normalised float input images.
      name: model name.

    Returns:
      A functional `keras.Model` mapping `(batch, *input_shape)` images to `(batch, K)` logits.
    """
    images = keras.Input(shape=input_shape, name="images")
    x = images
    for filters in (32, 64):
        for _ in range(2):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal"
            )(x)
            x = batch_norm(SMALL_CNN_BATCH_NORM_MOMENTUM)(x)
            x = keras.layers.LeakyReLU(LEAKY_RELU_SLOPE)(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(images, logits, name=name)
