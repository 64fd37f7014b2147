"""The paper's flagfiles: every cell of Tables 1-4 exists and carries the paper's settings."""

import os
import re
import sys

import pytest

from ns3l_tf import cli, flagfiles, train  # noqa: F401 (train defines the flags)
from ns3l_tf.config import config_from_flags

from . import processes
from .conftest import REPO_ROOT

TABLE1 = ["supervised", "pseudo_label", "vat", "vat_entmin", "ns3l", "vat_ns3l"]
TABLE1_CELLS = ["cifar10_4000", "svhn_1000", "cifar100_10000"]
MIXMATCH_CELLS = ["cifar10_250", "cifar10_4000", "svhn_250", "svhn_1000", "stl10_1000"]
FIXMATCH_CELLS = [
    "cifar10_40",
    "cifar10_250",
    "cifar10_4000",
    "svhn_40",
    "svhn_250",
    "svhn_1000",
    "stl10_1000",
]
FIXMATCH_FAMILY = ["fixmatch", "fixmatch_ns3l", "flexmatch", "flexmatch_ns3l"]
FMNIST = [
    "supervised",
    "pseudo_label",
    "vat",
    "vat_entmin",
    "vat_ns3l",
    "mixmatch",
    "mixmatch_ns3l",
]


def _config(name, saved_flags, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", f"--flagfile=flags/{name}.cfg"])
    return config_from_flags()


def test_every_paper_cell_has_a_flagfile():
    names = [f"{c}_{m}" for c in TABLE1_CELLS for m in TABLE1]
    names += [f"{c}_{m}" for c in MIXMATCH_CELLS for m in ("mixmatch", "mixmatch_ns3l")]
    names += [f"fmnist_2000_{m}" for m in FMNIST] + ["fmnist_2000"]
    names += [f"{c}_{m}" for c in FIXMATCH_CELLS for m in ("fixmatch", "fixmatch_ns3l")]
    names += [f"fmnist_{n}_{m}" for n in (40, 250, 2000) for m in FIXMATCH_FAMILY]
    missing = [n for n in names if not os.path.exists(os.path.join(REPO_ROOT, "flags", f"{n}.cfg"))]
    assert not missing


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10_4000_ns3l", dict(algorithm="ns3l", learning_rate=6e-4, ns3l_threshold=0.04)),
        ("cifar10_4000_vat_ns3l", dict(ns3l_weight=0.3, vat_weight=0.3, vat_epsilon=6.0)),
        ("svhn_1000_vat", dict(dataset="svhn_cropped", vat_epsilon=1.0, learning_rate=3e-3)),
        ("svhn_1000_pseudo_label", dict(learning_rate=3e-4, pseudo_label_threshold=0.95)),
        ("cifar10_4000_vat_entmin", dict(algorithm="vat+entmin", entmin_weight=0.1)),
        (
            "cifar100_10000_vat_ns3l",
            dict(learning_rate=3e-3, vat_weight=0.6, ns3l_weight=0.3, ns3l_threshold=0.004),
        ),
        ("cifar10_250_mixmatch_ns3l", dict(mixmatch_weight=75, ns3l_weight=5, ns3l_threshold=0.05)),
        ("cifar10_4000_mixmatch_ns3l", dict(ns3l_weight=10, num_labeled=4000)),
        ("svhn_250_mixmatch", dict(algorithm="mixmatch", mixmatch_weight=250, ema_decay=0.999)),
        ("stl10_1000_mixmatch_ns3l", dict(mixmatch_weight=50, ns3l_weight=2, weight_decay=0.02)),
        (
            "cifar10_40_fixmatch",
            dict(
                algorithm="fixmatch", fixmatch_threshold=0.95, fixmatch_weight=1.0, num_labeled=40
            ),
        ),
        ("svhn_250_fixmatch_ns3l", dict(algorithm="fixmatch+ns3l", dataset="svhn_cropped")),
        ("stl10_1000_fixmatch", dict(dataset="stl10", translate=12, model="wrn_stl10")),
        ("fmnist_40_flexmatch_ns3l", dict(algorithm="flexmatch+ns3l", ns3l_threshold=0.03)),
        ("fmnist_250_fixmatch", dict(num_labeled=250, unlabeled_batch_size=112, lr_decay_step=0)),
    ],
)
def test_paper_hyperparameters(name, expected, saved_flags, monkeypatch):
    config = _config(name, saved_flags, monkeypatch)
    for key, value in expected.items():
        wanted = value if isinstance(value, str) else pytest.approx(value)
        assert config.flag_values()[key] == wanted, key


def test_the_fixmatch_protocol(saved_flags, monkeypatch):
    fixmatch = _config("cifar10_4000_fixmatch_ns3l", saved_flags, monkeypatch)
    # google-research/fixmatch: 64 + 7 x 64 images, SGD-Nesterov 0.03 with cos(7 pi k / 16 K)
    # over 2^20 steps, EMA 0.999, inputs in [-1, 1], 4 px translation and flips on CIFAR-10.
    assert (fixmatch.batch_size, fixmatch.unlabeled_batch_size) == (64, 448)
    assert (fixmatch.optimizer, fixmatch.learning_rate, fixmatch.lr_schedule) == (
        "sgd",
        0.03,
        "cosine",
    )
    assert (fixmatch.train_steps, fixmatch.eval_every, fixmatch.ema_decay) == (2**20, 1024, 0.999)
    assert (fixmatch.preprocessing, fixmatch.translate, fixmatch.flips) == ("rescale", 4, True)
    assert fixmatch.weight_decay == pytest.approx(5e-4 / (1 - 0.9))  # the L2 form's, decoupled
    assert not fixmatch.augments_in_model


def test_protocols(saved_flags, monkeypatch):
    oliver = _config("svhn_1000_vat", saved_flags, monkeypatch)
    assert (oliver.train_steps, oliver.rampup_steps, oliver.lr_decay_step) == (
        200000,
        50000,
        130000,
    )
    assert (oliver.batch_size, oliver.unlabeled_batch_size, oliver.model) == (50, 50, "wrn28_2")
    mixmatch = _config("cifar10_250_mixmatch", saved_flags, monkeypatch)
    assert (mixmatch.train_steps, mixmatch.eval_every) == (300 * 1024, 1024)
    assert (mixmatch.lr_decay_step, mixmatch.methods["mixmatch"].rampup_steps) == (0, 16384)


@pytest.mark.parametrize("cell", TABLE1_CELLS)
def test_table1_supervised_cells_use_olivers_labeled_batch_of_100(cell, saved_flags, monkeypatch):
    supervised = _config(f"{cell}_supervised", saved_flags, monkeypatch)
    semi_supervised = _config(f"{cell}_vat", saved_flags, monkeypatch)
    assert supervised.batch_size == 100
    assert (semi_supervised.batch_size, semi_supervised.unlabeled_batch_size) == (50, 50)


@pytest.mark.parametrize(
    "name, preprocessing, in_model, translate, flips, noise, model",
    [
        ("cifar10_4000_vat", "gcn_zca", True, 2, True, 0.15, "wrn28_2"),
        ("cifar100_10000_ns3l", "gcn_zca", True, 2, True, 0.15, "wrn28_2"),
        ("svhn_1000_vat_ns3l", "rescale", True, 2, False, 0.0, "wrn28_2"),
        ("cifar10_250_mixmatch", "rescale", False, 4, True, 0.0, "wrn28_2"),
        ("svhn_250_mixmatch_ns3l", "rescale", False, 4, False, 0.0, "wrn28_2"),
        ("stl10_1000_mixmatch", "rescale", False, 12, True, 0.0, "wrn_stl10"),
        ("fmnist_2000", "standardize", True, 2, False, 0.0, "small_cnn"),
        ("fmnist_2000_mixmatch_ns3l", "standardize", False, 2, False, 0.0, "small_cnn"),
    ],
)
def test_each_protocol_feeds_its_references_inputs(
    name, preprocessing, in_model, translate, flips, noise, model, saved_flags, monkeypatch
):
    config = _config(name, saved_flags, monkeypatch)
    assert (config.preprocessing, config.augments_in_model) == (preprocessing, in_model)
    assert (config.max_translation, config.flips, config.input_noise) == (translate, flips, noise)
    assert config.model == model


@pytest.mark.parametrize(
    "name, views",
    [
        ("cifar10_4000_ns3l", 2),
        ("svhn_1000_vat_ns3l", 2),
        ("fmnist_2000", 2),
        ("svhn_250_mixmatch_ns3l", 1),
    ],
)
def test_ns3l_takes_the_authors_second_view_outside_mixmatch(name, views, saved_flags, monkeypatch):
    assert _config(name, saved_flags, monkeypatch).methods["ns3l"].views == views


def test_presets_are_the_shipped_flagfiles_and_expand_in_place():
    assert "fmnist_2000" in flagfiles.presets() and "common/fmnist" not in flagfiles.presets()
    expanded = flagfiles.expand(["--seed=3", "--preset=fmnist_quick", "--train_steps=7"])
    # fmnist_quick includes fmnist_2000, which includes common/fmnist.cfg: all in place, in
    # order, with the command line's flags around them.
    assert expanded[0] == "--seed=3" and expanded[-1] == "--train_steps=7"
    assert "--dataset=fashion_mnist" in expanded
    assert expanded.index("--dataset=fashion_mnist") < expanded.index("--train_steps=1200")


def test_nested_flagfiles_resolve_relative_to_the_including_file(tmp_path, monkeypatch):
    (tmp_path / "mine" / "parts").mkdir(parents=True)
    (tmp_path / "mine" / "parts" / "data.cfg").write_text("# data\n--dataset=cifar10\n")
    (tmp_path / "mine" / "run.cfg").write_text(
        "--flagfile=parts/data.cfg\n\n// comment\n--seed=5\n"
    )
    monkeypatch.chdir(tmp_path / "mine" / "parts")  # anywhere but the file's directory
    assert flagfiles.expand([f"--flagfile={tmp_path / 'mine' / 'run.cfg'}"]) == [
        "--dataset=cifar10",
        "--seed=5",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ("--flagfile=nothere.cfg\n", "line 1: --flagfile=nothere.cfg: no such file (looked in"),
        ("--seed=1\nseed=2\n", "line 2: 'seed=2' is not a flag (--name=value)"),
        ("--flagfile=bad.cfg\n", "includes itself"),
    ],
)
def test_flagfile_errors_name_the_file_and_line(content, message, tmp_path):
    (tmp_path / "bad.cfg").write_text(content)
    with pytest.raises(flagfiles.FlagfileError, match=re.escape(message)):
        flagfiles.expand([f"--flagfile={tmp_path / 'bad.cfg'}"])


def test_space_separated_preset_and_flagfile_expand_like_the_equals_form(tmp_path):
    (tmp_path / "mine.cfg").write_text("--seed=5\n")
    assert flagfiles.expand(["--preset", "fmnist_quick"]) == flagfiles.expand(
        ["--preset=fmnist_quick"]
    )
    assert flagfiles.expand(["--flagfile", str(tmp_path / "mine.cfg"), "--seed=6"]) == [
        "--seed=5",
        "--seed=6",
    ]
    with pytest.raises(
        flagfiles.FlagfileError, match=r"^--preset: needs a value \(--preset=...\)$"
    ):
        flagfiles.expand(["--preset", "--seed=1"])


def test_an_unknown_preset_lists_the_presets():
    with pytest.raises(flagfiles.FlagfileError, match="--preset=fmnist: no such preset; allowed: "):
        flagfiles.expand(["--preset=fmnist"])


def test_train_runs_a_preset_from_any_directory(tmp_path):
    result = processes.run(
        [sys.executable, "-m", "ns3l_tf.train", "--preset=fmnist_quick", "--train_steps=0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # Parsed from outside the repository: the includes resolved; the value check ran.
    assert result.returncode == 2 and "--train_steps=0: must be > 0" in result.stderr
