"""The Table 5 benchmark: its rows are valid runs, and its report says what the runs said."""

import os
import sys

import numpy as np
import pytest

from ns3l_tf import cli
from ns3l_tf.config import config_from_flags

from .conftest import REPO_ROOT

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))
import table5  # noqa: E402

EXPECTED_NEGATIVES = {
    "supervised": ("threshold", 0.0),
    "uniform1": ("uniform", 1.0),
    "uniform3": ("uniform", 1.0),
    "nn_exclude": ("nn_exclude", 1.0),
    "nn_exclude4": ("nn_exclude4", 1.0),
    "nn_furthest": ("nn_furthest", 1.0),
    "threshold_003": ("threshold", 1.0),
    "threshold_005": ("threshold", 1.0),
    "oracle1": ("oracle", 1.0),
    "oracle3": ("oracle", 1.0),
}


@pytest.mark.parametrize("row", list(table5.ROWS))
def test_every_table5_row_is_a_valid_run_of_the_papers_setting(row, saved_flags, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    saved_flags.unparse_flags()
    cli.parse_flags(["prog", *table5.row_flags(row), "--seed=2"])
    config = config_from_flags()
    ns3l = config.methods["ns3l"]
    assert (ns3l.selector, ns3l.weight) == EXPECTED_NEGATIVES[row]
    assert (config.dataset, config.model, config.num_labeled) == (
        "fashion_mnist",
        "small_cnn",
        2000,
    )
    assert config.validation_size == 0  # 58,000 unlabeled images, as in the paper
    assert ns3l.num_negatives == (3 if row.endswith("3") and "threshold" not in row else 1)
    assert config.threshold == {"threshold_005": 0.05}.get(row, 0.03)


def _fake_results(test_error, negatives=None, negative_error=None, preprocessing=0.0):
    record = {"step": 1200, "test_error": test_error}
    if negatives is not None:
        record.update(ns3l_negatives=negatives, ns3l_negative_error=negative_error)
    return {
        "test_error": test_error,
        "seconds": 100.0,
        "preprocessing_seconds": preprocessing,
        "history": [record],
    }


def test_report_gives_mean_and_std_beside_the_paper(tmp_path):
    runs = {
        "supervised": [_fake_results(17.0), _fake_results(18.0)],
        "nn_furthest": [_fake_results(16.0, 1.0, 5.0, 2.5), _fake_results(16.5, 1.0, 4.0, 2.5)],
    }
    report = {
        "seeds": [1, 2],
        "train_steps": 1200,
        "lr_decay_step": 800,
        "machine": "x86_64, 2 cores",
        "num_runs": 4,
        "training_seconds_all_runs": 400,
        "rows": {
            row: {
                "label": table5.ROWS[row][0],
                "paper": table5.ROWS[row][1],
                **table5.summarize(r, runs["supervised"] if row != "supervised" else None),
            }
            for row, r in runs.items()
        },
    }
    assert report["rows"]["supervised"]["test_error"] == pytest.approx((17.5, np.sqrt(0.5)))
    assert "ns3l_negatives" not in report["rows"]["supervised"]
    assert report["rows"]["nn_furthest"]["ns3l_negative_error"] == pytest.approx(
        (4.5, np.sqrt(0.5))
    )
    table5.write_report(report, str(tmp_path / "table5"))
    table = (tmp_path / "table5.md").read_text().splitlines()
    # Paired by seed: 16.0 - 17.0 = -1.0 and 16.5 - 18.0 = -1.5.
    assert report["rows"]["nn_furthest"]["paired_difference_to_supervised"] == pytest.approx(
        (-1.25, np.sqrt(0.125))
    )
    assert "| Supervised | 17.50 ± 0.71 | 17.25 ± 0.22 | – | – | – | 100 |" in table
    assert (
        "| Furthest class with NN | 16.25 ± 0.35 | 16.76 ± 0.15 | -1.25 ± 0.35 | 1.00 ± 0.00 | "
        "4.50 ± 0.71 | 100 (+2.5 NN masks) |"
    ) in table
    assert "all 4 runs took 7 min of training" in table[2]
    assert (tmp_path / "table5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(tmp_path)) == ["table5.json", "table5.md", "table5.png"]
