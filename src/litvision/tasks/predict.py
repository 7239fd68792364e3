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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.progress import track
from rich.table import Table
from rich.text import Text
from torch import nn

from litvision.classifier import ImageClassifier, from_saved_config, mirror_mean
from litvision.data.images import IMAGE_SUFFIXES, RESIZE_MODES, read_image
from litvision.data.normalization import Normalization
from litvision.support.atomic import atomic_open
from litvision.support.checkpoint import read_checkpoint, saved_configs
from litvision.support.errors import DataError, LitvisionError, first_line, printable
from litvision.support.render import image_grid, save_png

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
    model = from_saved_config(saved_configs(checkpoint)[0])
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
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise LitvisionError(f"device must be cpu, cuda, cuda:<n> or auto (got {_shown(name)})")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LitvisionError(f"device={name}: no CUDA device here (device=cpu or device=auto)")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise LitvisionError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@dataclass(frozen=True)
class PredictOptions:
    """predict.yaml's options, checked before anything is read or run."""

    inputs: list[str]
    batch_size: int
    top_k: int
    show: int
    device: torch.device
    resize: str | None  # None: the checkpoint's data config decides
    progress_bar: bool
    contact_sheet: bool


def predict_options(cfg: DictConfig) -> PredictOptions:
    """The options of ``cfg``, or one :class:`LitvisionError` naming the first wrong one and what it takes."""
    inputs = cfg.inputs
    entries = list(inputs) if isinstance(inputs, (ListConfig, list, tuple)) else [inputs]
    if not entries or not all(
        isinstance(entry, (str, int, float)) and not isinstance(entry, bool) for entry in entries
    ):
        raise LitvisionError(f"inputs must be a file, a folder or a glob, or a list of them (got {_shown(inputs)})")
    resize = cfg.get("resize")
    if resize is not None and resize not in RESIZE_MODES:
        raise LitvisionError(f"resize must be {', '.join(RESIZE_MODES)} or null (got {_shown(resize)})")
    for key in ("progress_bar", "contact_sheet"):
        if not isinstance(cfg.get(key), bool):
            raise LitvisionError(f"{key} must be true or false (got {_shown(cfg.get(key))})")
    return PredictOptions(
        inputs=[str(entry) for entry in entries],
        batch_size=_whole_number(cfg, "batch_size", 1),
        top_k=_whole_number(cfg, "top_k", 1),
        show=_whole_number(cfg, "show", 0),
        device=pick_device(str(cfg.device)),
        resize=resize,
        progress_bar=cfg.progress_bar,
        contact_sheet=cfg.contact_sheet,
    )


def _whole_number(cfg: DictConfig, key: str, least: int) -> int:
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise LitvisionError(f"{key} must be a whole number >= {least} (got {_shown(value)})")
    return value


def _shown(value: object) -> str:
    """A config value in an error line: as the user typed it, cut short."""
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value, resolve=False)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def predict(cfg: DictConfig) -> dict[str, float]:
    """Write ``predictions.csv`` (and optionally ``contact_sheet.png``) for ``cfg.inputs``; return counts."""
    options = predict_options(cfg)
    checkpoint = read_checkpoint(str(cfg.ckpt_path))
    files = expand_inputs(options.inputs)
    if not files:
        raise LitvisionError(f"inputs={_shown(cfg.inputs)}: no input files matched")
    model, data_config = probability_model(checkpoint)
    resize = options.resize or data_config.get("resize") or "crop"
    if resize not in RESIZE_MODES:
        raise LitvisionError(
            f"the checkpoint's data config has resize={_shown(resize)}: pass resize={' or resize='.join(RESIZE_MODES)}"
        )
    device = options.device
    model.to(device)
    channels, size = int(data_config["in_channels"]), int(data_config["image_size"])
    class_names = [str(name) for name in data_config["class_names"]]
    top_k = min(options.top_k, len(class_names))

    rows: list[dict] = []
    sheet: list[tuple[torch.Tensor, str]] = []  # (image, caption) for the contact sheet
    batches = [files[i : i + options.batch_size] for i in range(0, len(files), options.batch_size)]
    if options.progress_bar:
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
            if options.contact_sheet and len(sheet) < CONTACT_SHEET_MAX:
                sheet.append((image, f"{class_names[c_row[0]]} {p_row[0]:.0%}"))

    order = {str(path): i for i, path in enumerate(files)}
    rows.sort(key=lambda row: order[row["path"]])  # in the order of the inputs; error rows were added first
    out_dir = Path(cfg.paths.output_dir)
    csv_path = _write_csv(out_dir / "predictions.csv", rows, top_k)
    errors = sum(1 for row in rows if row["error"])
    _print_table(rows, top_k, options.show)
    log.info("%d files, %d unreadable: %s", len(rows), errors, csv_path)
    if sheet:
        grid = image_grid(
            torch.stack([image for image, _ in sheet]).permute(0, 2, 3, 1).numpy().astype(np.float32) / 255.0,
            [caption for _, caption in sheet],
            title=f"{Path(str(cfg.ckpt_path)).name}: top-1 predictions",
        )
        log.info("contact sheet: %s", save_png(grid, out_dir / "contact_sheet.png"))
    return {"files": float(len(rows)), "errors": float(errors)}


def _write_csv(path: Path, rows: list[dict], top_k: int) -> Path:
    columns = ["path"] + [f"{kind}_{rank}" for rank in range(1, top_k + 1) for kind in ("class", "prob")] + ["error"]
    # Paths are written as the file system gave them (bytes that are not UTF-8 stay those bytes).
    with atomic_open(path, "w", newline="", encoding="utf-8", errors="surrogateescape") as stream:
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
        # Text, not markup, control characters escaped: a file named "[link=...]" or "\x1b[2J" is shown as it is.
        table.add_row(*(Text(printable(cell)) for cell in (row["path"], *ranked, row["error"])))
    Console().print(table)
