"""Search NS³L's threshold T and weight λ₁ with KerasTuner, on the validation error.

Every trial trains `config`'s run (its method, budget and seed) with one (T, λ₁) and is
scored by its lowest validation error; the test split is never used to choose. T is searched
on a log scale as T·K (the paper's T = 0.4 / K is T·K = 0.4), λ₁ on a log scale (see
`config.SearchSpace`). The search resumes from its directory. `run` writes there
`trials.md` / `trials.json` (every trial's T, λ₁ and validation error, and the test error of
the best one) and `best.cfg`, a complete flagfile of the best run.

    results = tuning.run(config, data, tuner="random", max_trials=6, directory="runs/tune/x")
"""

import os
import time

import keras
import keras_tuner as kt

from ns3l_tf import data as data_lib
from ns3l_tf import experiment, io_utils
from ns3l_tf.config import Config, SearchSpace, check_search, search_flags
from ns3l_tf.run_dir import RunDirectory

DEFAULT_SEARCH_SPACE = SearchSpace()

TUNERS = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}
OBJECTIVE = kt.Objective("val_error", direction="min")


class NS3LHyperModel(kt.HyperModel):
    """Builds and trains `config`'s run with the trial's T and λ₁.

    Each trial fits once for `config.train_steps`, evaluating every `config.eval_every`
    steps; KerasTuner keeps the epoch with the lowest `val_error`.
    """

    def __init__(self, config: Config, data: data_lib.SSLData, space: SearchSpace):
        super().__init__(name="ns3l")
        self.config = config
        self.data = data
        self.space = space
        self._extras = None  # per-image pipeline rows, computed once for every trial

    def trial_config(self, hp: kt.HyperParameters) -> Config:
        """`config` with the trial's T (sampled as T·K) and λ₁."""
        low, high = self.space.threshold_times_classes
        scaled = hp.Float("threshold_times_classes", low, high, sampling="log")
        weight = hp.Float("ns3l_weight", *self.space.weight, sampling="log")
        threshold = min(scaled / self.config.num_classes, 0.999)
        return self.config.replace(ns3l_threshold=threshold, ns3l_weight=weight)

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
    space: SearchSpace = DEFAULT_SEARCH_SPACE,
) -> kt.Tuner:
    """A KerasTuner search of `config`'s (T, λ₁) that resumes from `directory`."""
    check_search(config, tuner, max_trials)
    budget = {"max_trials": max_trials}
    if tuner == "hyperband":
        budget = {"max_epochs": config.train_steps // config.eval_every, "factor": 3}
    return TUNERS[tuner](
        NS3LHyperModel(config, data, space),
        objective=OBJECTIVE,
        seed=config.seed,
        directory=os.path.dirname(os.path.abspath(directory)),
        project_name=os.path.basename(os.path.abspath(directory)),
        overwrite=False,
        **budget,
    )


def trial_table(tuner: kt.Tuner, config: Config) -> list[dict]:
    """One row per finished trial, best first: id, T, λ₁, best validation error (%)."""
    rows = []
    for trial in tuner.oracle.trials.values():
        if trial.score is None:
            continue
        values = trial.hyperparameters.values
        rows.append(
            {
                "trial": trial.trial_id,
                "ns3l_threshold": values["threshold_times_classes"] / config.num_classes,
                "ns3l_weight": values["ns3l_weight"],
                "val_error": float(trial.score),
            }
        )
    return sorted(rows, key=lambda row: row["val_error"])


def best_flagfile(config: Config, best: dict) -> str:
    """A complete flagfile of `config` with the best trial's T and λ₁."""
    tuned = config.replace(ns3l_threshold=best["ns3l_threshold"], ns3l_weight=best["ns3l_weight"])
    lines = [f"# Best of {best['trials']} trials: validation error {best['val_error']:.2f}%."]
    for name, value in tuned.flag_values().items():
        if value is not None and name != "output_dir":
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict], test_error: float, tuner: str) -> str:
    lines = [
        f"# NS3L search ({tuner}): {len(rows)} trials, best first",
        "",
        f"Test error of the best trial (reported, never used to choose): {test_error:.2f}%.",
        "",
        "| trial | T | lambda_1 | best validation error % |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r['trial']} | {r['ns3l_threshold']:.4g} | {r['ns3l_weight']:.3g} | "
        f"{r['val_error']:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def run(
    config: Config,
    data: data_lib.SSLData,
    tuner: str = "bayesian",
    max_trials: int = 10,
    directory: str = "runs/tune",
    space: SearchSpace = DEFAULT_SEARCH_SPACE,
    verbose: int = 0,
    tune_dir: RunDirectory | None = None,
    overwrite: bool = False,
) -> dict:
    """Runs (or resumes) the search and writes `trials.{json,md}` and `best.cfg`.

    `directory` remembers what defines the trials (`config.search_flags`): resuming it with
    other values is refused unless `overwrite`, which starts afresh.

    Args:
      tune_dir: `directory`, opened (locked) by the caller; default opens it here.

    Returns:
      `{"trials": [...], "best": {...}, "test_error_of_best": float, ...}`.

    Raises:
      RunDirError: `directory` holds a search with other flags, or a live search.
    """
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
    # KerasTuner gives each trial its own log directory under it, with the trial's T and λ₁
    # as hyperparameters and its validation error per evaluation (the HParams dashboard).
    logs = keras.callbacks.TensorBoard(os.path.join(directory, "tensorboard"), write_graph=False)
    search.search(verbose=verbose, callbacks=[logs])
    rows = trial_table(search, config)
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
    io_utils.write_text(os.path.join(directory, "best.cfg"), best_flagfile(config, best))
    return results
