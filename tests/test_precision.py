"""Mixed precision: bfloat16/float16 backbones train with float32 variables, statistics, logits
and losses; VAT computes its power iteration in float32 so ξ = 1e-6 survives."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from ns3l_tf import SSLModel, experiment, models
from ns3l_tf.config import Config
from ns3l_tf.models import precision

from .methods import method_checks


def _pair(algorithm, **settings):
    """The same small CNN (same weights) in float32 and in mixed bfloat16."""
    built = []
    for policy in ("float32", "mixed_bfloat16"):
        keras.utils.set_random_seed(0)
        backbone = models.build_backbone("small_cnn", 10, (28, 28, 1), precision=policy)
        model = SSLModel(backbone, 10, algorithm=algorithm, seed=0, **settings)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        model(np.zeros((1, 28, 28, 1), "float32"))
        built.append(model)
    built[1].set_weights(built[0].get_weights())
    return built


def test_mixed_backbone_keeps_variables_statistics_and_logits_in_float32():
    _, low = _pair("ns3l")
    conv = next(layer for layer in low.backbone.layers if "conv" in layer.name)
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert {v.dtype for v in low.backbone.weights} == {"float32"}  # incl. BN moving stats
    assert low(np.zeros((2, 28, 28, 1), "float32")).dtype == "float32"
    with precision.full_precision():
        assert conv.compute_dtype == "float32"
    assert conv.compute_dtype == "bfloat16"


@pytest.mark.parametrize(
    "algorithm, settings",
    [
        ("ns3l", {"ns3l_threshold": 0.05}),
        ("ns3l", {"ns3l_threshold": 0.05, "ns3l_views": 2}),
        ("vat+entmin+ns3l", {"vat_epsilon": 1.0}),
        ("pseudo_label+ns3l", {}),
        ("mixmatch+ns3l", {"mixmatch_rampup_steps": 0, "mixmatch_weight": 1.0}),
    ],
)
def test_bfloat16_step_is_finite_and_close_to_float32(algorithm, settings, small_data):
    full, low = _pair(algorithm, **settings)
    mixmatch = algorithm.startswith("mixmatch")
    x_l, y_l, x_u = method_checks.fixed_batch(
        small_data, 16, 16 if mixmatch else 24, augmentations=2 if mixmatch else 1
    )
    logs = [model.train_step(((x_l, y_l), x_u)) for model in (full, low)]
    for name, value in logs[1].items():
        assert np.isfinite(float(value)), name
    for name in ("loss", "sup_loss"):
        assert float(logs[1][name]) == pytest.approx(float(logs[0][name]), rel=0.03), name


def test_vat_perturbation_survives_bfloat16(small_data):
    full, low = _pair("vat", vat_epsilon=2.0)
    _, _, x_u = method_checks.fixed_batch(small_data, n_unlabeled=32)
    directions = []
    for model in (full, low):  # both seeded alike: the same random d
        clean = model.classify(x_u, training=False)
        directions.append(model.base_method.adversarial_perturbation(model, x_u, clean).numpy())
    norms = np.linalg.norm(directions[1].reshape(32, -1), axis=1)
    np.testing.assert_allclose(norms, 2.0, rtol=1e-3)  # non-zero: ε per image
    cosine = np.sum(directions[0] * directions[1]) / (
        np.linalg.norm(directions[0]) * np.linalg.norm(directions[1])
    )
    assert cosine > 0.95


def test_vat_refuses_a_low_precision_backbone_it_cannot_switch(small_data):
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        backbone = models.small_cnn()
    finally:
        keras.config.set_dtype_policy("float32")
    model = SSLModel(backbone, 10, algorithm="vat")
    model.compile(optimizer="adam")
    x_l, y_l, x_u = method_checks.fixed_batch(small_data)
    with pytest.raises(ValueError, match="VAT's power iteration needs float32, but the backbone"):
        model.train_step(((x_l, y_l), x_u))


def test_float16_scales_the_loss_and_trains(small_data):
    config = Config(precision="mixed_float16", algorithm="ns3l", batch_size=16)
    model = experiment.build_model(config, small_data)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    x_l, y_l, x_u = method_checks.fixed_batch(small_data)
    raw = lambda x: tf.cast(x * small_data.std + small_data.mean, tf.float32) * 255.0  # noqa: E731
    before = [w.numpy().copy() for w in model.trainable_weights]
    logs = model.train_step(((raw(x_l), y_l), raw(x_u)))
    assert np.isfinite(float(logs["loss"]))
    moved = [not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights)]
    assert all(moved)


def test_precision_is_checked_and_recorded():
    with pytest.raises(ValueError, match="--precision=float8: unknown precision; allowed"):
        Config(precision="float8")
    assert Config(precision="mixed_bfloat16").flag_values()["precision"] == "mixed_bfloat16"


def test_mixed_bfloat16_warns_only_on_x86_cpus_without_bfloat16_units(tmp_path, monkeypatch):
    from ns3l_tf.models import precision

    def cpuinfo(flags):
        path = tmp_path / f"cpuinfo_{len(flags)}"
        path.write_text(f"processor\t: 0\nflags\t\t: {' '.join(flags)}\n\nprocessor\t: 1\n")
        return str(path)

    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")
    avx2, native = cpuinfo(["fpu", "sse2", "avx2", "fma"]), cpuinfo(["avx2", "avx512_bf16"])
    real = precision.cpu_flags
    monkeypatch.setattr(precision, "cpu_flags", lambda: real(avx2))
    assert precision.cpu_flags() == {"fpu", "sse2", "avx2", "fma"}
    warning = precision.bfloat16_emulation_warning("mixed_bfloat16", accelerator=False)
    assert warning.startswith("--precision=mixed_bfloat16: this CPU has no bfloat16 units")
    assert "\n" not in warning
    assert precision.bfloat16_emulation_warning("float32", accelerator=False) is None
    assert precision.bfloat16_emulation_warning("mixed_bfloat16", accelerator=True) is None
    monkeypatch.setattr(precision, "cpu_flags", lambda: real(native))
    assert precision.bfloat16_emulation_warning("mixed_bfloat16", accelerator=False) is None
    monkeypatch.setattr(precision, "cpu_flags", lambda: real(str(tmp_path / "missing")))
    assert precision.bfloat16_emulation_warning("mixed_bfloat16", accelerator=False) is None
    monkeypatch.setattr(precision.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(precision, "cpu_flags", lambda: real(avx2))
    assert precision.bfloat16_emulation_warning("mixed_bfloat16", accelerator=False) is None
