"""What a practitioner looks at after training: accuracy per class, confusions, calibration.

`report(probabilities, labels)` computes, from a model's `(N, K)` probabilities on a labeled
split, the error and (K > 5) top-5 error, balanced accuracy, per-class accuracy, macro
precision, recall and F1, the negative log-likelihood, the Brier score, the expected
calibration error over `ECE_BINS` equal-width confidence bins, the confusion matrix and the
reliability diagram's bins. `write_pictures` draws the confusion matrix and the reliability
diagram (matplotlib). Pure NumPy otherwise: the same on every backend.
"""

import numpy as np

from ns3l_tf import io_utils

# Equal-width bins of the top-class confidence for the ECE and the reliability diagram, as in
# Guo et al. (2017), "On Calibration of Modern Neural Networks".
ECE_BINS = 15
# Probabilities are clipped here before the log of the NLL (a probability of exactly 0).
LOG_FLOOR = 1e-12


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """`(K, K)` counts: row = true class, column = predicted class."""
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def calibration_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS):
    """Per bin `(lo, hi]` of the top-class confidence: count, accuracy and mean confidence
    (None for an empty bin); and the ECE, `Σ_b (n_b / N) · |accuracy_b − confidence_b|`."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        accuracy = float(correct[inside].mean()) if count else None
        mean_confidence = float(confidence[inside].mean()) if count else None
        if count:
            ece += count / len(labels) * abs(accuracy - mean_confidence)
        rows.append(
            {"low": b / bins, "high": (b + 1) / bins, "count": count, "accuracy": accuracy,
             "confidence": mean_confidence}
        )  # fmt: skip
    return rows, float(ece)


def report(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Every figure of the module docstring for `(N, K)` `probabilities` (rows sum to 1) and
    `(N,)` integer `labels`. Errors and accuracies are percentages; NLL in nats, Brier score
    summed over classes and averaged over images, ECE as a fraction (0–1)."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels).astype(np.int64)
    n, num_classes = probabilities.shape
    predicted = probabilities.argmax(axis=1)
    counts = confusion_matrix(predicted, labels, num_classes)
    support = counts.sum(axis=1)
    predicted_as = counts.sum(axis=0)
    hits = np.diag(counts)
    recall = np.divide(hits, support, out=np.zeros(num_classes), where=support > 0)
    precision = np.divide(hits, predicted_as, out=np.zeros(num_classes), where=predicted_as > 0)
    f1_denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, f1_denominator, out=np.zeros(num_classes), where=f1_denominator > 0
    )
    present = support > 0
    one_hot = np.eye(num_classes)[labels]
    bins, ece = calibration_bins(probabilities, labels)
    result = {
        "images": int(n),
        "error": 100.0 * float((predicted != labels).mean()),
        "balanced_accuracy": 100.0 * float(recall[present].mean()),
        "per_class_accuracy": [100.0 * float(r) if s else None for r, s in zip(recall, support)],
        "macro_precision": 100.0 * float(precision[present].mean()),
        "macro_recall": 100.0 * float(recall[present].mean()),
        "macro_f1": 100.0 * float(f1[present].mean()),
        "nll": float(-np.log(np.maximum(probabilities[np.arange(n), labels], LOG_FLOOR)).mean()),
        "brier": float(((probabilities - one_hot) ** 2).sum(axis=1).mean()),
        "ece": ece,
        "ece_bins": ECE_BINS,
        "confusion_matrix": counts.tolist(),
        "reliability": bins,
    }
    if num_classes > 5:
        top5 = np.argsort(-probabilities, axis=1)[:, :5]
        result["top5_error"] = 100.0 * float((top5 != labels[:, None]).all(axis=1).mean())
    return result


def write_pictures(result: dict, prefix: str, title: str) -> list[str] | None:
    """Draws `<prefix>confusion_matrix.png` (rows normalised to the true class's images, each
    cell's count written where K ≤ 20) and `<prefix>reliability_diagram.png` (accuracy against
    mean confidence per bin, the diagonal being perfect calibration, and the bins' counts);
    returns their paths, or None where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(result["confusion_matrix"])
    num_classes = len(counts)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(1.0 + 0.5 * num_classes, 0.8 + 0.5 * num_classes))
    image = axis.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    if num_classes <= 20:
        axis.set_xticks(range(num_classes))
        axis.set_yticks(range(num_classes))
        for true in range(num_classes):
            for guess in range(num_classes):
                color = "white" if rates[true, guess] > 0.5 else "black"
                axis.text(guess, true, str(counts[true, guess]), ha="center", va="center",
                          fontsize=7, color=color)  # fmt: skip
    axis.set(xlabel="predicted class", ylabel="true class", title=f"{title}: error "
             f"{result['error']:.2f}%")  # fmt: skip
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    paths = [f"{prefix}confusion_matrix.png"]
    _save(figure, paths[0])

    bins = [b for b in result["reliability"] if b["count"]]
    width = 1.0 / result["ece_bins"]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    top.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
            edgecolor="black", label="accuracy")  # fmt: skip
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="red",
             markersize=3, label="mean confidence")  # fmt: skip
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
            title=f"{title}: ECE {result['ece']:.4f} ({result['ece_bins']} bins)")  # fmt: skip
    top.legend(loc="upper left", fontsize=8)
    bottom.bar([b["low"] for b in bins], [b["count"] for b in bins], width=width, align="edge",
               edgecolor="black", color="gray")  # fmt: skip
    bottom.set(xlabel="confidence (top-class probability)", ylabel="images")
    paths.append(f"{prefix}reliability_diagram.png")
    _save(figure, paths[1])
    return paths


def _save(figure, path: str) -> None:
    """Writes `figure` as a PNG at `path` (atomically) and closes it."""
    import matplotlib.pyplot as plt

    save = lambda tmp: figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")  # noqa: E731
    io_utils.atomic_write(path, save, suffix=".png")
    plt.close(figure)
