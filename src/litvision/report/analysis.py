"""The test split's numbers from its saved predictions: per-class scores, confusion, calibration (torchmetrics)."""

from __future__ import annotations

import functools
import zipfile
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure
from torchmetrics.classification import (
    BinaryCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


@dataclass
class Predictions:
    """What ``test_predictions.npz`` holds (see :mod:`litvision.report.callback`).

    Either the whole softmax (``probabilities``, few classes) or, per image, the ``k`` most likely
    classes with their probabilities and the probability of the true class (many classes). Everything
    below reads the per-image numbers (predicted class, its probability, the true class's), so no
    N x C array is made from a compact file, and none besides the saved one from a full file.
    """

    probabilities: np.ndarray | None  # (N, C) softmax, or None when the top-k is saved instead
    labels: np.ndarray  # (N,)
    indices: np.ndarray  # (N,) positions in the test split
    class_names: list[str]
    top_losses: np.ndarray | None = None  # the highest-loss examples, highest first
    top_indices: np.ndarray | None = None
    top_images: np.ndarray | None = None  # (K, H, W, C) uint8, as the net saw them (resized), denormalized
    top_classes: np.ndarray | None = None  # (N, k) the k most likely classes, highest first
    top_probabilities: np.ndarray | None = None  # (N, k) their probabilities (float16)
    true_probability: np.ndarray | None = None  # (N,) the probability of the true class

    @classmethod
    def load(cls, path) -> Predictions:
        """The saved predictions, checked as untrusted input: a file that does not hold what the callback
        writes is a ``ValueError`` naming the array, never an index error deep in the page."""
        _refuse_bombs(path)
        with np.load(path, allow_pickle=False) as saved:
            fields = {key: saved[key] for key in _SAVED if key in saved.files}
        missing = [key for key in ("labels", "indices", "class_names") if key not in fields]
        if "probabilities" not in fields:
            missing += [key for key in ("top_classes", "top_probabilities", "true_probability") if key not in fields]
        if missing:
            raise ValueError(f"no {', '.join(missing)} saved")
        predictions = cls(
            probabilities=fields.get("probabilities"),
            labels=fields["labels"],
            indices=fields["indices"],
            class_names=[str(name) for name in fields["class_names"].reshape(-1)],
            **{key: fields.get(key) for key in _SAVED[4:]},
        )
        predictions.check()
        return predictions

    def check(self) -> None:
        """Shapes, types and ranges that the analysis relies on; ValueError on the first that is wrong."""
        count, classes = (len(self.labels) if self.labels.ndim == 1 else -1), len(self.class_names)
        _expect(classes >= 1, "class_names is empty")
        _expect(count >= 1, f"labels has shape {self.labels.shape}, not (N,) with N >= 1")
        _integers(self.labels, "labels", (count,), classes)
        _integers(self.indices, "indices", (count,), None)
        if self.probabilities is not None:
            _floats(self.probabilities, "probabilities", (count, classes))
        else:
            k = self.top_classes.shape[1] if self.top_classes.ndim == 2 else 0
            _expect(1 <= k <= classes, f"top_classes has shape {self.top_classes.shape}, not (N, 1...{classes})")
            _integers(self.top_classes, "top_classes", (count, k), classes)
            _floats(self.top_probabilities, "top_probabilities", (count, k))
            _floats(self.true_probability, "true_probability", (count,))
        if self.top_indices is not None:
            shown = len(self.top_indices)
            _integers(self.top_indices, "top_indices", (shown,), None)
            _expect(np.isin(self.top_indices, self.indices).all(), "top_indices are not all in indices")
            _floats(self.top_losses, "top_losses", (shown,), probability=False)
            images = self.top_images
            _expect(
                images is not None and images.dtype == np.uint8 and images.ndim == 4 and len(images) == shown,
                "top_images is not one uint8 (H, W, C) picture per top index",
            )
            _expect(images.shape[3] in (1, 3), f"top_images has {images.shape[3]} channels, not 1 or 3")

    @functools.cached_property
    def predicted(self) -> np.ndarray:
        """(N,) the most likely class of each image (the first of equal ones, like argmax)."""
        if self.probabilities is not None:
            return self.probabilities.argmax(axis=1)
        return self.top_classes[:, 0].astype(np.int64)

    @functools.cached_property
    def confidence(self) -> np.ndarray:
        """(N,) float32, the probability of the predicted class."""
        if self.probabilities is not None:
            return self.probabilities.max(axis=1).astype(np.float32)
        return self.top_probabilities[:, 0].astype(np.float32)

    @functools.cached_property
    def probability_of_true_class(self) -> np.ndarray:
        """(N,) float32."""
        if self.probabilities is not None:
            return self.probabilities[np.arange(len(self.labels)), self.labels].astype(np.float32)
        return self.true_probability.astype(np.float32)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted classes, labels) as int64 tensors: what the torchmetrics scores take."""
        predicted, labels = (values.astype(np.int64, copy=False) for values in (self.predicted, self.labels))
        return torch.from_numpy(predicted), torch.from_numpy(labels)


_SAVED = (
    "probabilities",
    "labels",
    "indices",
    "class_names",
    "top_losses",
    "top_indices",
    "top_images",
    "top_classes",
    "top_probabilities",
    "true_probability",
)


# A member that inflates past this size and this ratio is a zip bomb, not saved predictions: float16/32
# probabilities compress a few times at most (only a long run of equal bytes compresses 1000-fold).
_BOMB_BYTES, _BOMB_RATIO = 64 * 2**20, 200


def _refuse_bombs(path) -> None:
    """ValueError for an npz member that would inflate far past its compressed size (checked before reading)."""
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.file_size > _BOMB_BYTES and member.file_size > _BOMB_RATIO * max(member.compress_size, 1):
                raise ValueError(
                    f"{member.filename} would inflate from {member.compress_size} to {member.file_size} bytes"
                )


def _expect(condition, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _integers(values: np.ndarray, name: str, shape: tuple, limit: int | None) -> None:
    _expect(
        values.dtype.kind in "iu" and values.shape == shape, f"{name} is {values.dtype} {values.shape}, not int {shape}"
    )
    if values.size:
        _expect(values.min() >= 0, f"{name} holds negative values")
        _expect(limit is None or values.max() < limit, f"{name} holds values outside 0..{(limit or 0) - 1}")


def _floats(values: np.ndarray | None, name: str, shape: tuple, probability: bool = True) -> None:
    _expect(values is not None and values.dtype.kind == "f", f"{name} is not saved as floats")
    _expect(values.shape == shape, f"{name} has shape {values.shape}, not {shape}")
    if probability and values.size:
        _expect(
            np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1, f"{name} holds values outside 0..1"
        )


def per_class_scores(predictions: Predictions) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per class (torchmetrics, average=None, on the predicted classes) and each
    class's support."""
    predicted, labels = predictions.tensors()
    num_classes = len(predictions.class_names)
    scores = {
        name: metric(num_classes=num_classes, average=None)(predicted, labels).numpy()
        for name, metric in (
            ("precision", MulticlassPrecision),
            ("recall", MulticlassRecall),
            ("f1", MulticlassF1Score),
        )
    }
    scores["support"] = np.bincount(predictions.labels, minlength=num_classes)
    return scores


def confusion(predictions: Predictions) -> np.ndarray:
    predicted, labels = predictions.tensors()
    return MulticlassConfusionMatrix(num_classes=len(predictions.class_names))(predicted, labels).numpy()


def expected_calibration_error(predictions: Predictions, bins: int) -> float:
    """torchmetrics' ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by count.

    The top-label ECE needs only each image's top-1 probability and whether it was right, so it is
    torchmetrics' binary calibration error of those two (the same number ``MulticlassCalibrationError``
    gives on the whole softmax), in O(N) memory.
    """
    confidence = torch.from_numpy(predictions.confidence)
    correct = torch.from_numpy((predictions.predicted == predictions.labels).astype(np.int64))
    return float(BinaryCalibrationError(n_bins=bins, norm="l1")(confidence, correct))


def reliability_bins(predictions: Predictions, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean confidence, accuracy, count) per equal-width bin of the top-1 confidence (NaN where empty)."""
    confidence = predictions.confidence
    correct = predictions.predicted == predictions.labels
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
    order = np.argsort(predictions.indices, kind="stable")
    rows = order[np.searchsorted(predictions.indices, predictions.top_indices, sorter=order)]
    captions, mistakes = [], []
    for index, row in zip(predictions.top_indices.tolist(), rows.tolist()):
        label, predicted = int(predictions.labels[row]), int(predictions.predicted[row])
        captions.append(
            f"#{index} true {names[label]}\npred {names[predicted]} {predictions.confidence[row]:.2f}"
            f"\np(true) {predictions.probability_of_true_class[row]:.2f}"
        )
        mistakes.append(predicted != label)
    return captions, mistakes
