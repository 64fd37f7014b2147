"""Backbones mapping images to logits; any Keras model with that contract works with SSLModel."""

from ns3l_tf.models.cnn import small_cnn
from ns3l_tf.models.layers import synchronized_batchnorm
from ns3l_tf.models.wrn import wide_resnet, wrn28_2

MODELS = {"small_cnn": small_cnn, "wrn28_2": wrn28_2}


def build_backbone(name: str, num_classes: int, input_shape, synchronized: bool = False):
    """Builds a registered backbone by name (`small_cnn` or `wrn28_2`); with `synchronized`,
    its BatchNorms compute moments over all replicas of the current strategy."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    with synchronized_batchnorm(synchronized):
        return MODELS[name](num_classes=num_classes, input_shape=input_shape)


__all__ = [
    "MODELS",
    "build_backbone",
    "small_cnn",
    "synchronized_batchnorm",
    "wide_resnet",
    "wrn28_2",
]
