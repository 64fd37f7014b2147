"""Methods as self-contained modules: no framework at declaration, their own rules, resolved
settings in what a run records."""

import dataclasses
import subprocess
import sys

import pytest

from ns3l_tf import methods, settings
from ns3l_tf.config import Config, default_flag_values
from ns3l_tf.run_dir import differences
from ns3l_tf.settings import ConfigError, setting


def test_declaring_every_method_imports_no_framework():
    code = (
        "import sys, ns3l_tf.methods as m, ns3l_tf.config; "
        "print(sorted(m.REGISTRY), 'keras' in sys.modules, 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("]")[1].split() == ["False", "False"]
    for name in ("entmin", "mixmatch", "ns3l", "pseudo_label", "supervised", "vat"):
        assert repr(name) in out.stdout


def test_each_method_module_declares_its_own_settings():
    for name, method in methods.REGISTRY.items():
        assert method.settings.__module__ == f"ns3l_tf.methods.{name}", name


def test_ns3l_threshold_default_is_resolved_for_the_number_of_classes():
    assert Config().methods["ns3l"].threshold is None  # as given
    assert Config().resolved_methods["ns3l"].threshold == pytest.approx(0.04)
    cifar100 = Config(dataset="cifar100", num_labeled=10000)
    assert cifar100.resolved_flag_values()["ns3l_threshold"] == pytest.approx(0.004)
    assert Config(ns3l_threshold=0.03).resolved_flag_values()["ns3l_threshold"] == 0.03


def test_resolved_fills_only_declared_derived_defaults():
    @dataclasses.dataclass(frozen=True)
    class Toy:
        scale: float | None = setting(None, "derived", default_for=lambda k: 2.0 * k)
        other: float | None = setting(None, "left None")

    assert settings.resolved(Toy(), 10) == Toy(scale=20.0, other=None)
    assert settings.resolved(Toy(scale=1.5), 10) == Toy(scale=1.5)


def test_a_methods_own_check_judges_its_settings_when_it_is_not_named():
    with pytest.raises(ConfigError, match="--ns3l_selector=uniform: needs the NS3L term"):
        Config(algorithm="vat", ns3l_selector="uniform")
    Config(algorithm="mixmatch", ns3l_views=2)  # only refused where ns3l is named
    with pytest.raises(ConfigError, match="--ns3l_views=2: mixmatch's rows are mixtures"):
        Config(algorithm="mixmatch+ns3l", ns3l_views=2)


def test_a_flag_added_after_a_run_started_is_no_difference_at_its_default():
    saved = {"seed": 1}
    wanted = {"seed": 1, "new_flag": 0.5}
    assert differences(saved, wanted) == ["--new_flag=(unset)→0.5"]
    assert differences(saved, wanted, {"new_flag": 0.5}) == []
    assert differences(saved, {"seed": 1, "new_flag": 0.7}, {"new_flag": 0.5}) == [
        "--new_flag=(unset)→0.7"
    ]
    assert default_flag_values()["ns3l_weight"] == 1.0 and default_flag_values()["seed"] == 0


def test_register_refuses_a_view_kind_nothing_can_draw():
    blurred = methods.Method(
        "blurred_only",
        methods.BASE,
        methods.REGISTRY["supervised"].settings,
        object,
        unlabeled_views=("blurred",),
    )
    with pytest.raises(
        ValueError, match=r"blurred_only: unlabeled_views must be kinds of \('weak', 'strong'\)"
    ):
        methods.register(blurred)
    assert "blurred_only" not in methods.REGISTRY
