"""Train one semi-supervised model and write `results.json`.

    python -m ns3l_tf.train --flagfile=flags/fmnist_2000.cfg [--flag=value ...]

Flags given after `--flagfile` override the file. Bad flag values end with one line on stderr
and exit code 2 before TensorFlow is imported or anything is loaded or written. The run is
`ns3l_tf.training.run`; see there for what it writes.
"""

import os

from absl import app, flags

from ns3l_tf import cli
from ns3l_tf import config as config_lib
from ns3l_tf.config import ConfigError, config_from_flags
from ns3l_tf.data.sources import DataNotFoundError

flags.adopt_module_key_flags(config_lib)  # --helpshort lists the Config flags


def main(argv: list[str]) -> None:
    cli.reject_arguments(argv)
    try:
        config = config_from_flags()
    except ConfigError as error:
        cli.usage_error(str(error))
    from ns3l_tf import distribute, experiment, training  # TensorFlow: only once flags are valid

    try:
        # Before any other TensorFlow op: collectives are configured at startup.
        strategy = distribute.make_strategy(config.strategy, config.num_gpus)
        experiment.check_divisible(config, strategy.num_replicas_in_sync)
        data = experiment.load_data(config)
    except (ConfigError, distribute.StrategyError, DataNotFoundError) as error:
        cli.usage_error(str(error))
    results = training.run(config, data, strategy=strategy)
    summary = f"test error {results['test_error']:.2f}% after {results['steps']} steps "
    summary += f"({results['seconds']:.0f} s)"
    if results["best_val_error"] is not None:
        summary += (
            f"; at the lowest validation error ({results['best_val_error']:.2f}%, step "
            f"{results['best_val_step']}): test error {results['best_val_test_error']:.2f}%"
        )
    print(f"{summary}; results in {os.path.join(config.run_dir, 'results.json')}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
