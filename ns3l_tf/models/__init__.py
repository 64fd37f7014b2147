"""Backbones mapping images to logits; any Keras model with that contract works with SSLModel.

The registry names each backbone's builder as `"module:function"`, imported when a backbone
is built, so the names can be checked (`--model`) without TensorFlow.
"""

import importlib

MODELS = {"small_cnn": "ns3l_tf.models.cnn:small_cnn", "wrn28_2": "ns3l_tf.models.wrn:wrn28_2"}

# Public name → the module that defines it.
_PUBLIC = {
    "small_cnn": "ns3l_tf.models.cnn",
    "synchronized_batchnorm": "ns3l_tf.models.layers",
    "wide_resnet": "ns3l_tf.models.wrn",
    "wrn28_2": "ns3l_tf.models.wrn",
}


def build_backbone(name: str, num_classes: int, input_shape, synchronized: bool = False):
    """Builds a registered backbone by name (`small_cnn` or `wrn28_2`); with `synchronized`,
    its BatchNorms compute moments over all replicas of the current strategy."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    from ns3l_tf.models.layers import synchronized_batchnorm

    module, function = MODELS[name].split(":")
    with synchronized_batchnorm(synchronized):
        builder = getattr(importlib.import_module(module), function)
        return builder(num_classes=num_classes, input_shape=input_shape)


_SUBMODULES = ("cnn", "layers", "wrn")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"ns3l_tf.models.{name}")
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ns3l_tf.models' has no attribute {name!r}")


__all__ = ["MODELS", "build_backbone", *_PUBLIC]
