"""Run configuration: one frozen `Config`, validated once, built from absl flags by the CLIs.

A `Config` holds the run's own settings (data, model, schedule, where to write) and, for every
registered method, its settings section (`config.methods["vat"].epsilon`), declared beside the
method in `ns3l_tf.methods`. Flags are the run fields' names and `<method>_<setting>`
(`--vat_epsilon`); the same names work as keyword arguments:

    Config(num_labeled=2000, algorithm="vat+ns3l", vat_epsilon=2.0, ns3l_threshold=0.03)

Library code never reads flags, so notebooks and tuners build a `Config` directly and get the
same checks and messages as the command line. This module imports no TensorFlow: a bad flag
costs one line, not a TensorFlow import.
"""

import dataclasses
import os
import sys
from typing import Any

from absl import flags

from ns3l_tf import methods as methods_lib
from ns3l_tf import settings as settings_lib
from ns3l_tf.data.sources import DATASETS
from ns3l_tf.models import MODELS, PRECISIONS, PREPROCESSING
from ns3l_tf.settings import ConfigError, non_negative, positive, setting

STRATEGIES = ("default", "mirrored", "multi_worker", "data_parallel")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("step", "cosine")
# Keras backends the train step runs on (ns3l_tf.backend), and the strategies of each.
BACKENDS = ("tensorflow", "jax")
BACKEND_STRATEGIES = {
    "tensorflow": ("default", "mirrored", "multi_worker"),
    "jax": ("default", "data_parallel"),
}


def running_backend() -> str:
    """The Keras backend of this process: Keras's own once it is imported, else what it will
    pick ($KERAS_BACKEND, else tensorflow; a backend set only in ~/.keras/keras.json is read
    once Keras is imported)."""
    keras = sys.modules.get("keras")
    if keras is not None:
        return keras.backend.backend()
    return os.environ.get("KERAS_BACKEND") or "tensorflow"


def _named(what: str, choices) -> settings_lib.Check:
    return lambda value: (
        None if value in choices else f"unknown {what}; allowed: " + ", ".join(choices)
    )


def _in_unit_interval_from_above(value) -> str | None:
    return None if 0.0 < value <= 1.0 else "must be in (0, 1]"


@dataclasses.dataclass(frozen=True, init=False)
class Config:
    """Everything one training run depends on. Field names are the CLI flag names.

    `methods` maps every registered method's name to its settings; keyword arguments named
    `<method>_<setting>` set them (`Config(ns3l_weight=0)`).
    """

    dataset: str = setting(
        "fashion_mnist",
        f"Dataset: {', '.join(sorted(DATASETS))}.",
        check=_named("dataset", sorted(DATASETS)),
    )
    data_dir: str | None = setting(
        None,
        "Directory holding the dataset files (Fashion-MNIST IDX files, or a TFDS data dir); "
        "when set, the only place searched. Default: $NS3L_DATA_DIR, "
        "/usr/share/datasets/fashion-mnist, then $TFDS_DATA_DIR.",
        defines_run=False,  # results.json records the files read and their digests
    )
    download: bool = setting(
        False,
        "Where the data is on none of the searched places, let TFDS download and prepare it "
        "into --data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets); Fashion-MNIST "
        "too. Needs a network; offline files are always tried first.",
        defines_run=False,  # results.json records where the data came from
    )
    num_labeled: int = setting(2000, "Labeled images, the same number per class.")
    num_validation: int | None = setting(
        None,
        "Training images held out for validation; default the dataset's standard size "
        "(5000; 7325 for svhn_cropped; 0 for stl10).",
    )
    extra_unlabeled: bool | None = setting(
        None,
        "Add the extra unlabeled split (svhn_cropped: extra, 531,131 images; stl10: "
        "unlabelled, 100,000); default on for stl10 only.",
    )
    seed: int = setting(
        0,
        "Draws the labeled subset; seeds shuffling, augmentation, weights.",
        check=non_negative(),
    )
    model: str = setting(
        "small_cnn",
        f"Backbone: {', '.join(sorted(MODELS))}.",
        check=_named("model", sorted(MODELS)),
    )
    precision: str = setting(
        "float32",
        "Backbone compute precision: float32, mixed_bfloat16 or mixed_float16 (variables, "
        "BatchNorm statistics, logits, losses and VAT's power iteration stay float32; "
        "mixed_float16 adds loss scaling).",
        check=_named("precision", PRECISIONS),
    )
    preprocessing: str = setting(
        "standardize",
        "How the model turns raw images into network inputs (saved with it): standardize "
        "(per-channel mean and std of the training images), rescale (to [-1, 1]: SVHN in Oliver "
        "et al., MixMatch), gcn_zca (global contrast normalisation and ZCA whitening fitted on "
        "the training images: CIFAR-10 in Oliver et al.).",
        check=_named("preprocessing", PREPROCESSING),
    )
    augment: str | None = setting(
        None,
        "Where training images are augmented: model (inside the network, redrawn at every "
        "training-mode pass, as Oliver et al. and the NS3L authors do) or pipeline (once per "
        "batch in tf.data, as MixMatch does); default the base method's reference.",
        check=_named("augment", ("model", "pipeline")),
    )
    translate: int | None = setting(
        None,
        "Largest random translation in pixels, with reflect padding; default the dataset's (2; "
        "12 for stl10). MixMatch's flagfiles set 4 for 32x32 images.",
        check=non_negative(),
    )
    flip: bool | None = setting(
        None, "Random horizontal flips; default the dataset's (cifar10, cifar100, stl10)."
    )
    input_noise: float = setting(
        0.0,
        "Std of Gaussian noise added to the preprocessed inputs in every training-mode pass "
        "(needs --augment=model; 0.15 on CIFAR-10 in Oliver et al.).",
        check=non_negative(),
    )
    methods_module: str | None = setting(
        None,
        "A module of yours to import first, whose import registers more methods (e.g. "
        "my_lab.methods, importable from here); recorded with the run, so resuming and "
        "evaluating it load it too.",
    )
    algorithm: str = setting(
        "ns3l",
        f"A base method ({', '.join(methods_lib.names(methods_lib.BASE))}) and any additive "
        f"terms ({', '.join(methods_lib.names(methods_lib.TERM))}) joined by '+', e.g. ns3l "
        "(= supervised+ns3l), vat+entmin, fixmatch+ns3l.",
    )
    rampup_steps: int = setting(
        0,
        "Steps of Oliver et al.'s sigmoid warm-up of the unlabeled terms' weights "
        "(Pseudo-Label, VAT, EntMin, NS3L); 0 for none.",
        check=non_negative(),
    )
    batch_size: int = setting(64, "Labeled images per step.", check=positive)
    unlabeled_batch_size: int = setting(64, "Unlabeled images per step.", check=non_negative())
    optimizer: str = setting(
        "adam",
        "adam, or sgd with Nesterov momentum 0.9 (FixMatch: fixmatch.py:130).",
        check=_named("optimizer", OPTIMIZERS),
    )
    learning_rate: float = setting(
        1e-3, "Learning rate at step 0 (then --lr_schedule's).", check=positive
    )
    lr_schedule: str = setting(
        "step",
        "step (times --lr_decay_factor after --lr_decay_step, Oliver et al.'s staircase) or "
        "cosine (FixMatch's lr cos(7 pi k / 16 K) over the K = --train_steps: fixmatch.py:92-93).",
        check=_named("lr_schedule", LR_SCHEDULES),
    )
    lr_decay_step: int = setting(
        0,
        "Step after which the learning rate is multiplied by --lr_decay_factor (Oliver et al.'s "
        "staircase decay); 0 keeps it constant.",
    )
    lr_decay_factor: float = setting(
        0.2, "Learning-rate decay factor.", check=_in_unit_interval_from_above
    )
    weight_decay: float = setting(
        0.0,
        "Decoupled weight decay of conv/dense kernels per step, times the learning rate "
        "(w <- w (1 - lr wd); MixMatch: 0.02).",
        check=non_negative(),
    )
    ema_decay: float = setting(
        0.0,
        "Decay of an exponential moving average of the weights used for evaluation; 0: off.",
        check=settings_lib.unit_interval_from_zero,
    )
    train_steps: int = setting(3000, "Training steps (batches).", check=positive)
    eval_every: int = setting(
        500, "Steps between evaluations on validation and test.", check=positive
    )
    eval_batch_size: int = setting(
        1000, "Batch size of evaluation.", check=positive, defines_run=False
    )
    checkpoint_every: int | None = setting(
        None,
        "Steps between resumable checkpoints (rerunning the command resumes from the last); "
        "must divide --eval_every; default every evaluation.",
        check=positive,
        defines_run=False,
    )
    deterministic: bool = setting(
        False,
        "Deterministic TensorFlow ops, so a killed and resumed run ends bit for bit like an "
        "uninterrupted one (slower on some ops).",
        defines_run=False,
    )
    backend: str | None = setting(
        None,
        "Keras backend of the train step: tensorflow or jax (default: $KERAS_BACKEND, else "
        "tensorflow). The command lines set it before Keras is imported; tf.data still feeds "
        "the data. A run resumes on either (bit for bit on the one it started on).",
        check=_named("backend", BACKENDS),
        defines_run=False,
    )
    strategy: str = setting(
        "default",
        "How to use several devices: default (one device); on TensorFlow, mirrored (the GPUs "
        "of this machine) or multi_worker (one process per machine; the cluster comes from "
        "TF_CONFIG); on JAX, data_parallel (keras.distribution over every local device). "
        "--batch_size and --unlabeled_batch_size are global.",
        check=_named("strategy", STRATEGIES),
        defines_run=False,
    )
    num_gpus: int = setting(
        0,
        "GPUs for --strategy=mirrored; 0: every visible GPU.",
        check=non_negative("0: every visible GPU"),
        defines_run=False,
    )
    output_dir: str | None = setting(
        None,
        "Where results.json, checkpoints and TensorBoard logs go; default "
        "runs/<dataset>_<num_labeled>_<algorithm>_seed<seed>. One configuration per directory: "
        "rerunning resumes it (or says it is finished); other flags are refused.",
        defines_run=False,
    )
    methods: dict[str, Any] = dataclasses.field(default=None, hash=False)

    def __init__(self, methods: dict[str, Any] | None = None, **values):
        """Run fields by name; method settings by `methods` and/or `<method>_<setting>`."""
        run = {name: values.pop(name) for name in list(values) if name in RUN_FIELDS}
        methods_lib.load_methods_module(run.get("methods_module"))
        sections = dict(methods or methods_lib.default_settings())
        for name, method in methods_lib.REGISTRY.items():
            prefix = f"{name}_"
            given = {k[len(prefix) :]: values.pop(k) for k in list(values) if k.startswith(prefix)}
            if given:
                try:
                    sections[name] = dataclasses.replace(
                        sections.get(name, method.settings()), **given
                    )
                except TypeError:
                    raise TypeError(
                        f"unknown settings {sorted(prefix + k for k in given)}; {name} has "
                        f"{sorted(settings_lib.flat(name, method.settings()))}"
                    ) from None
        if values:
            raise TypeError(f"Config got unknown settings {sorted(values)}")
        for field in RUN_FIELDS.values():
            object.__setattr__(self, field.name, run.get(field.name, field.default))
        if self.backend is None:
            object.__setattr__(self, "backend", running_backend())
        object.__setattr__(self, "methods", sections)
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
    def streams_extra_unlabeled(self) -> bool:
        """Whether the unlabeled pool includes the dataset's streamed extra split."""
        if self.extra_unlabeled is None:
            return DATASETS[self.dataset].extra_by_default
        return self.extra_unlabeled

    @property
    def augments_in_model(self) -> bool:
        """`augment` resolved: the base method's reference unless set."""
        if self.augment is None:
            return not methods_lib.REGISTRY[self.algorithm_spec.base].augments_in_pipeline
        return self.augment == "model"

    @property
    def max_translation(self) -> int:
        """`translate` with the dataset's default resolved."""
        return DATASETS[self.dataset].max_translation if self.translate is None else self.translate

    @property
    def flips(self) -> bool:
        """`flip` with the dataset's default resolved."""
        return DATASETS[self.dataset].flip if self.flip is None else self.flip

    @property
    def resolved_methods(self) -> dict[str, Any]:
        """`methods` with the data-dependent defaults resolved (NS³L's T = 0.4 / K)."""
        return {
            name: settings_lib.resolved(values, self.num_classes)
            for name, values in self.methods.items()
        }

    def resolved_flag_values(self) -> dict[str, Any]:
        """`flag_values()` with the data-dependent defaults resolved: what a run records."""
        return {**self.flag_values(), **methods_lib.flat_settings(self.resolved_methods)}

    @property
    def algorithm_spec(self) -> methods_lib.AlgorithmSpec:
        return methods_lib.parse_algorithm(self.algorithm)

    def replace(self, **values) -> "Config":
        """A copy with `values` changed (run fields or `<method>_<setting>`), validated."""
        return dataclasses.replace(self, **values)

    def flag_values(self) -> dict[str, Any]:
        """`{flag name: value}` of every run field and method setting (what a flagfile or
        `results.json` holds)."""
        run = {name: getattr(self, name) for name in RUN_FIELDS}
        return {**run, **methods_lib.flat_settings(self.methods)}

    def run_defining_values(self) -> dict[str, Any]:
        """`flag_values()` less where and how the run executes (`defines_run=False`): what a
        run directory must agree with to be resumed."""
        execution = [n for n, f in RUN_FIELDS.items() if not f.metadata["defines_run"]]
        return {k: v for k, v in self.flag_values().items() if k not in execution}

    @property
    def checkpoint_interval(self) -> int:
        """`checkpoint_every` with its default (every evaluation) resolved."""
        return self.checkpoint_every or self.eval_every

    def split_arguments(self) -> dict[str, Any]:
        """Keyword arguments of `ns3l_tf.data.load_ssl_data` for this run's split."""
        return {
            "dataset": self.dataset,
            "num_labeled": self.num_labeled,
            "num_validation": self.validation_size,
            "seed": self.seed,
            "data_dir": self.data_dir,
            "download": self.download,
            "extra_unlabeled": self.extra_unlabeled,
        }

    def model_settings(self) -> dict[str, Any]:
        """`SSLModel` keyword arguments: the settings of the methods the algorithm names, the
        warm-up and the seed."""
        spec = self.algorithm_spec
        named = {name: self.methods[name] for name in (spec.base, *spec.terms)}
        return {
            **methods_lib.flat_settings(named),
            "rampup_steps": self.rampup_steps,
            "seed": self.seed,
        }

    @property
    def run_dir(self) -> str:
        """`output_dir`, or a name derived from the dataset, labels, algorithm and seed."""
        if self.output_dir:
            return self.output_dir
        name = f"{self.dataset}_{self.num_labeled}_{self.algorithm.replace('+', '_')}"
        return os.path.join("runs", f"{name}_seed{self.seed}")


RUN_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "methods"}


def default_flag_values() -> dict[str, Any]:
    """`{flag name: declared default}` of every run field and registered method setting."""
    run = {name: field.default for name, field in RUN_FIELDS.items()}
    return {**run, **methods_lib.flat_settings(methods_lib.default_settings())}


def _validate(c: Config) -> None:
    def fail(flag: str, message: str):
        raise ConfigError(f"--{flag}={getattr(c, flag)}: {message}")

    settings_lib.validate("", c)
    methods_lib.validate_settings(c.methods)
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
    methods_lib.check_combination(
        c.algorithm,
        c.methods,
        info.num_classes,
        streamed_unlabeled=c.streams_extra_unlabeled,
        batch_sizes=(c.batch_size, c.unlabeled_batch_size),
        augment=c.augment,
    )
    if c.input_noise and not c.augments_in_model:
        fail("input_noise", "Gaussian input noise is drawn inside the model: needs --augment=model")
    if not 0 <= c.lr_decay_step < c.train_steps:
        fail("lr_decay_step", f"must be in [0, --train_steps={c.train_steps}) (0: no decay)")
    if c.lr_decay_step and c.lr_schedule != "step":
        fail("lr_decay_step", f"is the staircase of --lr_schedule=step, not {c.lr_schedule}")
    if c.num_gpus and c.strategy != "mirrored":
        fail("num_gpus", "only applies to --strategy=mirrored")
    if c.strategy not in BACKEND_STRATEGIES[c.backend]:
        fail(
            "strategy",
            f"not on --backend={c.backend}; allowed there: "
            + ", ".join(BACKEND_STRATEGIES[c.backend]),
        )
    if c.train_steps % c.eval_every:
        fail("eval_every", f"must divide --train_steps={c.train_steps}")
    if c.checkpoint_every and c.eval_every % c.checkpoint_every:
        fail("checkpoint_every", f"must divide --eval_every={c.eval_every}")


# The KerasTuner searches of `python -m ns3l_tf.tune` (ns3l_tf.tuning).
TUNERS = ("random", "bayesian", "hyperband")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """What `ns3l-tune` searches: `{flag name: SearchRange}`, each log-uniform; a per-class
    range is of the value times K (NS³L's T·K), and its value is kept below 1."""

    ranges: dict[str, settings_lib.SearchRange]

    def value(self, flag: str, sampled: float, num_classes: int) -> float:
        """The setting's value for a trial's `sampled` draw of `flag`'s range."""
        if self.ranges[flag].per_class:
            return min(sampled / num_classes, 0.999)
        return sampled

    def hyperparameter_name(self, flag: str) -> str:
        """The KerasTuner name of `flag`'s draw: `<flag>_times_classes` for a per-class one."""
        return f"{flag}_times_classes" if self.ranges[flag].per_class else flag


def search_space(config: Config, entries: list[str] = ()) -> SearchSpace:
    """The search of `config`'s algorithm: with no `entries`, every setting its methods
    declare searchable (`setting(search=...)`); else exactly the `--search` entries, each
    `<flag>` (its declared range) or `<flag>=<low>:<high>` (log-uniform; per class where the
    setting declares so), e.g. `ns3l_weight=0.3:3`.

    Raises:
      ConfigError: an entry names no float setting of the algorithm's methods, or has a bad
        range.
    """
    declared, numeric = {}, []
    for method in config.algorithm_spec.methods:
        for field in dataclasses.fields(method.settings):
            flag = settings_lib.flag_name(method.name, field)
            if settings_lib.field_type(field) is float:
                numeric.append(flag)
            if field.metadata.get("search") is not None:
                declared[flag] = field.metadata["search"]
    if not entries:
        return SearchSpace(declared)
    ranges = {}
    for entry in entries:
        flag, _, bounds = entry.partition("=")
        if flag not in numeric:
            raise ConfigError(
                f"--search={entry}: {flag} is no float setting of --algorithm={config.algorithm};"
                f" allowed: {', '.join(numeric)}"
            )
        if not bounds:
            if flag not in declared:
                raise ConfigError(
                    f"--search={entry}: {flag} declares no range; give {flag}=low:high"
                )
            ranges[flag] = declared[flag]
            continue
        try:
            low, high = (float(v) for v in bounds.split(":"))
            per_class = flag in declared and declared[flag].per_class
            ranges[flag] = settings_lib.SearchRange(low, high, per_class)
        except ValueError:
            raise ConfigError(
                f"--search={entry}: need {flag}=low:high with 0 < low < high"
            ) from None
    return SearchSpace(ranges)


def search_flags(config: Config, tuner: str, space: SearchSpace) -> dict[str, Any]:
    """What defines a search's trials (what its `--tune_dir` must agree with to resume): the
    run's defining flags, the tuner and the ranges; not `--max_trials`, which may grow."""
    return {
        **config.run_defining_values(),
        "tuner": tuner,
        "search": {flag: [r.low, r.high, r.per_class] for flag, r in space.ranges.items()},
    }


def check_search(config: Config, tuner: str, max_trials: int, space: SearchSpace) -> None:
    """Raises `ConfigError` unless the search has something to search, `config` has a
    validation split and one device, and `tuner` and `max_trials` are valid."""
    if tuner not in TUNERS:
        raise ConfigError(f"--tuner={tuner}: unknown; allowed: {', '.join(TUNERS)}")
    if max_trials < 1:
        raise ConfigError(f"--max_trials={max_trials}: must be >= 1")
    if not space.ranges:
        raise ConfigError(
            f"--algorithm={config.algorithm}: its methods declare no searchable setting; name "
            "one with --search=<setting>=<low>:<high>"
        )
    if config.validation_size == 0:
        raise ConfigError(
            f"--num_validation={config.num_validation}: tuning needs a validation split (the "
            "test split is never used to choose)"
        )
    if config.strategy != "default":
        raise ConfigError(f"--strategy={config.strategy}: tune runs one device per trial")


# absl flags: one per run field and per registered method setting, with its default and help.
_DEFINE_FLAG = {
    str: flags.DEFINE_string,
    int: flags.DEFINE_integer,
    float: flags.DEFINE_float,
    bool: flags.DEFINE_bool,
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines the flags of the run fields and of every registered method's settings that
    `flag_values` does not have yet (call again after registering a method). The command
    lines call it at import; importing this module defines none."""
    declared = [("", f) for f in RUN_FIELDS.values()]
    for name, method in methods_lib.REGISTRY.items():
        declared += [(name, f) for f in dataclasses.fields(method.settings)]
    for prefix, field in declared:
        name = settings_lib.flag_name(prefix, field)
        if name not in flag_values:
            define = _DEFINE_FLAG[settings_lib.field_type(field)]
            define(name, field.default, field.metadata["help"], flag_values=flag_values)


def define_methods_flags(args: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Imports the `--methods_module` named in `args` (expanded command-line flags) and
    defines the flags of the methods it registers, so that they parse. The command lines call
    it before parsing (`cli.flags_parser(define_flags=...)`).

    Raises:
      ConfigError: the module cannot be imported.
    """
    for arg in args:
        if arg.startswith(("--methods_module=", "-methods_module=")):
            methods_lib.load_methods_module(arg.split("=", 1)[1])
    define_flags(flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> Config:
    """Builds the validated `Config` from parsed flags (raises `ConfigError`)."""
    methods_lib.load_methods_module(flag_values["methods_module"].value)
    names = list(RUN_FIELDS) + list(methods_lib.flat_settings(methods_lib.default_settings()))
    return Config(**{name: flag_values[name].value for name in names if name in flag_values})
