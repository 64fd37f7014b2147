"""ns3l_tf: negative sampling in semi-supervised learning (NS³L) with Keras 3 and TensorFlow.

Public API (loaded on first use, so `import ns3l_tf` and the flag checks of the command-line
tools need no TensorFlow; the Keras classes register themselves as Keras is imported, so
`keras.saving.load_model` finds a saved `SSLModel`: `ns3l_tf.registration`):
  SSLModel                     the semi-supervised keras.Model (train_step / test_step)
  load_model                   loads a saved SSLModel (a run's model.keras)
  ns3l_loss, ns3l_negatives    the NS³L loss and its threshold negatives mask
  negative_sampling_loss       the loss for any 0/1 negatives mask
  negatives                    the paper's Section 5 selectors (uniform, oracle, nearest neighbour)
  methods                      the method registry: settings, `register`, algorithm strings
  models.small_cnn, models.wrn28_2
  data                         datasets, splits and tf.data streams (load_ssl_data, train_dataset)
  experiment                   data, datasets, model and optimizer built from a `Config`
  training, tuning             a whole run (`training.run(config)`) and a KerasTuner search
  backend                      the TensorFlow and JAX train steps
  config, distribute, inference, loop   the other submodules, by attribute as well
"""

import importlib

from ns3l_tf import registration
from ns3l_tf.requirements import MISSING_TENSORFLOW

__version__ = "0.3.0"

# Public name → the module that defines it ("" for the submodule of that name).
_PUBLIC = {
    "ErrorRate": "ns3l_tf.metrics",
    "SSLModel": "ns3l_tf.ssl_model",
    "load_model": "ns3l_tf.ssl_model",
    "default_ns3l_threshold": "ns3l_tf.methods.ns3l",
    "negative_sampling_loss": "ns3l_tf.losses",
    "ns3l_loss": "ns3l_tf.losses",
    "ns3l_negatives": "ns3l_tf.losses",
    **{
        name: ""
        for name in (
            "backend",
            "config",
            "data",
            "distribute",
            "experiment",
            "inference",
            "loop",
            "losses",
            "methods",
            "models",
            "negatives",
            "training",
            "tuning",
        )
    },
}


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ns3l_tf' has no attribute {name!r}")
    try:
        module = importlib.import_module(_PUBLIC[name] or f"ns3l_tf.{name}")
    except ModuleNotFoundError as error:
        if error.name != "tensorflow":
            raise
        raise ModuleNotFoundError(MISSING_TENSORFLOW, name="tensorflow") from None
    return module if not _PUBLIC[name] else getattr(module, name)


__all__ = sorted(_PUBLIC)

# `keras.saving.load_model` finds SSLModel once Keras is imported, before or after this.
registration.register_when_keras_is_imported()
