"""Search a run's method settings with KerasTuner, on the validation error.

Every trial trains `config`'s run (its method, budget and seed) with one draw of the settings
in the search space and is scored by its lowest validation error; the test split is never
used to choose. By default the space is every setting the algorithm's methods declare
searchable (`config.search_space`): for NS³L, T on a log scale as T·K (the paper's T = 0.4 / K
is T·K = 0.4) and λ₁ on a log scale. The search resumes from its directory. `run` writes
there `trials.md` / `trials.json` (every trial's settings and validation error, and the test
error of the best one) and `best.cfg`, a complete flagfile of the best run.

    results = tuning.run(config, data, tuner="random", max_trials=6, directory="runs/tune/x")
"""

import os
import time

import keras
import keras_tuner as kt

from ns3l_tf import data as data_lib
from ns3l_tf import experiment, io_utils
from ns3l_tf.config import Config, SearchSpace, check_search, search_flags, search_space
from ns3l_tf.run_dir import RunDirectory

TUNERS = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}
OBJECTIVE = kt.Objective("val_error", direction="min")


class SettingsHyperModel(kt.HyperModel):
    """Builds and trains `config`'s run with the trial's draw of `space`.

    Each trial fits once for `config.train_steps`, evaluating every `config.eval_every`
    steps; KerasTuner keeps the epoch with the lowest `val_error`.
    """

    def __init__(self, config: Config, data: data_lib.SSLData, space: SearchSpace):
        super().__init__(name="settings")
        self.config = config
        self.data = data
        self.space = space
        self._extras = None  # per-image pipeline rows, computed once for every trial

    def trial_values(self, hp: kt.HyperParameters) -> dict[str, float]:
        """`{flag: value}` of the trial's draw (a per-class range's draw divided by K)."""
        values = {}
        for flag, bounds in self.space.ranges.items():
            name = self.space.hyperparameter_name(flag)
            sampled = hp.Float(name, bounds.low, bounds.high, sampling="log")
            values[flag] = self.space.value(flag, sampled, self.config.num_classes)
        return values

    def trial_config(self, hp: kt.HyperParameters) -> Config:
        """`config` with the trial's settings."""
        return self.config.replace(**self.trial_values(hp))

    def build(self, hp):
        return experiment.build_model(self.trial_config(hp), self.data)  # built: reloads

    def fit(self, hp, model, *args, callbacks=(), **kwargs):
        config = self.trial_config(hp)
        if self._extras is None:
            self._extras = experiment.unlabeled_extras(model, self.data, config)
        datasets = experiment.build_datasets(config, model, self.data, self._extras)
        ema = [keras.callbacks.SwapEMAWeights()] if config.ema_decay > 0 else []
        epochs = kwargs.pop("epochs", config.train_steps // config.eval_every)
        return model.fit(
            datasets.train,
            steps_per_epoch=config.eval_every,
            epochs=epochs,
            validation_data=datasets.validation,
            callbacks=[*ema, *callbacks],
            shuffle=False,
            **{k: v for k, v in kwargs.items() if k not in ("validation_data", "shuffle")},
        )


def make_tuner(
    config: Config,
    data: data_lib.SSLData,
    tuner: str,
    max_trials: int,
    directory: str,
    space: SearchSpace,
) -> kt.Tuner:
    """A KerasTuner search of `space` for `config`'s run that resumes from `directory`."""
    check_search(config, tuner, max_trials, space)
    budget = {"max_trials": max_trials}
    if tuner == "hyperband":
        budget = {"max_epochs": config.train_steps // config.eval_every, "factor": 3}
    return TUNERS[tuner](
        SettingsHyperModel(config, data, space),
        objective=OBJECTIVE,
        seed=config.seed,
        directory=os.path.dirname(os.path.abspath(directory)),
        project_name=os.path.basename(os.path.abspath(directory)),
        overwrite=False,
        **budget,
    )


def trial_table(tuner: kt.Tuner, config: Config, space: SearchSpace) -> list[dict]:
    """One row per finished trial, best first: id, each searched setting, the best validation
    error (%)."""
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        drawn = trial.hyperparameters.values
        values = {
            flag: space.value(flag, drawn[space.hyperparameter_name(flag)], config.num_classes)
            for flag in space.ranges
        }
        rows.append({"trial": trial.trial_id, **values, "val_error": float(trial.score)})
    return sorted(rows, key=lambda row: row["val_error"])


def best_flagfile(config: Config, best: dict, space: SearchSpace) -> str:
    """A complete flagfile of `config` with the best trial's settings."""
    tuned = config.replace(**{flag: best[flag] for flag in space.ranges})
    lines = [f"# Best of {best['trials']} trials: validation error {best['val_error']:.2f}%."]
    for name, value in tuned.flag_values().items():
        if value is not None and name != "output_dir":
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], test_error: float, tuner: str) -> str:
    searched = [k for k in rows[0] if k not in ("trial", "val_error")] if rows else []
    lines = [
        f"# Search ({tuner}) of {', '.join(searched)}: {len(rows)} trials, best first",
        "",
        f"Test error of the best trial (reported, never used to choose): {test_error:.2f}%.",
        "",
        "| trial | " + " | ".join(searched) + " | best validation error % |",
        "|---|" + "---|" * len(searched) + "---|",
    ]
    lines += [
        f"| {r['trial']} | "
        + " | ".join(f"{r[flag]:.4g}" for flag in searched)
        + f" | {r['val_error']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def run(
    config: Config,
    data: data_lib.SSLData,
    tuner: str = "bayesian",
    max_trials: int = 10,
    directory: str = "runs/tune",
    space: SearchSpace | None = None,
    verbose: int = 0,
    tune_dir: RunDirectory | None = None,
    overwrite: bool = False,
) -> dict:
    """Runs (or resumes) the search and writes `trials.{json,md}` and `best.cfg`.

    `directory` remembers what defines the trials (`config.search_flags`): resuming it with
    other values is refused unless `overwrite`, which starts afresh.

    Args:
      space: what to search; default every searchable setting of `config`'s methods
        (`config.search_space`).
      tune_dir: `directory`, opened (locked) by the caller; default opens it here.

    Returns:
      `{"trials": [...], "best": {...}, "test_error_of_best": float, ...}`.

    Raises:
      RunDirError: `directory` holds a search with other flags, or a live search.
    """
    space = search_space(config) if space is None else space
    opened_here = tune_dir is None
    if opened_here:
        tune_dir = RunDirectory(directory, flag="tune_dir")
        tune_dir.open(search_flags(config, tuner, space), overwrite)
    try:
        return _search(config, data, tuner, max_trials, directory, space, verbose)
    finally:
        if opened_here:
            tune_dir.close()


def _search(config, data, tuner, max_trials, directory, space, verbose) -> dict:
    search = make_tuner(config, data, tuner, max_trials, directory, space)
    start = time.time()
    # KerasTuner gives each trial its own log directory under it, with the trial's draws as
    # hyperparameters and its validation error per evaluation (the HParams dashboard).
    logs = keras.callbacks.TensorBoard(os.path.join(directory, "tensorboard"), write_graph=False)
    search.search(verbose=verbose, callbacks=[logs])
    rows = trial_table(search, config, space)
    best_model = search.get_best_models(1)[0]
    test_ds = data_lib.eval_dataset(data.test_images, data.test_labels, config.eval_batch_size)
    swap = [keras.callbacks.SwapEMAWeights()] if config.ema_decay > 0 else []
    test = best_model.evaluate(test_ds, verbose=0, return_dict=True, callbacks=swap)
    test_error = float(test["error"])
    best = {**rows[0], "trials": len(rows)}
    results = {
        "tuner": tuner,
        "objective": "val_error",
        "trials": rows,
        "best": best,
        "test_error_of_best": test_error,
        "seconds_this_invocation": round(time.time() - start, 1),
    }
    io_utils.write_json(os.path.join(directory, "trials.json"), results)
    io_utils.write_text(os.path.join(directory, "trials.md"), markdown(rows, test_error, tuner))
    io_utils.write_text(os.path.join(directory, "best.cfg"), best_flagfile(config, best, space))
    return results
