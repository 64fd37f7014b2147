"""Run configuration: one frozen `Config`, validated once, built from absl flags by the CLI.

Library code never reads flags: `Config` is what `ns3l_tf.train.run` takes, so notebooks and
tuners build one directly (`Config(num_labeled=2000, algorithm="ns3l")`) and get the same
checks and messages as the command line.
"""

import dataclasses
import os
import typing

from absl import flags

from ns3l_tf import distribute, methods, negatives
from ns3l_tf.data.sources import DATASETS
from ns3l_tf.models import MODELS
from ns3l_tf.ssl_model import default_ns3l_threshold


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names the flag and what is allowed."""


def _field(default, help_text: str):
    """A Config field whose flag help is `help_text`."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one training run depends on. Field names are the CLI flag names."""

    dataset: str = _field("fashion_mnist", f"Dataset: {', '.join(sorted(DATASETS))}.")
    data_dir: str | None = _field(
        None,
        "Directory holding the dataset files (Fashion-MNIST IDX files); searched before "
        "$NS3L_DATA_DIR and /usr/share/datasets/fashion-mnist.",
    )
    num_labeled: int = _field(2000, "Labeled images, the same number per class.")
    num_validation: int | None = _field(
        None,
        "Training images held out for validation; default the dataset's standard size "
        "(5000; 7325 for svhn_cropped; 0 for stl10).",
    )
    extra_unlabeled: bool | None = _field(
        None,
        "Add the extra unlabeled split (svhn_cropped: extra, 531,131 images; stl10: "
        "unlabelled, 100,000); default on for stl10 only.",
    )
    seed: int = _field(0, "Draws the labeled subset; seeds shuffling, augmentation, weights.")
    model: str = _field("small_cnn", f"Backbone: {', '.join(sorted(MODELS))}.")
    algorithm: str = _field(
        "ns3l",
        "A base method (supervised, pseudo_label, vat, mixmatch) and any additive terms "
        "(entmin, ns3l) joined by '+', e.g. ns3l (= supervised+ns3l), vat+entmin, "
        "mixmatch+ns3l.",
    )
    ns3l_threshold: float | None = _field(
        None, "NS3L threshold T in (0, 1); default 0.4 / number of classes."
    )
    ns3l_weight: float = _field(1.0, "NS3L weight lambda_1 >= 0; 0 turns NS3L off.")
    negatives: str = _field(
        "threshold",
        "How NS3L picks negatives (paper Section 5): threshold (below T), uniform (P random "
        "classes), oracle (P random wrong classes; reads the hidden labels: a diagnostic), "
        "nn_exclude, nn_exclude4, nn_furthest (by the nearest/furthest labeled images).",
    )
    num_negatives: int = _field(1, "P, negatives per sample for --negatives=uniform|oracle.")
    pseudo_label_threshold: float = _field(0.95, "Pseudo-Label's confidence threshold.")
    pseudo_label_weight: float = _field(1.0, "Pseudo-Label's weight.")
    vat_epsilon: float = _field(6.0, "VAT's perturbation norm per image (6 CIFAR, 1 SVHN).")
    vat_xi: float = _field(1e-6, "VAT's finite-difference step.")
    vat_weight: float = _field(0.3, "VAT's weight lambda_2.")
    entmin_weight: float = _field(0.1, "Entropy minimisation's weight.")
    mixmatch_weight: float = _field(75.0, "MixMatch's unlabeled weight lambda_3.")
    mixmatch_temperature: float = _field(0.5, "MixMatch's sharpening temperature.")
    mixmatch_alpha: float = _field(0.75, "MixMatch's Beta(alpha, alpha) MixUp parameter.")
    mixmatch_rampup_steps: int = _field(16384, "Steps of the linear warm-up of lambda_3.")
    rampup_steps: int = _field(
        0,
        "Steps of Oliver et al.'s sigmoid warm-up of the unlabeled terms' weights "
        "(Pseudo-Label, VAT, EntMin, NS3L); 0 for none.",
    )
    batch_size: int = _field(64, "Labeled images per step.")
    unlabeled_batch_size: int = _field(64, "Unlabeled images per step.")
    learning_rate: float = _field(1e-3, "Adam learning rate.")
    lr_decay_step: int = _field(
        0,
        "Step after which the learning rate is multiplied by --lr_decay_factor (Oliver et al.'s "
        "staircase decay); 0 keeps it constant.",
    )
    lr_decay_factor: float = _field(0.2, "Learning-rate decay factor.")
    weight_decay: float = _field(
        0.0,
        "Decoupled weight decay of conv/dense kernels per step, times the learning rate "
        "(w <- w (1 - lr wd); MixMatch: 0.02).",
    )
    ema_decay: float = _field(
        0.0, "Decay of an exponential moving average of the weights used for evaluation; 0: off."
    )
    train_steps: int = _field(3000, "Training steps (batches).")
    eval_every: int = _field(500, "Steps between evaluations on validation and test.")
    eval_batch_size: int = _field(1000, "Batch size of evaluation.")
    strategy: str = _field(
        "default",
        "tf.distribute strategy: default (one device), mirrored (the GPUs of this machine), "
        "multi_worker (one process per machine; the cluster comes from TF_CONFIG). "
        "--batch_size and --unlabeled_batch_size are global.",
    )
    num_gpus: int = _field(0, "GPUs for --strategy=mirrored; 0: every visible GPU.")
    output_dir: str | None = _field(
        None,
        "Where results.json, checkpoints and TensorBoard logs go; default "
        "runs/<dataset>_<num_labeled>_<algorithm>_seed<seed>.",
    )

    def __post_init__(self):
        _validate(self)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset].num_classes

    @property
    def validation_size(self) -> int:
        """`num_validation` with the dataset's default resolved."""
        if self.num_validation is None:
            return DATASETS[self.dataset].default_num_validation
        return self.num_validation

    @property
    def threshold(self) -> float:
        """T with the default resolved."""
        if self.ns3l_threshold is None:
            return default_ns3l_threshold(self.num_classes)
        return self.ns3l_threshold

    def load_data(self):
        """The `ns3l_tf.data.SSLData` split this config names.

        Raises:
          DataNotFoundError: the data is not on this machine (the message says how to get it).
        """
        from ns3l_tf import data as data_lib

        return data_lib.load_ssl_data(
            self.dataset,
            self.num_labeled,
            self.validation_size,
            self.seed,
            self.data_dir,
            self.extra_unlabeled,
        )

    @property
    def run_dir(self) -> str:
        """`output_dir`, or a name derived from the dataset, labels, algorithm and seed."""
        if self.output_dir:
            return self.output_dir
        name = f"{self.dataset}_{self.num_labeled}_{self.algorithm.replace('+', '_')}"
        return os.path.join("runs", f"{name}_seed{self.seed}")


def _validate(c: Config) -> None:
    def fail(flag: str, message: str):
        raise ConfigError(f"--{flag}={getattr(c, flag)}: {message}")

    if c.dataset not in DATASETS:
        fail("dataset", f"unknown dataset; allowed: {', '.join(sorted(DATASETS))}")
    if c.model not in MODELS:
        fail("model", f"unknown model; allowed: {', '.join(sorted(MODELS))}")
    try:
        spec = methods.parse_algorithm(c.algorithm)
    except ValueError as error:
        raise ConfigError(f"--algorithm={c.algorithm}: {error}") from None
    if c.ns3l_threshold is not None and not 0.0 < c.ns3l_threshold < 1.0:
        fail("ns3l_threshold", "must be in the open interval (0, 1)")
    if c.ns3l_weight < 0.0:
        fail("ns3l_weight", "must be >= 0 (0 turns NS3L off)")
    for flag in ("pseudo_label_weight", "vat_weight", "entmin_weight", "mixmatch_weight"):
        if getattr(c, flag) < 0.0:
            fail(flag, "must be >= 0")
    for flag in ("pseudo_label_threshold", "ema_decay"):
        if not 0.0 <= getattr(c, flag) < 1.0:
            fail(flag, "must be in [0, 1)")
    for flag in ("vat_epsilon", "vat_xi", "mixmatch_temperature", "mixmatch_alpha"):
        if getattr(c, flag) <= 0.0:
            fail(flag, "must be > 0")
    for flag in ("rampup_steps", "mixmatch_rampup_steps"):
        if getattr(c, flag) < 0:
            fail(flag, "must be >= 0")
    _validate_negatives(c, spec)
    if c.weight_decay < 0.0:
        fail("weight_decay", "must be >= 0")
    if spec.base == "mixmatch" and c.unlabeled_batch_size != c.batch_size:
        fail("unlabeled_batch_size", f"must equal --batch_size={c.batch_size} for MixMatch")
    info = DATASETS[c.dataset]
    if c.num_labeled <= 0 or c.num_labeled % info.num_classes:
        fail(
            "num_labeled",
            f"must be a positive multiple of the {info.num_classes} classes of {c.dataset}",
        )
    if c.validation_size < 0:
        fail("num_validation", "must be >= 0")
    if c.num_labeled + c.validation_size >= info.train_size:
        fail(
            "num_labeled",
            f"num_labeled + num_validation ({c.num_labeled} + {c.validation_size}) must leave "
            f"unlabeled images among the {info.train_size} training images of {c.dataset}",
        )
    if c.extra_unlabeled and not info.extra_split:
        fail("extra_unlabeled", f"{c.dataset} has no extra unlabeled split")
    for flag in ("batch_size", "learning_rate", "train_steps", "eval_every", "eval_batch_size"):
        if getattr(c, flag) <= 0:
            fail(flag, "must be > 0")
    if c.unlabeled_batch_size < 0:
        fail("unlabeled_batch_size", "must be >= 0")
    if spec.needs_unlabeled(c.ns3l_weight) and c.unlabeled_batch_size == 0:
        fail("unlabeled_batch_size", f"must be > 0 for --algorithm={c.algorithm}")
    if not 0 <= c.lr_decay_step < c.train_steps:
        fail("lr_decay_step", f"must be in [0, --train_steps={c.train_steps}) (0: no decay)")
    if not 0.0 < c.lr_decay_factor <= 1.0:
        fail("lr_decay_factor", "must be in (0, 1]")
    if c.strategy not in distribute.STRATEGIES:
        fail("strategy", f"unknown strategy; allowed: {', '.join(distribute.STRATEGIES)}")
    if c.num_gpus < 0:
        fail("num_gpus", "must be >= 0 (0: every visible GPU)")
    if c.num_gpus and c.strategy != "mirrored":
        fail("num_gpus", "only applies to --strategy=mirrored")
    if c.train_steps % c.eval_every:
        fail("eval_every", f"must divide --train_steps={c.train_steps}")


def _validate_negatives(c: Config, spec: methods.AlgorithmSpec) -> None:
    if c.negatives not in negatives.SELECTORS:
        raise ConfigError(
            f"--negatives={c.negatives}: unknown selector; allowed: "
            f"{', '.join(negatives.SELECTORS)}"
        )
    if c.negatives == "threshold":
        return
    if "ns3l" not in spec.active_terms(c.ns3l_weight):
        raise ConfigError(
            f"--negatives={c.negatives}: needs the NS3L term (an --algorithm with ns3l and "
            "--ns3l_weight > 0)"
        )
    if spec.base == "mixmatch":
        raise ConfigError(
            f"--negatives={c.negatives}: MixMatch mixes images, so only threshold negatives apply"
        )
    num_classes = DATASETS[c.dataset].num_classes
    largest = num_classes if c.negatives == "uniform" else num_classes - 1
    if c.negatives in negatives.COUNTED and not 1 <= c.num_negatives <= largest:
        raise ConfigError(
            f"--num_negatives={c.num_negatives}: must be in [1, {largest}] for "
            f"--negatives={c.negatives} on {c.dataset}"
        )
    extra = c.extra_unlabeled
    if extra is None:
        extra = DATASETS[c.dataset].extra_by_default
    if c.negatives != "uniform" and extra:
        raise ConfigError(
            f"--negatives={c.negatives}: needs every unlabeled image in memory (and, for "
            f"oracle, its true label); {c.dataset}'s extra unlabeled split is streamed without "
            "labels: add --extra_unlabeled=false"
        )


# absl flags: one per Config field, with the field's default and help.
_DEFINE_FLAG = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_bool,
}
for _f in dataclasses.fields(Config):
    _type = next(t for t in typing.get_args(_f.type) or (_f.type,) if t is not type(None))
    _DEFINE_FLAG[_type](_f.name, _f.default, _f.metadata["help"])


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    """Builds the validated `Config` from parsed flags (raises `ConfigError`)."""
    return Config(**{f.name: flag_values[f.name].value for f in dataclasses.fields(Config)})
