"""ns3l_tf: negative sampling in semi-supervised learning (NS³L) with Keras 3 and TensorFlow.

Public API:
  SSLModel                     the semi-supervised keras.Model (train_step / test_step)
  ns3l_loss, ns3l_negatives    the NS³L loss and its threshold negatives mask
  negative_sampling_loss       the loss for any 0/1 negatives mask
  negatives                    the paper's Section 5 selectors (uniform, oracle, nearest neighbour)
  models.small_cnn, models.wrn28_2
  data                         datasets, splits and tf.data streams (load_ssl_data, train_dataset)
"""

from ns3l_tf import data, losses, methods, models, negatives
from ns3l_tf.losses import negative_sampling_loss, ns3l_loss, ns3l_negatives
from ns3l_tf.metrics import ErrorRate
from ns3l_tf.ssl_model import SSLModel, default_ns3l_threshold

__version__ = "0.1.0"

__all__ = [
    "ErrorRate",
    "SSLModel",
    "data",
    "default_ns3l_threshold",
    "losses",
    "methods",
    "models",
    "negative_sampling_loss",
    "negatives",
    "ns3l_loss",
    "ns3l_negatives",
]
