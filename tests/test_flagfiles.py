"""The paper's flagfiles: every cell of Tables 1-4 exists and carries the paper's settings."""

import os

import pytest

from ns3l_tf import cli
from ns3l_tf.config import config_from_flags

from .conftest import REPO_ROOT

TABLE1 = ["supervised", "pseudo_label", "vat", "vat_entmin", "ns3l", "vat_ns3l"]
TABLE1_CELLS = ["cifar10_4000", "svhn_1000", "cifar100_10000"]
MIXMATCH_CELLS = ["cifar10_250", "cifar10_4000", "svhn_250", "svhn_1000", "stl10_1000"]
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
    ],
)
def test_paper_hyperparameters(name, expected, saved_flags, monkeypatch):
    config = _config(name, saved_flags, monkeypatch)
    for key, value in expected.items():
        wanted = value if isinstance(value, str) else pytest.approx(value)
        assert config.flag_values()[key] == wanted, key


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
