"""Negative selectors: masks on hand-made inputs, nearest neighbours against brute force, the
diagnostic, and how the model and the pipeline carry them."""

import dataclasses

import keras
import numpy as np
import pytest

from ns3l_tf import data as data_lib
from ns3l_tf import methods, nearest_neighbours, negatives, training
from ns3l_tf.config import Config, ConfigError
from ns3l_tf.negatives import NegativeSelector

from .methods.method_checks import build, fixed_batch


def test_threshold_selector_marks_classes_below_t():
    targets = np.array([[0.02, 0.5, 0.48], [0.3, 0.3, 0.4]], "float32")
    mask = NegativeSelector("threshold", 3, threshold=0.1)(targets, {})
    np.testing.assert_array_equal(mask, [[1, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("count", [1, 3, 10])
def test_uniform_draws_count_distinct_classes_uniformly(count):
    mask = np.asarray(negatives.uniform_negatives(3000, 10, count, seed=7))
    assert mask.shape == (3000, 10) and set(np.unique(mask)) <= {0.0, 1.0}
    np.testing.assert_array_equal(mask.sum(axis=1), count)  # distinct: exactly P ones
    # Each class is a negative with probability P / K (binomial std ≈ 0.0084 at P = 3).
    np.testing.assert_allclose(mask.mean(axis=0), count / 10, atol=0.04)


def test_uniform_draws_change_from_step_to_step():
    selector = NegativeSelector(
        "uniform", 10, count=3, seed_generator=keras.random.SeedGenerator(0)
    )
    targets = np.zeros((64, 10), "float32")
    assert not np.array_equal(selector(targets, {}), selector(targets, {}))


@pytest.mark.parametrize("count", [1, 3, 9])
def test_oracle_never_includes_the_true_class(count):
    labels = np.arange(2000) % 10
    mask = np.asarray(negatives.oracle_negatives(labels, 10, count, seed=3))
    np.testing.assert_array_equal(mask.sum(axis=1), count)
    np.testing.assert_array_equal(mask[np.arange(2000), labels], 0.0)
    if count == 9:  # every wrong class
        np.testing.assert_array_equal(mask, 1.0 - np.eye(10)[labels])
    else:  # uniform over the 9 wrong classes: each with probability P / 9
        wrong = mask[labels != 0][:, 0]
        assert wrong.mean() == pytest.approx(count / 9, abs=0.05)


def test_negative_error_is_the_percentage_of_rows_hitting_the_true_class():
    mask = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], "float32")
    labels = np.array([0, 2, 2, 0])
    assert float(negatives.negative_error(mask, labels)) == pytest.approx(50.0)


def _brute_force(unlabeled, labeled, labels, num_classes, rule):
    u = unlabeled.reshape(len(unlabeled), -1).astype(np.float64)
    l = labeled.reshape(len(labeled), -1).astype(np.float64)  # noqa: E741
    distances = ((u[:, None, :] - l[None, :, :]) ** 2).sum(-1)
    mask = np.zeros((len(u), num_classes), np.float32)
    for i, row in enumerate(distances):
        if rule in negatives.EXCLUDED_CLASSES:
            nearest_member = np.array([row[labels == k].min() for k in range(num_classes)])
            order = np.argsort(nearest_member, kind="stable")
            if rule == "nn_furthest_class":  # the first of tied classes, as tf.argmax
                mask[i, np.argmax(nearest_member)] = 1.0
            else:
                mask[i] = 1.0
                mask[i, order[: negatives.EXCLUDED_CLASSES[rule]]] = 0.0
            continue
        order = np.argsort(row, kind="stable")
        if rule == "nn_furthest":
            mask[i, labels[order[-1]]] = 1.0
        else:
            mask[i] = 1.0
            mask[i, labels[order[: negatives.EXCLUDED_NEIGHBOURS[rule]]]] = 0.0
    return mask


@pytest.mark.parametrize("rule", methods.ns3l.NEAREST_NEIGHBOUR_SELECTORS)
def test_nearest_neighbour_candidates_match_brute_force(rule, rng):
    unlabeled = rng.integers(0, 256, (300, 6, 6, 1), dtype=np.uint8)
    labeled = rng.integers(0, 256, (40, 6, 6, 1), dtype=np.uint8)
    labels = np.concatenate([np.arange(5), rng.integers(0, 5, 35)])  # every class labeled
    mask = nearest_neighbours.nearest_neighbour_candidates(
        unlabeled, labeled, labels, 5, rule, chunk_size=64
    )
    expected = _brute_force(unlabeled, labeled, labels, 5, rule)
    np.testing.assert_array_equal(mask, expected)
    counts = mask.sum(axis=1)
    if rule in ("nn_exclude", "nn_exclude_all"):
        np.testing.assert_array_equal(counts, 4)
    elif rule in ("nn_furthest", "nn_furthest_class", "nn_exclude4_classes"):
        np.testing.assert_array_equal(counts, 1)  # 5 classes less the 4 nearest: 1
    else:  # 4 neighbours exclude 1 to 4 classes
        assert counts.min() >= 1 and counts.max() <= 4 and counts.min() < counts.max()


def test_image_wise_and_class_wise_readings_differ_on_a_hand_made_line():
    # One unlabeled point at x = 0 and labeled points on a line (x, 0), 6 classes:
    # class 0 at x = 1, 2, 3, 4 (the 4 nearest images), class 1 at 5 and 30 (the furthest
    # image), classes 2-5 at 6, 7, 8, 9. Classes by their nearest member: 0, 1, 2, 3, 4, 5.
    xs = [1, 2, 3, 4, 5, 30, 6, 7, 8, 9]
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 3, 4, 5])
    labeled = np.array([[[[x], [0]]] for x in xs], np.uint8)
    unlabeled = np.zeros((1, 1, 2, 1), np.uint8)

    def candidates(rule):
        mask = nearest_neighbours.nearest_neighbour_candidates(unlabeled, labeled, labels, 6, rule)
        return np.flatnonzero(mask[0]).tolist()

    assert candidates("nn_exclude4") == [1, 2, 3, 4, 5]  # the 4 nearest images: class 0 only
    assert candidates("nn_exclude4_classes") == [4, 5]  # the 4 nearest classes: 0-3
    assert candidates("nn_furthest") == [1]  # the class of the image at x = 30
    assert candidates("nn_furthest_class") == [5]  # its nearest member, at 9, is furthest
    assert candidates("nn_exclude") == candidates("nn_exclude_all") == [1, 2, 3, 4, 5]


def test_nearest_neighbour_of_a_labeled_image_is_itself():
    images = np.arange(4 * 9, dtype=np.uint8).reshape(4, 3, 3, 1) * 7
    labels = np.array([0, 1, 2, 1])
    mask = nearest_neighbours.nearest_neighbour_candidates(images, images, labels, 3, "nn_exclude")
    np.testing.assert_array_equal(mask, 1.0 - np.eye(3)[labels])
    furthest = nearest_neighbours.nearest_neighbour_candidates(
        images, images, labels, 3, "nn_furthest"
    )
    np.testing.assert_array_equal(furthest.argmax(1), [1, 1, 0, 0])  # the opposite end


@pytest.mark.parametrize("selector", ["nn_exclude", "nn_exclude4", "nn_exclude4_classes"])
def test_nn_dash_1_draws_one_negative_never_an_excluded_class(selector, rng):
    # The paper's "Exclude class of NN - 1" and "Exclude 4 nearest classes with NN - 1".
    candidates = np.ones((500, 10), np.float32)
    excluded = rng.integers(0, 10, (500, 1 if selector == "nn_exclude" else 4))
    np.put_along_axis(candidates, excluded, 0.0, axis=1)
    chooser = NegativeSelector(selector, 10, seed_generator=keras.random.SeedGenerator(3))
    masks = [np.asarray(chooser(np.zeros((500, 10)), {"nn_candidates": candidates}))]
    masks.append(np.asarray(chooser(np.zeros((500, 10)), {"nn_candidates": candidates})))
    for mask in masks:
        np.testing.assert_array_equal(mask.sum(axis=1), 1.0)  # exactly one negative
        assert not (mask * (1.0 - candidates)).any()  # never an excluded class
    assert (masks[0] != masks[1]).any()  # drawn afresh at every step
    # Uniform over the candidates: each of a row's 9 candidates about 1/9 of the time.
    draws = np.stack(
        [np.asarray(chooser(np.zeros((500, 10)), {"nn_candidates": candidates})) for _ in range(40)]
    )
    if selector == "nn_exclude":
        shares = draws.mean(axis=0)[candidates == 1.0]
        assert abs(shares.mean() - 1 / 9) < 0.005 and shares.std() < 0.07


def test_nn_all_and_furthest_selectors_take_every_candidate():
    candidates = np.array([[0, 1, 1, 0], [1, 0, 0, 0]], np.float32)
    for selector in ("nn_exclude_all", "nn_exclude4_all", "nn_furthest", "nn_furthest_class"):
        chooser = NegativeSelector(selector, 4)
        np.testing.assert_array_equal(
            chooser(np.zeros((2, 4)), {"nn_candidates": candidates}), candidates
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"ns3l_selector": "random"}, "--ns3l_selector=random: allowed: threshold, uniform"),
        (
            {"ns3l_selector": "uniform", "ns3l_num_negatives": 11},
            "--ns3l_num_negatives=11: must be in [1, 10] for --ns3l_selector=uniform",
        ),
        (
            {"ns3l_selector": "oracle", "ns3l_num_negatives": 10},
            "--ns3l_num_negatives=10: must be in [1, 9] for --ns3l_selector=oracle",
        ),
        (
            {"ns3l_selector": "oracle", "ns3l_num_negatives": 0},
            "--ns3l_num_negatives=0: must be in [1, 9] for --ns3l_selector=oracle",
        ),
    ],
)
def test_model_refuses_bad_selector_settings(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build("ns3l", **kwargs)


def test_selector_refuses_an_unknown_name():
    with pytest.raises(ValueError, match="unknown negatives 'random'; allowed: threshold"):
        NegativeSelector("random", num_classes=10)


@pytest.mark.parametrize("name, key", [("oracle", "labels"), ("nn_exclude", "nn_candidates")])
def test_selector_without_its_extras_is_refused(name, key):
    selector = NegativeSelector(name, 10, seed_generator=keras.random.SeedGenerator(0))
    with pytest.raises(ValueError, match=f"{name} negatives need the unlabeled batch's '{key}'"):
        selector(np.zeros((4, 10), "float32"), {})


def test_train_step_uses_given_negatives_and_reports_their_error(small_data):
    x_l, y_l, x_u = fixed_batch(small_data, n_unlabeled=4)
    masks = np.array(
        [[0, 1, 1, 0, 0, 0, 0, 0, 0, 0], [1] * 9 + [0], [0] * 9 + [1], [1] * 5 + [0] * 5], "f"
    )
    labels = np.array([1, 4, 9, 7], "int32")  # rows 0, 1 and 2 include their true class
    model = build("ns3l", ns3l_selector="nn_exclude_all", learning_rate=0.0)
    assert model.unlabeled_extra_keys == ("labels", "nn_candidates")
    logits = model.backbone(np.concatenate([x_l, x_u]), training=True).numpy()[16:]
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected_loss = np.mean(-np.log(np.clip(1 - (masks * probs).sum(-1), 1e-8, 1)))

    logs = model.train_step(((x_l, y_l), {"images": x_u, "labels": labels, "nn_candidates": masks}))
    assert float(logs["ns3l_negatives"]) == pytest.approx((2 + 9 + 1 + 5) / 4)
    assert float(logs["ns3l_negative_error"]) == pytest.approx(75.0)
    assert float(logs["ns3l_loss"]) == pytest.approx(expected_loss, rel=1e-4)


def test_oracle_train_step_has_zero_negative_error(small_data):
    x_l, y_l, x_u = fixed_batch(small_data, n_unlabeled=32)
    labels = small_data.unlabeled_labels[:32].astype("int32")
    model = build("vat+ns3l", ns3l_selector="oracle", ns3l_num_negatives=3, learning_rate=0.0)
    logs = model.train_step(((x_l, y_l), {"images": x_u, "labels": labels}))
    assert float(logs["ns3l_negatives"]) == pytest.approx(3.0)
    assert float(logs["ns3l_negative_error"]) == 0.0


def test_oracle_without_hidden_labels_is_refused(small_data):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = build("ns3l", ns3l_selector="oracle")
    with pytest.raises(ValueError, match="oracle negatives need the unlabeled batch's 'labels'"):
        model.train_step(((x_l, y_l), x_u))


def test_negative_error_is_only_logged_given_labels(small_data):
    x_l, y_l, x_u = fixed_batch(small_data)
    model = build("ns3l")
    assert "ns3l_negative_error" not in model.train_step(((x_l, y_l), x_u))


def test_mixmatch_refuses_per_image_selectors():
    with pytest.raises(ValueError, match="mixmatch mixes images, so only threshold negatives"):
        build("mixmatch+ns3l", ns3l_selector="uniform")
    assert build("mixmatch+ns3l").unlabeled_extra_keys == ()


def test_pipeline_carries_each_images_extras(small_data):
    # Image i is the constant i mod 256 (translation keeps a constant image constant) and its
    # extra label is the same number: every label must arrive with its own image.
    n = len(small_data.unlabeled_images)
    tags = np.arange(n) % 256
    images = np.broadcast_to(tags[:, None, None, None], (n, 28, 28, 1)).astype(np.uint8)
    data = dataclasses.replace(small_data, unlabeled_images=images)
    extras = {"labels": tags.astype(np.int32), "nn_candidates": np.eye(10, dtype="f")[tags % 10]}
    stream = data_lib.train_dataset(data, 8, 32, seed=1, unlabeled_extras=extras)
    for _, x_u in stream.take(3):
        assert set(x_u) == {"images", "labels", "nn_candidates"}
        assert x_u["images"].shape == (32, 28, 28, 1)
        pixels = x_u["images"].numpy()
        np.testing.assert_array_equal(pixels.max(axis=(1, 2, 3)), pixels.min(axis=(1, 2, 3)))
        arrived = pixels[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(arrived, x_u["labels"].numpy())
        np.testing.assert_array_equal(x_u["nn_candidates"].numpy().argmax(1), arrived % 10)
    # Carrying extras does not change which images come, nor their order (a fresh stream:
    # each new iterator of a stream reshuffles).
    fresh = data_lib.train_dataset(data, 8, 32, seed=1, unlabeled_extras=extras)
    plain = data_lib.train_dataset(data, 8, 32, seed=1)
    for (_, with_extras), (_, without) in zip(fresh.take(3), plain.take(3), strict=True):
        np.testing.assert_array_equal(with_extras["images"].numpy(), without.numpy())


def test_pipeline_refuses_extras_of_the_wrong_length(small_data):
    with pytest.raises(ValueError, match=r"unlabeled_extras\['labels'\] has 3 rows for 4000"):
        data_lib.train_dataset(small_data, 8, 8, unlabeled_extras={"labels": np.zeros(3)})


@pytest.mark.parametrize(
    "changes, message",
    [
        (
            {"ns3l_selector": "nearest"},
            "--ns3l_selector=nearest: allowed: threshold, uniform, oracle",
        ),
        (
            {"ns3l_selector": "uniform", "ns3l_weight": 0.0},
            "--ns3l_selector=uniform: needs the NS3L term",
        ),
        (
            {"ns3l_selector": "oracle", "algorithm": "vat"},
            "--ns3l_selector=oracle: needs the NS3L term",
        ),
        (
            {"ns3l_selector": "uniform", "algorithm": "mixmatch+ns3l"},
            "--ns3l_selector=uniform: mixmatch mixes images, so only threshold negatives apply",
        ),
        (
            {"ns3l_selector": "oracle", "ns3l_num_negatives": 10},
            "--ns3l_num_negatives=10: must be in [1, 9] for --ns3l_selector=oracle with 10 classes",
        ),
        (
            {"ns3l_selector": "nn_exclude", "dataset": "stl10", "num_labeled": 1000},
            "--ns3l_selector=nn_exclude: needs every unlabeled image in memory",
        ),
    ],
)
def test_config_refuses_impossible_negatives(changes, message):
    with pytest.raises(ConfigError) as error:
        Config(**changes)
    assert message in str(error.value)


@pytest.mark.large
def test_nearest_neighbour_run_end_to_end(small_data, tmp_path):
    config = Config(
        algorithm="ns3l",
        ns3l_selector="nn_furthest",
        train_steps=4,
        eval_every=2,
        batch_size=16,
        unlabeled_batch_size=16,
        output_dir=str(tmp_path / "run"),
    )
    results = training.run(config, data=small_data, verbose=0)
    assert results["flags"]["ns3l_selector"] == "nn_furthest"
    assert results["preprocessing_seconds"] > 0
    for record in results["history"]:
        assert record["ns3l_negatives"] == pytest.approx(1.0)  # one negative per image
        assert 0.0 <= record["ns3l_negative_error"] <= 100.0
    assert results["steps"] == 4
