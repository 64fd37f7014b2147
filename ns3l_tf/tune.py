"""Search NS³L's threshold T and weight λ₁ with KerasTuner, on the validation error.

    python -m ns3l_tf.tune --flagfile=flags/fmnist_2000.cfg --tuner=bayesian --max_trials=20

Every trial trains the flagfile's run (its method, budget and seed) with one (T, λ₁) and is
scored by its lowest validation error; the test split is never used to choose. T is searched
on a log scale as T·K in `--threshold_range` (the paper's T = 0.4 / K is T·K = 0.4), λ₁ on a
log scale in `--weight_range`. The search is resumable: rerunning the same command in the
same `--tune_dir` continues it. At the end the command prints and saves, in `--tune_dir`,
`trials.md` / `trials.json` (every trial's T, λ₁ and validation error, and the test error of
the best one) and `best.cfg`, a complete flagfile of the best run.
"""

import dataclasses
import os
import time

import keras
import keras_tuner as kt
from absl import app, flags

from ns3l_tf import cli, io_utils, methods, train
from ns3l_tf import config as config_lib
from ns3l_tf import data as data_lib
from ns3l_tf.config import Config, ConfigError, config_from_flags

TUNERS = {"random": kt.RandomSearch, "bayesian": kt.BayesianOptimization, "hyperband": kt.Hyperband}
OBJECTIVE = kt.Objective("val_error", direction="min")

_TUNER = flags.DEFINE_string("tuner", "bayesian", f"Search: {', '.join(TUNERS)}.")
_MAX_TRIALS = flags.DEFINE_integer(
    "max_trials", 10, "Trials for random and bayesian (hyperband sizes its own rounds)."
)
_TUNE_DIR = flags.DEFINE_string(
    "tune_dir", None, "Where the search lives (resumable); default runs/tune/<run name>."
)
_THRESHOLD_RANGE = flags.DEFINE_list(
    "threshold_range", ["0.05", "2.0"], "T times the number of classes: low,high (log scale)."
)
_WEIGHT_RANGE = flags.DEFINE_list("weight_range", ["0.1", "10"], "lambda_1: low,high (log).")
flags.adopt_module_key_flags(config_lib)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Log-uniform ranges: T·K in `threshold_times_classes`, λ₁ in `weight`."""

    threshold_times_classes: tuple[float, float] = (0.05, 2.0)
    weight: tuple[float, float] = (0.1, 10.0)

    def __post_init__(self):
        for name, flag in (
            ("threshold_times_classes", "threshold_range"),
            ("weight", "weight_range"),
        ):
            bounds = getattr(self, name)
            if len(bounds) != 2 or not 0.0 < bounds[0] < bounds[1]:
                raise ConfigError(
                    f"--{flag}={','.join(map(str, bounds))}: need two numbers 0 < low < high"
                )

    def sample(self, hp: kt.HyperParameters, num_classes: int) -> tuple[float, float]:
        """(T, λ₁) for one trial."""
        scaled = hp.Float("threshold_times_classes", *self.threshold_times_classes, sampling="log")
        weight = hp.Float("ns3l_weight", *self.weight, sampling="log")
        return min(scaled / num_classes, 0.999), weight


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
        self._side = None  # per-image pipeline rows, computed once for every trial

    def trial_config(self, hp: kt.HyperParameters) -> Config:
        threshold, weight = self.space.sample(hp, self.config.num_classes)
        return dataclasses.replace(self.config, ns3l_threshold=threshold, ns3l_weight=weight)

    def build(self, hp):
        return train.build_model(self.trial_config(hp))  # built: best models reload

    def fit(self, hp, model, *args, callbacks=(), **kwargs):
        config = self.trial_config(hp)
        if self._side is None:
            self._side = train.unlabeled_side(model, self.data, config)
        train_ds = data_lib.train_dataset(
            self.data,
            config.batch_size,
            config.unlabeled_batch_size,
            seed=config.seed,
            unlabeled_augmentations=model.unlabeled_augmentations,
            unlabeled_side=self._side,
        )
        val_ds = data_lib.eval_dataset(
            self.data, self.data.validation_images, self.data.validation_labels
        )
        ema = [keras.callbacks.SwapEMAWeights()] if config.ema_decay > 0 else []
        epochs = kwargs.pop("epochs", config.train_steps // config.eval_every)
        return model.fit(
            train_ds,
            steps_per_epoch=config.eval_every,
            epochs=epochs,
            validation_data=val_ds,
            callbacks=[*ema, *callbacks],
            shuffle=False,
            **{k: v for k, v in kwargs.items() if k not in ("validation_data", "shuffle")},
        )


def check_search(config: Config, tuner: str, max_trials: int) -> None:
    """Raises `ConfigError` unless `config` has an NS³L term, a validation split and one
    device, and `tuner` and `max_trials` are valid."""
    if tuner not in TUNERS:
        raise ConfigError(f"--tuner={tuner}: unknown; allowed: {', '.join(TUNERS)}")
    if max_trials < 1:
        raise ConfigError(f"--max_trials={max_trials}: must be >= 1")
    spec = methods.parse_algorithm(config.algorithm)
    if "ns3l" not in spec.terms:
        raise ConfigError(f"--algorithm={config.algorithm}: has no ns3l term to tune")
    if config.validation_size == 0:
        raise ConfigError(
            f"--num_validation={config.num_validation}: tuning needs a validation split (the "
            "test split is never used to choose)"
        )
    if config.strategy != "default":
        raise ConfigError(f"--strategy={config.strategy}: tune runs one device per trial")


def make_tuner(
    config: Config,
    data: data_lib.SSLData,
    tuner: str,
    max_trials: int,
    directory: str,
    space: SearchSpace = SearchSpace(),
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
    tuned = dataclasses.replace(
        config, ns3l_threshold=best["ns3l_threshold"], ns3l_weight=best["ns3l_weight"]
    )
    lines = [f"# Best of {best['trials']} trials: validation error {best['val_error']:.2f}%."]
    for field in dataclasses.fields(Config):
        value = getattr(tuned, field.name)
        if value is not None and field.name != "output_dir":
            lines.append(f"--{field.name}={value}")
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
    space: SearchSpace = SearchSpace(),
    verbose: int = 0,
) -> dict:
    """Runs (or resumes) the search and writes `trials.{json,md}` and `best.cfg`.

    Returns:
      `{"trials": [...], "best": {...}, "test_error": float, "seconds": float}`.
    """
    search = make_tuner(config, data, tuner, max_trials, directory, space)
    start = time.time()
    search.search(verbose=verbose)
    rows = trial_table(search, config)
    best_model = search.get_best_models(1)[0]
    test_ds = data_lib.eval_dataset(data, data.test_images, data.test_labels)
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
    for name, text in (
        ("trials.md", markdown(rows, test_error, tuner)),
        ("best.cfg", best_flagfile(config, best)),
    ):
        io_utils.atomic_write(
            os.path.join(directory, name), lambda path, text=text: _write_text(path, text)
        )
    return results


def _float_pair(holder: flags.FlagHolder) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in holder.value)
    except ValueError:
        raise ConfigError(
            f"--{holder.name}={','.join(holder.value)}: need two numbers low,high"
        ) from None


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    try:
        config = config_from_flags()
        space = SearchSpace(_float_pair(_THRESHOLD_RANGE), _float_pair(_WEIGHT_RANGE))
        check_search(config, _TUNER.value, _MAX_TRIALS.value)
        directory = _TUNE_DIR.value or os.path.join(
            "runs", "tune", os.path.basename(config.run_dir)
        )
        data = config.load_data()
    except (ConfigError, data_lib.DataNotFoundError) as error:
        cli.usage_error(str(error))
    results = run(config, data, _TUNER.value, _MAX_TRIALS.value, directory, space, verbose=1)
    print(markdown(results["trials"], results["test_error_of_best"], _TUNER.value))
    print(f"best flagfile: {os.path.join(directory, 'best.cfg')}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
