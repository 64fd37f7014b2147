"""Search NS³L's threshold T and weight λ₁ with KerasTuner, on the validation error.

    python -m ns3l_tf.tune --flagfile=flags/fmnist_2000.cfg --tuner=bayesian --max_trials=20

Every trial trains the flagfile's run (its method, budget and seed) with one (T, λ₁) and is
scored by its lowest validation error; the test split is never used to choose. T is searched
on a log scale as T·K in `--threshold_range` (the paper's T = 0.4 / K is T·K = 0.4), λ₁ on a
log scale in `--weight_range`. The search is resumable: rerunning the same command in the
same `--tune_dir` continues it. At the end the command prints and saves, in `--tune_dir`,
`trials.md` / `trials.json` (every trial's T, λ₁ and validation error, and the test error of
the best one) and `best.cfg`, a complete flagfile of the best run (see `ns3l_tf.tuning`).
"""

import os

from absl import app, flags

from ns3l_tf import cli
from ns3l_tf import config as config_lib
from ns3l_tf import data as data_lib
from ns3l_tf.config import (
    TUNERS,
    ConfigError,
    SearchSpace,
    check_search,
    config_from_flags,
    search_flags,
)
from ns3l_tf.run_dir import RunDirectory

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
config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)
flags.adopt_module_key_flags(cli)


def _float_pair(holder: flags.FlagHolder) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in holder.value)
    except ValueError:
        raise ConfigError(
            f"--{holder.name}={','.join(holder.value)}: need two numbers low,high"
        ) from None


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    cli.raise_keyboard_interrupt_on_sigterm()
    try:
        config = config_from_flags()
        space = SearchSpace(_float_pair(_THRESHOLD_RANGE), _float_pair(_WEIGHT_RANGE))
        check_search(config, _TUNER.value, _MAX_TRIALS.value)
        cli.use_backend(config.backend)
        cli.require_tensorflow()
        directory = _TUNE_DIR.value or os.path.join(
            "runs", "tune", os.path.basename(config.run_dir)
        )
        tune_dir = RunDirectory(directory, flag="tune_dir")
        tune_dir.open(search_flags(config, _TUNER.value, space), cli.OVERWRITE.value)
        data = data_lib.load_ssl_data(**config.split_arguments())
    except (ConfigError, data_lib.DataNotFoundError) as error:
        cli.usage_error(str(error))
    except (data_lib.CorruptDataError, data_lib.DownloadError) as error:
        cli.runtime_error(str(error))
    except KeyboardInterrupt:
        cli.interrupted("interrupted before the search started", 2)
    from ns3l_tf import tuning  # TensorFlow: only once flags and data are good

    try:
        results = tuning.run(
            config, data, _TUNER.value, _MAX_TRIALS.value, directory, space, 1, tune_dir
        )
    except KeyboardInterrupt:
        cli.interrupted("interrupted; run the same command to resume the search", 2)
    finally:
        tune_dir.close()
    print(tuning.markdown(results["trials"], results["test_error_of_best"], _TUNER.value))
    print(f"best flagfile: {os.path.join(directory, 'best.cfg')}")


def run():
    """The `ns3l-tune` console script."""
    app.run(main, flags_parser=cli.flags_parser(__name__, config_lib.define_methods_flags))


if __name__ == "__main__":
    run()
