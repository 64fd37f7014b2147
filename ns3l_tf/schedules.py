"""Ramp-ups of loss weights, as functions of the optimizer step computed inside the graph.

Both return a float32 scalar in [0, 1]; multiply a loss weight by it. A ramp of 0 steps is 1.
"""

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
