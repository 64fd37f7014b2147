"""Train one semi-supervised model and write `results.json`.

    python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg [--flag=value ...]

Flags given after `--flagfile` override the file. Everything checkable from the flags alone
(their values, an `--output_dir` that is a file or not writable, a directory holding a run
with other flags or a live run) is checked before TensorFlow is imported or anything is
loaded: one line on stderr, exit code 2. Rerunning a command resumes its run from the last
checkpoint, or reports a finished run without training; `--overwrite` starts again. The run
is `ns3l_tf.training.run`; see there for what it writes.
"""

import os

from absl import flags

from ns3l_tf import cli, io_utils
from ns3l_tf import config as config_lib
from ns3l_tf import data as data_lib
from ns3l_tf.config import ConfigError, config_from_flags
from ns3l_tf.run_dir import DamagedFileError, RunDirectory

config_lib.define_flags()
flags.adopt_module_key_flags(config_lib)  # --helpshort lists the Config flags
flags.adopt_module_key_flags(cli)


def summary(results: dict, run_dir: str) -> str:
    """The one line a run ends with."""
    line = f"test error {results['test_error']:.2f}% after {results['steps']} steps "
    line += f"({results['seconds']:.0f} s)"
    if results["best_val_error"] is not None:
        line += (
            f"; at the lowest validation error ({results['best_val_error']:.2f}%, step "
            f"{results['best_val_step']}): test error {results['best_val_test_error']:.2f}%"
        )
    return f"{line}; results in {os.path.join(run_dir, 'results.json')}"


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    cli.raise_keyboard_interrupt_on_sigterm()
    try:
        config = config_from_flags()
        config = config.replace(output_dir=cli.process_run_dir(config.run_dir, config.strategy))
        cli.use_backend(config.backend)
        cli.require_tensorflow()
        run_dir = None  # only the chief of a multi-worker cluster writes
        if cli.is_chief_process(config.strategy):
            run_dir = RunDirectory(config.run_dir)
            run_dir.open(
                config.run_defining_values(),
                cli.OVERWRITE.value,
                record=False,
                defaults=config_lib.default_flag_values(),
            )
            finished = run_dir.finished()
            if finished is not None:
                print(f"finished already: {summary(finished, config.run_dir)}")
                return
        data = data_lib.load_ssl_data(**config.split_arguments())  # TensorFlow only for TFDS
        if run_dir is not None:
            run_dir.record_flags()  # only now: a run whose data fails to load leaves no config
    except (ConfigError, data_lib.DataNotFoundError) as error:
        cli.usage_error(str(error))
    except (data_lib.CorruptDataError, data_lib.DownloadError, DamagedFileError) as error:
        cli.runtime_error(str(error))
    except KeyboardInterrupt as stop:
        cli.interrupted("interrupted before training started", stop)
    try:
        _train(config, data, run_dir)
    finally:
        if run_dir is not None:
            run_dir.close()


def _train(config, data, run_dir) -> None:
    from ns3l_tf import distribute, training  # TensorFlow: only once flags and data are good

    try:
        # Before any other TensorFlow op: collectives are configured at startup.
        strategy = distribute.make_strategy(config.strategy, config.num_gpus)
        results = training.run(config, data, strategy=strategy, run_dir=run_dir)
    except (ConfigError, distribute.StrategyError) as error:
        cli.usage_error(str(error))
    except training.TrainingInterruptedError as stop:
        cli.interrupted(str(stop), stop.signal)
    except KeyboardInterrupt as stop:  # outside the loop: setting up, or the final outputs
        cli.interrupted(
            "interrupted outside the training loop; run the same command to resume", stop
        )
    except training.DivergenceError as error:
        cli.runtime_error(str(error))
    except OSError as error:  # a full disk, a directory that became unwritable
        cli.runtime_error(io_utils.os_error_message(error))
    except Exception as error:  # noqa: BLE001 (one line, the traceback under --verbose)
        cli.runtime_error(f"{type(error).__name__}: {error} (--verbose shows the traceback)")
    print(summary(results, config.run_dir))


def run():
    """The `ns3l-train` console script."""
    cli.run(main, __name__, config_lib.define_methods_flags)


if __name__ == "__main__":
    run()
