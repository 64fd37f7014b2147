"""Resumable training state: every variable that determines the rest of a run.

A state checkpoint is `state-<step>.npz` (the values of the model's variables — weights,
BatchNorm statistics, loss weights, the random generators' states of VAT, MixUp and the
augmentation layers — the optimizer's — its step, moments, weight averages, loss scale — and,
for a checkpoint taken mid-evaluation-interval, the metrics' running sums) beside
`state.json`, which names that file, its step and the run's own bookkeeping (history records,
best validation error) and, where asked to keep it, the previous checkpoint's. Both are
written atomically, the `.npz` first, then `state.json`, then older `.npz` files are deleted:
a crash at any point leaves a consistent pair.
"""

import glob
import json
import os

import numpy as np

from ns3l_tf import io_utils

STATE_FILE = "state.json"


def state_variables(model, include_metrics: bool) -> list:
    """The model's and its optimizer's variables (and the metrics', if asked), in a fixed
    order."""
    variables = [*model.variables, *model.optimizer.variables]
    if include_metrics:
        variables += model.metrics_variables
    unique = {id(v): v for v in variables}
    return list(unique.values())


def save(
    directory: str,
    model,
    step: int,
    bookkeeping: dict,
    include_metrics: bool,
    keep_previous: bool = False,
) -> None:
    """Writes the state of `model` at optimizer step `step`, with `bookkeeping` (JSON).

    With `keep_previous`, the checkpoint before it stays too, named in `state.json` under
    `"previous"` (see `of_step`): the processes of a JAX cluster, which write theirs apart, can
    then all resume from the step the slowest of them wrote last.
    """
    previous = latest(directory) if keep_previous else None
    if previous is not None:
        previous.pop("previous", None)
    variables = state_variables(model, include_metrics)
    name = f"state-{step:09d}.npz"
    arrays = {f"v{i:05d}": np.asarray(v) for i, v in enumerate(variables)}
    io_utils.atomic_write(
        os.path.join(directory, name), lambda path: np.savez(path, **arrays), suffix=".npz"
    )
    io_utils.write_json(
        os.path.join(directory, STATE_FILE),
        {
            "step": step,
            "file": name,
            "include_metrics": include_metrics,
            "variables": [v.path for v in variables],
            "shapes": [list(v.shape) for v in variables],
            **bookkeeping,
            **({"previous": previous} if previous is not None else {}),
        },
    )
    kept = {name, previous["file"]} if previous is not None else {name}
    for old in glob.glob(os.path.join(directory, "state-*.npz")):
        if os.path.basename(old) not in kept:
            os.remove(old)


def latest(directory: str) -> dict | None:
    """`state.json` of the last checkpoint in `directory`, or None."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def of_step(state: dict | None, step: int) -> dict | None:
    """The checkpoint of `step` among `state` (from `latest`) and the previous one it keeps,
    or None."""
    for candidate in (state, (state or {}).get("previous")):
        if candidate is not None and candidate["step"] == step:
            return candidate
    return None


def restore(directory: str, model, state: dict) -> None:
    """Assigns the checkpoint `state` (from `latest`) to `model`'s (and optimizer's) variables.

    Raises:
      ValueError: the checkpoint was written by a differently built model.
    """
    variables = state_variables(model, state["include_metrics"])
    shapes = [list(v.shape) for v in variables]
    if shapes != state["shapes"]:
        raise ValueError(
            f"{os.path.join(directory, state['file'])}: written by a model with other variables "
            f"({len(state['shapes'])} against {len(shapes)} here)"
        )
    with np.load(os.path.join(directory, state["file"])) as arrays:
        for i, variable in enumerate(variables):
            variable.assign(arrays[f"v{i:05d}"])
