"""Backbones mapping images to logits; any Keras model with that contract works with SSLModel.

The registry names each backbone's builder as `"module:function"`, imported when a backbone
is built, so the names can be checked (`--model`) without TensorFlow.
"""

import importlib

MODELS = {
    "small_cnn": "ns3l_tf.models.cnn:small_cnn",
    "wrn28_2": "ns3l_tf.models.wrn:wrn28_2",
    "wrn_stl10": "ns3l_tf.models.wrn:wrn_stl10",
}
# How raw images become network inputs (ns3l_tf.models.preprocessing).
PREPROCESSING = ("standardize", "rescale", "gcn_zca")
# Compute precisions of a backbone (ns3l_tf.models.precision).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# Public name → the module that defines it.
_PUBLIC = {
    "small_cnn": "ns3l_tf.models.cnn",
    "wide_resnet": "ns3l_tf.models.wrn",
    "wrn28_2": "ns3l_tf.models.wrn",
    "wrn_stl10": "ns3l_tf.models.wrn",
}


def build_backbone(
    name: str,
    num_classes: int,
    input_shape,
    precision: str = "float32",
):
    """Builds a registered backbone by name (`small_cnn`, `wrn28_2`, `wrn_stl10`).

    Args:
      name: a key of `MODELS`.
      num_classes: K.
      input_shape: `(H, W, C)`.
      precision: one of `PRECISIONS`; mixed policies keep variables in float32.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; allowed: {', '.join(sorted(MODELS))}")
    from ns3l_tf.models.precision import backbone_policy, policy_scope

    module, function = MODELS[name].split(":")
    builder = getattr(importlib.import_module(module), function)
    with policy_scope(backbone_policy(precision)):
        return builder(num_classes=num_classes, input_shape=input_shape)


_SUBMODULES = ("augmentation", "cnn", "layers", "precision", "preprocessing", "wrn")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"ns3l_tf.models.{name}")
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ns3l_tf.models' has no attribute {name!r}")


__all__ = ["MODELS", "PRECISIONS", "PREPROCESSING", "build_backbone", *_PUBLIC]
