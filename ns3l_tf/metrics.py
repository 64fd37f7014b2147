"""Metrics reported in the units of the SSL literature."""

import keras


@keras.saving.register_keras_serializable(package="ns3l_tf")
class ErrorRate(keras.metrics.SparseCategoricalAccuracy):
    """Classification error in percent: `100 · (1 − accuracy)`, accumulated like accuracy.

    Args:
      name: metric name; the logs key is `name` in training and `val_` + `name` in validation.
    """

    def __init__(self, name: str = "error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def result(self):
        return 100.0 * (1.0 - super().result())
