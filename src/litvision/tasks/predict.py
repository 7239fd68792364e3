"""The prediction task: class probabilities for image files, with the preprocessing saved in a checkpoint.

``python scripts/predict.py ckpt_path=<ckpt> inputs=<file|folder|glob>`` (or a list of them) reads each
file as the model's data was read (channels, side, mean/std from the checkpoint's data config), runs
the network in batches and writes ``predictions.csv`` to the run folder: per file its top-k classes
and probabilities, or the error that kept it from being read. :class:`ProbabilityModel` (uint8 images
in, probabilities out) is also what :mod:`litvision.tasks.export` exports.
"""

from __future__ import annotations

import csv
import glob
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig
from rich.console import Console
from rich.progress import track
from rich.table import Table
from torch import nn

from litvision.callbacks.render import image_grid, save_png
from litvision.classifier import ImageClassifier, mirror_mean
from litvision.data.images import IMAGE_SUFFIXES, read_image
from litvision.data.normalization import Normalization
from litvision.models.pretrained import checkpoint_weights_follow
from litvision.support.checkpoint import read_checkpoint, saved_configs
from litvision.support.errors import DataError, LitvisionError, first_line

log = logging.getLogger(__name__)

GLOB_CHARS = frozenset("*?[")
CONTACT_SHEET_MAX = 64  # images on the contact sheet (the first ones); more would make captions unreadable


class ProbabilityModel(nn.Module):
    """uint8 images (N, C, H, W) -> class probabilities (N, classes): the checkpoint's normalization inside.

    The :class:`~litvision.data.normalization.Normalization` the training batches went through, then the
    network and a softmax. One module for prediction and for the exported ONNX/TorchScript file.
    ``tta_flip`` (the checkpoint's model option) averages the logits of each image and its mirror image.
    """

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], tta_flip: bool = False):
        super().__init__()
        self.normalization = Normalization(mean, std)
        self.net = net
        self.tta_flip = tta_flip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalization(images)
        return (mirror_mean(self.net, x) if self.tta_flip else self.net(x)).softmax(dim=1)


def load_classifier(checkpoint: dict) -> ImageClassifier:
    """The checkpoint's ImageClassifier with its trained weights, in eval mode on the CPU."""
    model_config, _ = saved_configs(checkpoint)
    model_config["init_from"] = None  # its own weights follow; a fine-tuned run's starting point is not needed
    model_config["freeze_epochs"] = 0
    with checkpoint_weights_follow():  # a pretrained backbone's file is not needed: the checkpoint's weights follow
        model = ImageClassifier(**model_config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError) as err:
        raise LitvisionError(f"the checkpoint's weights do not fit its own model config ({first_line(err)})") from None
    return model.eval()


def probability_model(checkpoint: dict) -> tuple[ProbabilityModel, dict]:
    """(:class:`ProbabilityModel` of the checkpoint in eval mode, its data config)."""
    _, data_config = saved_configs(checkpoint)
    model = load_classifier(checkpoint)
    net = model.net.to(memory_format=torch.contiguous_format)
    return ProbabilityModel(net, data_config["mean"], data_config["std"], model.hparams.tta_flip).eval(), data_config


def expand_inputs(inputs: str | Iterable[str]) -> list[Path]:
    """Files named by ``inputs``: files as given, folders (recursively) and globs to their image files.

    An explicit file is kept whatever its suffix (an unreadable one gets an error row); from folders
    only files with an image suffix Pillow reads are taken. Order: as given, each folder or glob sorted.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    files: dict[Path, None] = {}  # ordered, without duplicates
    for entry in inputs:
        entry = str(entry)
        if GLOB_CHARS & set(entry):
            matches = [Path(m) for m in sorted(glob.glob(str(Path(entry).expanduser()), recursive=True))]
        else:
            matches = [Path(entry).expanduser()]
        found = 0
        for match in matches:
            if match.is_dir():
                images = sorted(p for p in match.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                files.update(dict.fromkeys(images))
                found += len(images)
            elif match.is_file():
                files[match] = None
                found += 1
        if not found:
            log.warning("inputs: %s matched no file", entry)
    return list(files)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LitvisionError(f"device must be cpu, cuda, cuda:<n> or auto (got {name!r})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LitvisionError(f"device={name}: no CUDA device here (device=cpu or device=auto)")
    return device


def predict(cfg: DictConfig) -> dict[str, float]:
    """Write ``predictions.csv`` (and optionally ``contact_sheet.png``) for ``cfg.inputs``; return counts."""
    checkpoint = read_checkpoint(cfg.ckpt_path)
    inputs = list(cfg.inputs) if isinstance(cfg.inputs, (ListConfig, list, tuple)) else cfg.inputs
    files = expand_inputs(inputs)
    if not files:
        raise LitvisionError(f"inputs={inputs}: no input files matched")
    if cfg.batch_size < 1 or cfg.top_k < 1:
        raise LitvisionError(f"batch_size and top_k must be >= 1 (got {cfg.batch_size}, {cfg.top_k})")
    model, data_config = probability_model(checkpoint)
    device = pick_device(str(cfg.device))
    model.to(device)
    channels, size = int(data_config["in_channels"]), int(data_config["image_size"])
    resize = cfg.get("resize") or data_config.get("resize") or "crop"
    class_names = [str(name) for name in data_config["class_names"]]
    top_k = min(int(cfg.top_k), len(class_names))

    rows: list[dict] = []
    sheet: list[tuple[torch.Tensor, str]] = []  # (image, caption) for the contact sheet
    batches = [files[i : i + cfg.batch_size] for i in range(0, len(files), cfg.batch_size)]
    if cfg.progress_bar:
        batches = track(batches, description=f"predicting {len(files)} files", transient=True)
    for batch in batches:
        images, readable = [], []
        for path in batch:
            try:
                images.append(read_image(path, channels, size, resize))
                readable.append(path)
            except DataError as err:
                rows.append({"path": str(path), "error": str(err)})
        if not images:
            continue
        stacked = torch.stack(images)
        with torch.inference_mode():
            probs = model(stacked.to(device)).float().cpu()
        top_probs, top_classes = probs.topk(top_k, dim=1)
        for path, image, p_row, c_row in zip(readable, images, top_probs.tolist(), top_classes.tolist()):
            row = {"path": str(path), "error": ""}
            for rank, (p, c) in enumerate(zip(p_row, c_row), start=1):
                row[f"class_{rank}"], row[f"prob_{rank}"] = class_names[c], f"{p:.6f}"
            rows.append(row)
            if cfg.contact_sheet and len(sheet) < CONTACT_SHEET_MAX:
                sheet.append((image, f"{class_names[c_row[0]]} {p_row[0]:.0%}"))

    order = {str(path): i for i, path in enumerate(files)}
    rows.sort(key=lambda row: order[row["path"]])  # in the order of the inputs; error rows were added first
    out_dir = Path(cfg.paths.output_dir)
    csv_path = _write_csv(out_dir / "predictions.csv", rows, top_k)
    errors = sum(1 for row in rows if row["error"])
    _print_table(rows, top_k, int(cfg.show))
    log.info("%d files, %d unreadable: %s", len(rows), errors, csv_path)
    if sheet:
        grid = image_grid(
            torch.stack([image for image, _ in sheet]).permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0,
            [caption for _, caption in sheet],
            title=f"{Path(cfg.ckpt_path).name}: top-1 predictions",
        )
        log.info("contact sheet: %s", save_png(grid, out_dir / "contact_sheet.png"))
    return {"files": float(len(rows)), "errors": float(errors)}


def _write_csv(path: Path, rows: list[dict], top_k: int) -> Path:
    columns = ["path"] + [f"{kind}_{rank}" for rank in range(1, top_k + 1) for kind in ("class", "prob")] + ["error"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path


def _print_table(rows: list[dict], top_k: int, show: int) -> None:
    if show <= 0:
        return
    table = Table(title=f"predictions (first {min(show, len(rows))} of {len(rows)})")
    table.add_column("path", overflow="fold")
    for rank in range(1, min(top_k, 3) + 1):  # the table stays narrow; the CSV has all top_k
        table.add_column(f"class {rank}")
    table.add_column("error", overflow="fold")
    for row in rows[:show]:
        ranked = [
            f"{row[f'class_{r}']} {float(row[f'prob_{r}']):.1%}" if row.get(f"class_{r}") else ""
            for r in range(1, min(top_k, 3) + 1)
        ]
        table.add_row(row["path"], *ranked, row["error"])
    Console().print(table)
