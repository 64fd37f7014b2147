"""The evaluation report against values computed by hand on tiny cases."""

import json

import numpy as np
import pytest

from ns3l_tf import evaluation_report

# Four images, K = 3; confidences 0.7, 0.62, 0.58, 0.52 fall in bins 10, 9, 8, 7 of 15.
PROBABILITIES = np.array(
    [
        [0.70, 0.20, 0.10],  # true 0, predicted 0
        [0.10, 0.62, 0.28],  # true 2, predicted 1
        [0.20, 0.22, 0.58],  # true 2, predicted 2
        [0.52, 0.38, 0.10],  # true 1, predicted 0
    ]
)
LABELS = np.array([0, 2, 2, 1])


def test_every_figure_of_a_hand_computed_case():
    r = evaluation_report.report(PROBABILITIES, LABELS)
    assert r["images"] == 4 and r["error"] == pytest.approx(50.0)
    assert r["confusion_matrix"] == [[1, 0, 0], [1, 0, 0], [0, 1, 1]]
    # Recall per class 1, 0, 1/2; precision 1/2, 0, 1; F1 2/3, 0, 2/3.
    assert r["per_class_accuracy"] == pytest.approx([100.0, 0.0, 50.0])
    assert r["balanced_accuracy"] == pytest.approx(50.0)
    assert r["macro_recall"] == pytest.approx(50.0)
    assert r["macro_precision"] == pytest.approx(50.0)
    assert r["macro_f1"] == pytest.approx(100.0 * (2 / 3 + 0 + 2 / 3) / 3)
    nll = -(np.log(0.7) + np.log(0.28) + np.log(0.58) + np.log(0.38)) / 4
    assert r["nll"] == pytest.approx(nll) and r["nll"] == pytest.approx(0.785488, abs=1e-6)
    # Brier: 0.14 + 0.9128 + 0.2648 + 0.6648 = 1.9824 over 4 images.
    assert r["brier"] == pytest.approx(1.9824 / 4)
    # One image per bin: ECE = (|1 − .7| + |0 − .62| + |1 − .58| + |0 − .52|) / 4.
    assert r["ece"] == pytest.approx(1.86 / 4) and r["ece_bins"] == 15
    filled = [(i, b["count"], b["accuracy"]) for i, b in enumerate(r["reliability"]) if b["count"]]
    assert filled == [(7, 1, 0.0), (8, 1, 1.0), (9, 1, 0.0), (10, 1, 1.0)]
    assert r["reliability"][10]["confidence"] == pytest.approx(0.7)
    assert r["reliability"][10]["low"] == pytest.approx(10 / 15)
    assert "top5_error" not in r  # K = 3
    json.dumps(r, allow_nan=False)  # strict JSON: no NaN, every value plain


def test_top5_error_and_a_perfectly_calibrated_confident_model():
    probabilities = np.full((2, 7), 0.01)
    probabilities[0, [0, 1, 2, 3, 4, 5]] = [0.5, 0.2, 0.1, 0.08, 0.06, 0.05]  # label 6: 7th
    probabilities[1, 3] = 0.94  # label 3: first
    r = evaluation_report.report(probabilities / probabilities.sum(1, keepdims=True), [6, 3])
    assert r["top5_error"] == pytest.approx(50.0)
    one_hot = np.eye(4)[[0, 1, 2, 3]]
    perfect = evaluation_report.report(one_hot, [0, 1, 2, 3])
    assert (perfect["error"], perfect["ece"], perfect["brier"]) == (0.0, 0.0, 0.0)
    assert perfect["nll"] == pytest.approx(0.0, abs=1e-12)


def test_a_class_missing_from_the_split_counts_in_no_average():
    r = evaluation_report.report(np.eye(3)[[0, 0, 1]], [0, 0, 1])
    assert r["per_class_accuracy"] == [100.0, 100.0, None]
    assert r["balanced_accuracy"] == 100.0 and r["macro_f1"] == 100.0


def test_pictures_are_written_as_png(tmp_path):
    pytest.importorskip("matplotlib")
    r = evaluation_report.report(PROBABILITIES, LABELS)
    paths = evaluation_report.write_pictures(r, str(tmp_path / "test_last_"), "test, last")
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "test_last_confusion_matrix.png",
        "test_last_reliability_diagram.png",
    ]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
