"""What the run report needs from a training run, saved in the run folder so the page can be rebuilt later.

``RunReport`` keeps what only the live run knows and writes it beside ``metrics.json``:

- ``test_predictions.npz``: the test split's predictions, labels and indices (collected from the
  logits ``test_step`` returns, like the confusion matrix), and the ``num_highest_loss`` test images
  with the highest loss as uint8 pictures. Up to ``top_k`` classes the whole softmax is kept
  (``probabilities``, N x C float32); beyond, each image keeps only its ``top_k`` most likely classes
  and their probabilities (float16) and the probability of its true class, so the file and the
  memory behind it grow with N x top_k, not N x C (1,000 classes and a million test images are tens
  of MB, not 4 GB). Saving the predictions rather than rerunning the checkpoint lets
  ``scripts/report.py`` rebuild the page in a second, without the data, the model or a GPU.
- ``report_data.json``: the learning curves (the :class:`LearningCurves` callback's record, epochs
  counted from 1), the checkpoint's monitored metric, the model summary (parameters, MACs), timing and
  the data audit.

The provenance (``provenance.json``, written by the training task) goes to TensorBoard's text tab at
fit start. :meth:`RunReport.on_run_end` (called by the training task once ``metrics.json`` exists) saves
the files and writes ``report.html`` with :mod:`litvision.report`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from lightning import Callback, LightningModule, Trainer

from litvision.callbacks.dashboard import class_names, displayable, output_dir, step_logits, tensorboard_writer
from litvision.callbacks.figures import LearningCurves
from litvision.models.profile import format_summary, profile, totals
from litvision.report.run_page import DATA_FILE, PREDICTIONS_FILE, REPORT_FILE, write_run_page
from litvision.support.atomic import atomic_open, write_json
from litvision.support.provenance import PROVENANCE_FILE, as_text
from litvision.support.records import read_json

log = logging.getLogger(__name__)


class RunReport(Callback):
    """Collects the test predictions, curves, model summary, timing and audit a run's ``report.html`` shows."""

    def on_run_end(self, trainer: Trainer) -> Path | None:
        """Called by the training task once the run's metrics.json is written (the run-end hook the task calls
        on every callback that has one): saves the report's data and writes report.html."""
        return _write_report(self, trainer)

    def __init__(
        self, dirpath: str | None = None, num_highest_loss: int = 16, calibration_bins: int = 15, top_k: int = 10
    ):
        if num_highest_loss < 0 or calibration_bins < 1 or top_k < 1:
            raise ValueError("num_highest_loss must be >= 0, calibration_bins and top_k >= 1")
        self.dirpath, self.num_highest_loss, self.calibration_bins = dirpath, num_highest_loss, calibration_bins
        self.top_k = top_k
        self.summary: dict = {}
        self.timing: dict = {}
        self._fit_started = 0.0
        self._first_epoch = 0
        self._reset_test()

    # -- fit -----------------------------------------------------------------------------------
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        # Before the strategy moves the model to its device: the dry forward runs on the CPU.
        if stage == "fit" and trainer.is_global_zero and not self.summary:
            self.summary = _model_summary(pl_module, trainer.datamodule)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_started, self._first_epoch = time.perf_counter(), trainer.current_epoch
        writer = tensorboard_writer(trainer)
        record = read_json(output_dir(self.dirpath, trainer) / PROVENANCE_FILE)
        if writer is not None and record:
            writer.add_text("provenance", as_text(record), global_step=0)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        epochs = trainer.current_epoch - self._first_epoch
        fit_s = time.perf_counter() - self._fit_started
        metrics = trainer.callback_metrics
        self.timing = {
            "fit_s": fit_s,
            "epochs": epochs,
            "s_per_epoch": fit_s / epochs if epochs else None,
            "last_epoch_s": _number(metrics.get("time/epoch_s")),
            "images_per_s": _number(metrics.get("time/images_per_s")),
        }

    # -- test ----------------------------------------------------------------------------------
    def _reset_test(self) -> None:
        self._parts: list[dict[str, torch.Tensor]] = []  # each batch's compact predictions, on the CPU
        self._seen = self._num_classes = 0
        self._top: tuple[torch.Tensor, torch.Tensor, np.ndarray] | None = None  # (losses, indices, images)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._reset_test()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        labels = batch[1]
        logits = step_logits(outputs, labels)
        if logits is None or dataloader_idx != 0:
            return
        probabilities = logits.float().softmax(dim=1)
        # Unshuffled test batches: this rank's k-th example is example rank + k * world_size of the split.
        count = len(labels)
        indices = trainer.global_rank + trainer.world_size * torch.arange(self._seen, self._seen + count)
        self._seen, self._num_classes = self._seen + count, probabilities.shape[1]
        self._parts.append({**compact(probabilities, labels, self.top_k), "labels": labels.cpu()})
        if self.num_highest_loss:
            self._keep_highest_loss(trainer, batch[0], probabilities, labels, indices)

    def _keep_highest_loss(self, trainer, images, probabilities, labels, indices) -> None:
        losses = -probabilities.gather(1, labels[:, None]).squeeze(1).clamp_min(1e-12).log().cpu()
        take = losses.topk(min(self.num_highest_loss, len(losses))).indices
        pictures = _as_uint8(displayable(trainer, images[take.to(images.device)]))
        candidates = (losses[take], indices[take], pictures)
        if self._top is not None:
            candidates = _merge(self._top, candidates)
        self._top = _best(candidates, self.num_highest_loss)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._parts:
            return
        arrays = {key: torch.cat([part[key] for part in self._parts]).numpy() for key in self._parts[0]}
        self._parts = []
        arrays["indices"] = trainer.global_rank + trainer.world_size * np.arange(len(arrays["labels"]))
        parts = [(arrays, self._top)]
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            gathered = [None] * trainer.world_size
            dist.all_gather_object(gathered, parts[0])
            parts = gathered
        if not trainer.is_global_zero:
            return
        payload = {key: np.concatenate([p[0][key] for p in parts]) for key in arrays}
        if len(parts) > 1:
            # A distributed sampler pads the last shard with repeats: each index once, in split order.
            _, first = np.unique(payload["indices"], return_index=True)
            payload = {key: value[first] for key, value in payload.items()}
        tops = [p[1] for p in parts if p[1] is not None]
        if tops:
            top = tops[0]
            for other in tops[1:]:
                top = _best(_merge(top, other), self.num_highest_loss)
            payload.update(top_losses=top[0].numpy(), top_indices=top[1].numpy(), top_images=top[2])
        payload["class_names"] = np.array(class_names(trainer, self._num_classes))
        with atomic_open(output_dir(self.dirpath, trainer) / PREDICTIONS_FILE, "wb") as stream:
            np.savez_compressed(stream, **payload)

    # -- the files -----------------------------------------------------------------------------
    def save(self, trainer: Trainer) -> Path:
        """``report_data.json`` in the run folder: what the page shows besides the predictions and the JSON records."""
        run_dir = output_dir(self.dirpath, trainer)
        curves = next((cb.curves() for cb in trainer.callbacks if isinstance(cb, LearningCurves)), None)
        checkpoint = trainer.checkpoint_callback
        datamodule = trainer.datamodule
        audit = getattr(datamodule, "audit_result", None)
        data = {
            # Lightning counts epochs from 0; people (and the page) from 1.
            "curves": {key: [[e + 1 for e in epochs], values] for key, (epochs, values) in (curves or {}).items()},
            "monitor": getattr(checkpoint, "monitor", None),
            "mode": getattr(checkpoint, "mode", None),
            "best_checkpoint": getattr(checkpoint, "best_model_path", "") or "",
            "model": self.summary,
            "timing": self.timing,
            "audit": audit.as_dict() if audit is not None else None,
            "class_names": list(getattr(datamodule, "class_names", []) or []),
            "calibration_bins": self.calibration_bins,
        }
        write_json(run_dir / DATA_FILE, data)
        return run_dir


def _write_report(reporter: RunReport, trainer: Trainer) -> Path | None:
    if not trainer.is_global_zero:
        return None
    if trainer.fast_dev_run:  # debug=fdr checks the wiring with one batch: no numbers worth a page
        log.info("no %s for a fast_dev_run", REPORT_FILE)
        return None
    run_dir = reporter.save(trainer)
    try:
        return write_run_page(run_dir)
    except Exception as err:  # noqa: BLE001 - the run's results are saved; the page can be rebuilt
        log.warning(
            "could not write %s (%s: %s); rebuild it with scripts/report.py", REPORT_FILE, type(err).__name__, err
        )
        return None


def compact(probabilities: torch.Tensor, labels: torch.Tensor, top_k: int) -> dict[str, torch.Tensor]:
    """What ``test_predictions.npz`` keeps of a batch's softmax, on the CPU: all of it (float32) up to
    ``top_k`` classes, else the ``top_k`` most likely classes, highest first, with their probabilities
    (float16: the page shows two digits) and the probability of the true class (float32: its log is the
    loss). Taken on the batch's device: with many classes no N x C copy ever reaches the host."""
    num_classes = probabilities.shape[1]
    if num_classes <= top_k:
        return {"probabilities": probabilities.cpu()}
    values, classes = probabilities.topk(top_k, dim=1)
    return {
        "top_classes": classes.to(torch.int16 if num_classes <= torch.iinfo(torch.int16).max else torch.int32).cpu(),
        "top_probabilities": values.half().cpu(),
        "true_probability": probabilities.gather(1, labels[:, None]).squeeze(1).cpu(),
    }


def _model_summary(pl_module: LightningModule, datamodule) -> dict:
    net = getattr(pl_module, "net", pl_module)
    shape = (getattr(datamodule, "in_channels", None), getattr(datamodule, "image_size", None))
    if None in shape:
        return {}
    input_shape = (int(shape[0]), int(shape[1]), int(shape[1]))
    try:
        calls = profile(net, input_shape)
    except Exception as err:  # noqa: BLE001 - a net that cannot take one zero image still trains
        log.info("no model summary for the report (%s)", type(err).__name__)
        return {}
    total = totals(net, calls)
    title = f'Model: "{type(net).__name__}", input {"x".join(map(str, input_shape))}'
    return {
        "name": type(net).__name__,
        "input_shape": list(input_shape),
        "params": total.params,
        "trainable_params": total.trainable_params,
        "macs": total.macs,
        "table": format_summary(title, calls, total),
    }


def _as_uint8(images: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


def _merge(a, b):
    return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]), np.concatenate([a[2], b[2]])


def _best(candidates, count: int):
    losses, indices, images = candidates
    order = losses.argsort(descending=True)[:count]
    return losses[order], indices[order], images[order.numpy()]


def _number(value) -> float | None:
    return None if value is None else float(value)
