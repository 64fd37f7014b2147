"""FixMatch and FlexMatch: their losses, FlexMatch's state, the strong augmentation, and NS³L
on top, against hand computations and independent NumPy code."""

import signal
import sys

import keras
import numpy as np
import pytest

from ns3l_tf import SSLModel, config, losses, methods
from ns3l_tf.methods.flexmatch import FlexMatch, FlexMatchSettings, learning_effects
from ns3l_tf.models.strong_augmentation import StrongAugmentation
from ns3l_tf.settings import ConfigError

from .. import processes
from ..conftest import REPO_ROOT


def test_confident_cross_entropy_keeps_rows_at_or_above_the_threshold():
    weak = np.array([[0.95, 0.05], [0.6, 0.4], [0.02, 0.98]], "float32")
    strong = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0]], "float32")
    loss, mask = losses.confident_cross_entropy(weak, strong, 0.95)
    np.testing.assert_array_equal(mask, [1.0, 0.0, 1.0])  # 0.95 itself counts (>=)
    first = -np.log(np.exp(1.0) / (np.exp(1.0) + 1.0))  # label 0
    third = -np.log(1.0 / (np.exp(2.0) + 1.0))  # label 1
    assert float(loss) == pytest.approx((first + third) / 3, rel=1e-6)


def test_confident_cross_entropy_takes_a_threshold_per_row():
    weak = np.array([[0.7, 0.3], [0.7, 0.3]], "float32")
    _, mask = losses.confident_cross_entropy(weak, np.zeros((2, 2), "float32"), [0.6, 0.8])
    np.testing.assert_array_equal(mask, [1.0, 0.0])


def test_learning_effects_by_hand():
    selected = np.array([-1, -1, -1, -1, 0, 0, 1], "int32")
    previous = np.zeros(3, "float32")
    # Warm-up: counts over (unused, 0, 1, 2) = (4, 2, 1, 0), normalised by 4.
    np.testing.assert_allclose(learning_effects(selected, 3, True, previous), [0.5, 0.25, 0.0])
    # Without: normalised by the largest class count, 2.
    np.testing.assert_allclose(learning_effects(selected, 3, False, previous), [1.0, 0.5, 0.0])
    # Every image alike (at the start: all unused): the previous effects stay.
    kept = learning_effects(np.full(5, -1, "int32"), 3, True, np.array([0.1, 0.2, 0.3]))
    np.testing.assert_allclose(kept, [0.1, 0.2, 0.3])


def _flexmatch(num_unlabeled=6, threshold=0.9):
    context = methods.MethodContext(3, keras.random.SeedGenerator(0), lambda s: 1.0, num_unlabeled)
    return FlexMatch(FlexMatchSettings(threshold=threshold), context)


def test_flexmatch_records_confident_pseudo_labels_then_thresholds_by_class():
    flex = _flexmatch()
    # σ starts at 0: every class's threshold is 0, so every image is used.
    np.testing.assert_allclose(flex.class_thresholds(np.array([0, 1, 2])), [0.0, 0.0, 0.0])
    weak = np.array([[0.95, 0.03, 0.02], [0.5, 0.4, 0.1], [0.05, 0.05, 0.9]], "float32")
    selected = flex.record(weak, np.array([4, 1, 2], "int32"))
    np.testing.assert_array_equal(selected, [-1, -1, 2, -1, 0, -1])  # row 2 is at τ: kept
    # Counts (unused, 0, 1, 2) = (4, 1, 0, 1): σ = (0.25, 0, 0.25) with the warm-up.
    np.testing.assert_allclose(flex.learning_effects.numpy(), [0.25, 0.0, 0.25])
    want = 0.9 * 0.25 / (2 - 0.25)
    np.testing.assert_allclose(flex.class_thresholds(np.array([0, 1, 2])), [want, 0.0, want])
    # An unconfident row keeps its image's earlier pseudo-label.
    selected = flex.record(np.array([[0.4, 0.3, 0.3]], "float32"), np.array([4], "int32"))
    assert int(selected[4]) == 0


def test_flexmatch_refuses_without_the_pool_size():
    context = methods.MethodContext(3, keras.random.SeedGenerator(0), lambda s: 1.0)
    with pytest.raises(ConfigError, match="num_unlabeled="):
        FlexMatch(FlexMatchSettings(), context)


def _dense_model(algorithm, **kwargs):
    """A BatchNorm-free backbone, so one concatenated pass equals separate passes."""
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model = SSLModel(backbone, 3, algorithm=algorithm, seed=0, num_unlabeled=5, **kwargs)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model(np.zeros((1, 4, 4, 1), "float32"))
    return model


def _views(seed=0):
    rng = np.random.default_rng(seed)
    x_l = rng.normal(size=(2, 4, 4, 1)).astype("float32")
    y_l = np.array([0, 2], "int32")
    x_u = rng.normal(size=(5, 2, 4, 4, 1)).astype("float32")
    return x_l, y_l, x_u


def _numpy_probs(model, images):
    kernel, bias = (w.numpy() for w in model.backbone.trainable_weights)
    logits = images.reshape(len(images), -1) @ kernel + bias
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits, exp / exp.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("base", ["fixmatch", "flexmatch"])
def test_ns3l_on_a_fixmatch_base_takes_negatives_from_weak_and_mass_from_strong(base):
    """Against NumPy: negatives where the weak view's probability is below T, the loss
    −mean log(1 − Σ_negatives μ_strong), FixMatch's own term, and their weighted sum."""
    model = _dense_model(
        f"{base}+ns3l", ns3l_threshold=0.3, ns3l_weight=2.0, **{f"{base}_threshold": 0.4}
    )
    x_l, y_l, x_u = _views()
    outputs = model.base_method(
        model,
        x_l,
        y_l,
        x_u,
        **({"unlabeled_extras": {"indices": np.arange(5)}} if base == "flexmatch" else {}),
    )
    ns3l = model.additive_terms[0](outputs).losses["ns3l_loss"].value
    _, weak = _numpy_probs(model, x_u[:, 0])
    strong_logits, strong = _numpy_probs(model, x_u[:, 1])
    negatives = weak < 0.3
    want = -np.mean(np.log(1.0 - np.sum(strong * negatives, axis=1)))
    assert float(ns3l) == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(outputs.targets, weak, rtol=1e-5)
    np.testing.assert_allclose(outputs.unlabeled_probs, strong, rtol=1e-5)
    if base == "fixmatch":
        confident = weak.max(axis=1) >= 0.4
        log_softmax = strong_logits - np.log(np.exp(strong_logits).sum(axis=1, keepdims=True))
        per_image = -log_softmax[np.arange(5), weak.argmax(axis=1)]
        fixmatch_loss = outputs.contribution.losses["fixmatch_loss"].value
        assert float(fixmatch_loss) == pytest.approx(np.mean(per_image * confident), rel=1e-5)


def test_the_train_step_augments_only_the_strong_view_and_sums_the_terms():
    model = _dense_model("fixmatch+ns3l", ns3l_threshold=0.3, ns3l_weight=2.0)
    seen = []
    original = model.preprocess
    model.preprocess = lambda images: seen.append(np.asarray(images)) or original(images)
    x_l, y_l, x_u = _views()
    x_u = np.random.default_rng(1).integers(0, 256, x_u.shape).astype("float32")
    logs = model.train_step(((x_l, y_l), x_u))
    unlabeled = seen[1]
    np.testing.assert_array_equal(unlabeled[:, 0], x_u[:, 0])  # the weak view as it came
    assert not np.allclose(unlabeled[:, 1], x_u[:, 1])  # the strong one through the layer
    assert float(logs["loss"]) == pytest.approx(
        float(logs["sup_loss"]) + float(logs["fixmatch_loss"]) + 2.0 * float(logs["ns3l_loss"]),
        rel=1e-5,
    )


def test_flexmatch_state_is_saved_with_the_model(tmp_path):
    # All-zero inputs and a zero bias: every weak view is uniform (1/3 ≥ τ = 0.3), class 0.
    model = _dense_model("flexmatch", flexmatch_threshold=0.3)
    x_l, y_l, x_u = _views()
    model.train_step(((x_l, y_l), {"images": x_u * 0, "indices": np.array([4, 1, 2, 3, 0])}))
    np.testing.assert_array_equal(model.flexmatch_selected_labels.numpy(), [0, 0, 0, 0, 0])
    model.save_weights(tmp_path / "model.weights.h5")
    fresh = _dense_model("flexmatch", flexmatch_threshold=0.3)
    np.testing.assert_array_equal(fresh.flexmatch_selected_labels.numpy(), [-1] * 5)
    fresh.load_weights(tmp_path / "model.weights.h5")
    np.testing.assert_array_equal(fresh.flexmatch_selected_labels.numpy(), [0, 0, 0, 0, 0])
    np.testing.assert_allclose(
        fresh.flexmatch_learning_effects.numpy(), model.flexmatch_learning_effects.numpy()
    )


def test_strong_augmentation_is_per_image_seeded_and_ends_in_cutout():
    images = np.full((64, 28, 28, 1), 200.0, "float32")
    images[:, :, :14] = 40.0  # two halves, so geometric and colour operations show
    layer = StrongAugmentation(seed=3)
    first = keras.ops.convert_to_numpy(layer(images, training=True))
    assert first.shape == images.shape and first.min() >= 0 and first.max() <= 255
    assert len({first[i].tobytes() for i in range(64)}) > 32  # drawn per image
    again = keras.ops.convert_to_numpy(StrongAugmentation(seed=3)(images, training=True))
    np.testing.assert_array_equal(first, again)  # seeded
    second = keras.ops.convert_to_numpy(layer(images, training=True))
    assert not np.array_equal(first, second)  # fresh draws at every call
    np.testing.assert_array_equal(layer(images, training=False), images)


def test_cutout_is_a_gray_square_of_half_the_side_clipped_at_the_border():
    layer = StrongAugmentation(apply_probability=0.0, seed=0)  # operations off: Cutout only
    out = keras.ops.convert_to_numpy(layer(np.zeros((200, 28, 28, 1), "float32")))
    gray = out[..., 0] == 127.5
    rows, cols = gray.any(axis=2), gray.any(axis=1)
    assert set(np.unique(out)) <= {0.0, 127.5}
    assert (gray.sum(axis=(1, 2)) == rows.sum(axis=1) * cols.sum(axis=1)).all()  # rectangles
    assert rows.sum(axis=1).max() == 14 and rows.sum(axis=1).min() >= 7  # 14 = 28 / 2
    assert gray.sum(axis=(1, 2)).max() == 196


def test_views_and_their_kinds_decide_the_batch_and_the_errors():
    assert methods.REGISTRY["fixmatch"].unlabeled_views == ("weak", "strong")
    with pytest.raises(ConfigError, match=r"--ns3l_views=2: fixmatch's views are drawn once"):
        config.Config(algorithm="fixmatch+ns3l", ns3l_views=2)
    with pytest.raises(ConfigError, match=r"--augment=model: fixmatch draws its augmentations"):
        config.Config(algorithm="fixmatch", augment="model")
    with pytest.raises(ConfigError, match=r"--extra_unlabeled: flexmatch keeps a pseudo-label"):
        config.Config(algorithm="flexmatch", dataset="svhn_cropped", extra_unlabeled=True)
    with pytest.raises(ConfigError, match=r"--lr_decay_step=100: is the staircase"):
        config.Config(lr_schedule="cosine", lr_decay_step=100)


@pytest.mark.large
def test_flexmatch_ns3l_from_its_flagfile_resumes_after_sigkill_with_its_state(tmp_path):
    """The shipped flagfile trains; a run killed after a checkpoint and rerun ends as the
    uninterrupted one: the same figures, weights and per-image pseudo-labels."""
    from ..test_reliability import _figures, _results, _wait_for_checkpoint

    tiny = [
        "--flagfile=flags/fmnist_40_flexmatch_ns3l.cfg",
        "--train_steps=8",
        "--eval_every=4",
        "--checkpoint_every=2",
        "--batch_size=8",
        "--unlabeled_batch_size=16",
        "--num_validation=200",
        "--flexmatch_threshold=0.3",
        "--deterministic",
    ]

    def command(output_dir):
        return [sys.executable, "-m", "ns3l_tf.train", *tiny, f"--output_dir={output_dir}"]

    def state(output_dir):
        import ns3l_tf

        model = ns3l_tf.load_model(str(output_dir / "model.keras"), compile=False)
        return model.flexmatch_selected_labels.numpy(), [np.asarray(v) for v in model.weights]

    reference = tmp_path / "reference"
    done = processes.run(command(reference), cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = tmp_path / "killed"
    process = processes.Popen(
        command(killed), cwd=REPO_ROOT, stdout=processes.PIPE, stderr=processes.PIPE
    )
    _wait_for_checkpoint(killed, process)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    resumed = processes.run(command(killed), cwd=REPO_ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _results(killed)["resumed_at_steps"] and _figures(_results(killed)) == _figures(
        _results(reference)
    )
    (labels, weights), (want_labels, want_weights) = state(killed), state(reference)
    assert (labels >= 0).sum() > 0  # some images got a pseudo-label
    np.testing.assert_array_equal(labels, want_labels)
    for got, want in zip(weights, want_weights, strict=True):
        np.testing.assert_array_equal(got, want)
