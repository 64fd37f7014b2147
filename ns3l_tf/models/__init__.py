"""Backbones mapping images to logits; any Keras model with that contract works with SSLModel."""

from ns3l_tf.models.cnn import small_cnn
from ns3l_tf.models.wrn import wide_resnet, wrn28_2

MODELS = {"small_cnn": small_cnn, "wrn28_2": wrn28_2}


def build_backbone(name: str, num_classes: int, input_shape):
    """Builds a registered backbone by name (`small_cnn` or `wrn28_2`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    return MODELS[name](num_classes=num_classes, input_shape=input_shape)


__all__ = ["MODELS", "build_backbone", "small_cnn", "wide_resnet", "wrn28_2"]
