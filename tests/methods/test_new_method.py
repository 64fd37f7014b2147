"""A new method is one module and one registry line: a toy term, registered here only, trains
from `SSLModel` and from the command-line flags, and is validated like the package's own."""

import dataclasses

import numpy as np
import pytest
from absl import flags
from keras import ops

from ns3l_tf import SSLModel, methods, models, training
from ns3l_tf import config as config_lib
from ns3l_tf.methods.base import Contribution, Term
from ns3l_tf.settings import ConfigError, non_negative, open_unit_interval, setting

from .method_checks import fixed_batch


@dataclasses.dataclass(frozen=True)
class ConfidenceSettings:
    """The toy term's settings: flags --confidence_weight and --confidence_target."""

    weight: float = setting(0.5, "The toy term's weight.", check=non_negative(), tunable=True)
    target: float = setting(0.9, "Wanted mean top probability.", check=open_unit_interval)


class ConfidenceTerm:
    """`weight · (target − mean_b max_k μ_bk)²` on the unlabeled probabilities."""

    loss_names = ("confidence_loss",)
    metric_names = ()

    def __init__(self, settings, context):
        self.weight, self.target = settings.weight, settings.target
        self.rampup = context.consistency_rampup

    def __call__(self, outputs):
        top = ops.mean(ops.max(outputs.unlabeled_probs, axis=-1))
        value = ops.square(self.target - top)
        return Contribution(losses={"confidence_loss": Term(value, self.weight, self.rampup)})


@pytest.fixture
def confidence_method():
    methods.register(methods.Method("confidence", methods.TERM, ConfidenceSettings, ConfidenceTerm))
    yield
    methods.unregister("confidence")


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def test_a_registered_term_trains_from_ssl_model(confidence_method, small_data):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = SSLModel(
        models.small_cnn(), 10, algorithm="confidence", confidence_target=0.8, confidence_weight=2.0
    )
    model.compile(optimizer="adam")
    logits = model.backbone(np.concatenate([x_l, x_u]), training=True).numpy()
    expected = (0.8 - _softmax(logits[16:]).max(-1).mean()) ** 2

    logs = model.train_step(((x_l, y_l), x_u))
    assert float(logs["confidence_loss"]) == pytest.approx(expected, rel=1e-4)
    assert float(logs["loss"]) == pytest.approx(
        float(logs["sup_loss"]) + 2.0 * float(logs["confidence_loss"]), rel=1e-5
    )
    assert float(model.confidence_weight.numpy()) == 2.0  # tunable: a Variable
    config = model.get_config()
    assert (config["confidence_target"], config["confidence_weight"]) == (0.8, 2.0)
    with pytest.raises(ConfigError, match=r"--confidence_target=1.5: must be in the open"):
        SSLModel(models.small_cnn(), 10, algorithm="confidence", confidence_target=1.5)


@pytest.mark.large
def test_a_registered_term_trains_from_the_command_line_flags(
    confidence_method, small_data, tmp_path
):
    flag_values = flags.FlagValues()
    config_lib.define_flags(flag_values)
    flag_values(
        [
            "prog",
            "--algorithm=supervised+confidence",
            "--confidence_target=0.7",
            "--train_steps=2",
            "--eval_every=1",
            "--batch_size=16",
            "--unlabeled_batch_size=16",
            f"--output_dir={tmp_path / 'run'}",
        ]
    )
    config = config_lib.config_from_flags(flag_values)
    assert config.methods["confidence"] == ConfidenceSettings(weight=0.5, target=0.7)
    results = training.run(config, data=small_data, verbose=0)
    assert results["steps"] == 2 and results["flags"]["confidence_target"] == 0.7
    assert all(np.isfinite(r["confidence_loss"]) for r in results["history"])
    with pytest.raises(ConfigError, match=r"--confidence_weight=-1.0: must be >= 0"):
        config.replace(confidence_weight=-1.0)
