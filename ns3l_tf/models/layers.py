"""Layer settings shared by the backbones (Oliver et al. 2018 conventions)."""

import keras

LEAKY_RELU_SLOPE = 0.1
# TF convention: moving = momentum * moving + (1 - momentum) * batch.
BATCH_NORM_MOMENTUM = 0.999
BATCH_NORM_EPSILON = 1e-3


def batch_norm(momentum: float = BATCH_NORM_MOMENTUM):
    """BatchNormalization with epsilon 1e-3 and the reference momentum 0.999 by default."""
    return keras.layers.BatchNormalization(momentum=momentum, epsilon=BATCH_NORM_EPSILON)
