"""The test split's numbers from its saved predictions: per-class scores, confusion, calibration (torchmetrics)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import (
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


@dataclass
class Predictions:
    """What ``test_predictions.npz`` holds (see :mod:`litvision.callbacks.report`)."""

    probabilities: np.ndarray  # (N, C) softmax
    labels: np.ndarray  # (N,)
    indices: np.ndarray  # (N,) positions in the test split
    class_names: list[str]
    top_losses: np.ndarray | None = None  # the highest-loss examples, highest first
    top_indices: np.ndarray | None = None
    top_images: np.ndarray | None = None  # (K, H, W, C) uint8, as the net saw them (resized), denormalized

    @classmethod
    def load(cls, path) -> Predictions:
        with np.load(path, allow_pickle=False) as saved:
            fields = {key: saved[key] for key in saved.files}
        return cls(
            probabilities=fields["probabilities"],
            labels=fields["labels"],
            indices=fields["indices"],
            class_names=[str(name) for name in fields["class_names"]],
            top_losses=fields.get("top_losses"),
            top_indices=fields.get("top_indices"),
            top_images=fields.get("top_images"),
        )

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.probabilities).float(), torch.from_numpy(self.labels).long()


def per_class_scores(predictions: Predictions) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class (torchmetrics, average=None) and each class's support."""
    probabilities, labels = predictions.tensors()
    num_classes = probabilities.shape[1]
    scores = {
        name: metric(num_classes=num_classes, average=None)(probabilities, labels).numpy()
        for name, metric in (
            ("precision", MulticlassPrecision),
            ("recall", MulticlassRecall),
            ("f1", MulticlassF1Score),
        )
    }
    scores["support"] = np.bincount(predictions.labels, minlength=num_classes)
    return scores


def confusion(predictions: Predictions) -> np.ndarray:
    probabilities, labels = predictions.tensors()
    return MulticlassConfusionMatrix(num_classes=probabilities.shape[1])(probabilities, labels).numpy()


def expected_calibration_error(predictions: Predictions, bins: int) -> float:
    """torchmetrics' ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by count."""
    probabilities, labels = predictions.tensors()
    metric = MulticlassCalibrationError(num_classes=probabilities.shape[1], n_bins=bins, norm="l1")
    return float(metric(probabilities, labels))


def reliability_bins(predictions: Predictions, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean confidence, accuracy, count) per equal-width bin of the top-1 confidence (NaN where empty)."""
    confidence = predictions.probabilities.max(axis=1)
    correct = predictions.probabilities.argmax(axis=1) == predictions.labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)  # (lo, hi] like torchmetrics
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, minlength=bins) / counts
        accuracy = np.bincount(which, correct.astype(float), minlength=bins) / counts
    return mean_confidence, accuracy, counts


def reliability_figure(predictions: Predictions, bins: int, ece: float) -> Figure:
    """Accuracy against confidence per bin (bars) beside the diagonal of perfect calibration.

    The bars' widths follow the bins' shares of the images, so a nearly empty bin does not look like
    evidence. Fixed margins rather than tight_layout: the page is drawn at the end of every run.
    """
    mean_confidence, accuracy, counts = reliability_bins(predictions, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / bins
    filled = counts > 0
    fig = Figure(figsize=(6, 4.5), dpi=100)
    ax = fig.subplots()
    shares = counts[filled] / counts.sum()
    widths = width * np.clip(0.25 + 0.75 * shares / shares.max(), 0.25, 0.95)
    ax.bar(centres[filled], accuracy[filled], width=widths, color="C0", label="accuracy (width: share of images)")
    gap = mean_confidence[filled] - accuracy[filled]
    ax.bar(
        centres[filled], gap, bottom=accuracy[filled], width=widths, color="C3", alpha=0.35, label="gap to confidence"
    )
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-1 probability)", ylabel="accuracy")
    ax.set_title(f"reliability diagram, ECE {ece:.4f}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")  # the diagonal leaves that corner empty
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)
    return fig


def highest_loss_captions(predictions: Predictions) -> tuple[list[str], list[bool]]:
    """For the saved highest-loss images: 'true / predicted (probability)' captions and which are mistakes."""
    names = predictions.class_names
    position = {int(index): row for row, index in enumerate(predictions.indices)}
    captions, mistakes = [], []
    for index in predictions.top_indices:
        row = position[int(index)]
        probabilities, label = predictions.probabilities[row], int(predictions.labels[row])
        predicted = int(probabilities.argmax())
        captions.append(
            f"#{int(index)} true {names[label]}\npred {names[predicted]} {probabilities[predicted]:.2f}"
            f"\np(true) {probabilities[label]:.2f}"
        )
        mistakes.append(predicted != label)
    return captions, mistakes
