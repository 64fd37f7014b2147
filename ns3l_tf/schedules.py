"""Ramp-ups of loss weights and learning-rate schedules, as functions of the optimizer step
computed inside the graph.

The ramp-ups return a float32 scalar in [0, 1]; multiply a loss weight by it. A ramp of 0
steps is 1.
"""

import math

import keras
from keras import ops


def _progress(step, rampup_steps: int):
    if rampup_steps <= 0:
        return None
    return ops.clip(ops.cast(step, "float32") / float(rampup_steps), 0.0, 1.0)


def sigmoid_rampup(step, rampup_steps: int):
    """Oliver et al.'s warm-up `exp(−5 (1 − t/t_w)²)` for t < t_w, then 1."""
    progress = _progress(step, rampup_steps)
    if progress is None:
        return ops.convert_to_tensor(1.0, "float32")
    return ops.exp(-5.0 * ops.square(1.0 - progress))


def linear_rampup(step, rampup_steps: int):
    """MixMatch's warm-up `min(t / t_w, 1)`."""
    progress = _progress(step, rampup_steps)
    return ops.convert_to_tensor(1.0, "float32") if progress is None else progress


@keras.saving.register_keras_serializable(package="ns3l_tf")
class TruncatedCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """`lr · cos(fraction · (π/2) · min(k / K, 1))` at step k: FixMatch's decay with
    fraction 7/8, `cos(7πk / 16K)` (google-research/fixmatch `fixmatch.py:92-93`), which ends
    at `lr · cos(7π/16) ≈ 0.2 lr` rather than at 0 (`keras.optimizers.schedules.CosineDecay`
    is the half period `½ (1 + cos(πk/K))`).

    Args:
      initial_learning_rate: lr at step 0.
      decay_steps: K, the training steps.
      fraction: the share of a quarter period covered over K steps (7/8).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, fraction: float = 7 / 8):
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.fraction = fraction

    def __call__(self, step):
        progress = ops.minimum(ops.cast(step, "float32") / float(self.decay_steps), 1.0)
        return self.initial_learning_rate * ops.cos(self.fraction * (math.pi / 2) * progress)

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "fraction": self.fraction,
        }
