"""Search a run's method settings (NS³L's T and λ₁ by default) with KerasTuner, on the
validation error.

    python -m ns3l_tf.tune --flagfile=flags/fmnist_2000.cfg --tuner=bayesian --max_trials=20
    python -m ns3l_tf.tune --flagfile=flags/fmnist_250_fixmatch_ns3l.cfg \
        --search=ns3l_weight=0.1:3,fixmatch_threshold=0.8:0.98

Every trial trains the flagfile's run (its method, budget and seed) with one draw of the
searched settings and is scored by its lowest validation error; the test split is never used
to choose. Without `--search`, the space is every setting the algorithm's methods declare
searchable: NS³L's T on a log scale as T·K in [0.05, 2] (the paper's T = 0.4 / K is
T·K = 0.4) and λ₁ on a log scale in [0.1, 10]. The search is resumable: rerunning the same
command in the same `--tune_dir` continues it. At the end the command prints and saves, in
`--tune_dir`, `trials.md` / `trials.json` (every trial's settings and validation error, and
the test error of the best one) and `best.cfg`, a complete flagfile of the best run (see
`ns3l_tf.tuning`).
"""

import os

from absl import flags

from ns3l_tf import cli
from ns3l_tf import config as config_lib
from ns3l_tf import data as data_lib
from ns3l_tf.config import (
    TUNERS,
    ConfigError,
    check_search,
    config_from_flags,
    search_flags,
    search_space,
)
from ns3l_tf.run_dir import RunDirectory

_TUNER = flags.DEFINE_string("tuner", "bayesian", f"Search: {', '.join(TUNERS)}.")
_MAX_TRIALS = flags.DEFINE_integer(
    "max_trials", 10, "Trials for random and bayesian (hyperband sizes its own rounds)."
)
_TUNE_DIR = flags.DEFINE_string(
    "tune_dir", None, "Where the search lives (resumable); default runs/tune/<run name>."
)
_SEARCH = flags.DEFINE_list(
    "search",
    [],
    "Settings to search, each <setting> (its declared range) or <setting>=<low>:<high> (log "
    "scale), e.g. ns3l_weight=0.1:3,fixmatch_threshold=0.8:0.98; default every searchable "
    "setting of the algorithm's methods (NS3L: T as T*K in 0.05:2, lambda_1 in 0.1:10).",
)
config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)
flags.adopt_module_key_flags(cli)


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    cli.raise_keyboard_interrupt_on_sigterm()
    try:
        config = config_from_flags()
        space = search_space(config, _SEARCH.value)
        check_search(config, _TUNER.value, _MAX_TRIALS.value, space)
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
    except KeyboardInterrupt as stop:
        cli.interrupted("interrupted before the search started", stop)
    from ns3l_tf import tuning  # TensorFlow: only once flags and data are good

    try:
        results = tuning.run(
            config, data, _TUNER.value, _MAX_TRIALS.value, directory, space, 1, tune_dir
        )
    except KeyboardInterrupt as stop:
        cli.interrupted("interrupted; run the same command to resume the search", stop)
    finally:
        tune_dir.close()
    print(tuning.markdown(results["trials"], results["test_error_of_best"], _TUNER.value))
    print(f"best flagfile: {os.path.join(directory, 'best.cfg')}")


def run():
    """The `ns3l-tune` console script."""
    cli.run(main, __name__, config_lib.define_methods_flags)


if __name__ == "__main__":
    run()
