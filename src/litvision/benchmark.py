"""Speed side by side: this template's Trainer.fit, a bare PyTorch loop, and the tutorials' DataLoader loop.

All three train the same model (same seed, init, optimizer, batch size, epochs and device); an epoch
is a training pass plus a validation pass. The table reports the median epoch time over the epochs
after the first (which pays for warm-up), images/s, the peak memory while that way ran, and the
final validation accuracy.
"""

from __future__ import annotations

import contextlib
import logging
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, open_dict
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from litvision.data.datasets import DATASETS
from litvision.data.loader import EpochSampler, TensorBatchLoader
from litvision.instantiate import build, build_each

log = logging.getLogger(__name__)
WAYS = {"trainer": "(a) litvision Trainer.fit", "plain": "(b) plain PyTorch loop, same tensors",
        "dataloader": "(c) torchvision Dataset + DataLoader(ToTensor)"}


@dataclass
class Result:
    way: str
    epoch_seconds: list[float] = field(default_factory=list)
    train_images: int = 0
    val_acc: float = float("nan")
    peak_memory: int = 0

    @property
    def seconds_per_epoch(self) -> float:
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.median(steady)


class PeakMemory(contextlib.AbstractContextManager):
    """Peak GPU memory allocated (CUDA), else the process's peak resident memory sampled every 10 ms."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        page = 4096
        while not self._stop.is_set():
            with open("/proc/self/statm") as statm:
                self.peak = max(self.peak, int(statm.read().split()[1]) * page)
            self._stop.wait(0.01)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
        return False


class EpochClock(Callback):
    """Epoch boundaries as Trainer.fit sees them: each epoch's time includes its validation and checkpointing."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        _sync(pl_module.device)
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module):
        _sync(pl_module.device)
        self.starts.append(time.perf_counter())

    @property
    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.starts, self.starts[1:])]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(cfg: DictConfig) -> torch.device:
    accelerator = cfg.trainer.accelerator
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _autocast(precision: str, device: torch.device):
    dtypes = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    if str(precision) in dtypes:
        return torch.autocast(device.type, dtype=dtypes[str(precision)])
    return contextlib.nullcontext()


def run_trainer(cfg: DictConfig, device: torch.device) -> Result:
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    clock = EpochClock()
    callbacks = build_each(cfg.get("callbacks"), "callbacks") + [clock]
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=build_each(cfg.get("logger"), "logger") or False)
    with PeakMemory(device) as memory:
        trainer.fit(model, datamodule=datamodule)
    return Result(WAYS["trainer"], clock.durations, len(datamodule.splits["train"][0]),
                  float(trainer.callback_metrics["val/acc"]), memory.peak)


def _plain_setup(cfg: DictConfig, device: torch.device):
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model.to(device)
    return datamodule, model, model.optimizer_factory(params=model.parameters())


def _train_and_validate(model, optimizer, train_batches, val_batches, prepare, cfg, device) -> tuple[float, float]:
    """One epoch of the same work Trainer.fit does: a training pass and a validation pass."""
    _sync(device)
    start = time.perf_counter()
    model.train()
    scaler = torch.amp.GradScaler(device.type, enabled=str(cfg.trainer.precision) == "16-mixed")
    for images, labels in train_batches:
        images, labels = prepare(images.to(device, non_blocking=True), True), labels.to(device, non_blocking=True)
        with _autocast(cfg.trainer.precision, device):
            loss = model.criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    model.eval()
    correct = seen = 0
    with torch.no_grad(), _autocast(cfg.trainer.precision, device):
        for images, labels in val_batches:
            images, labels = prepare(images.to(device), False), labels.to(device)
            correct += (model(images).argmax(1) == labels).sum().item()
            seen += len(labels)
    _sync(device)
    return time.perf_counter() - start, correct / seen


def run_plain(cfg: DictConfig, device: torch.device) -> Result:
    datamodule, model, optimizer = _plain_setup(cfg, device)
    (train_x, train_y), (val_x, val_y) = datamodule.splits["train"], datamodule.splits["val"]
    if device.type == "cuda":
        train_x, train_y, val_x, val_y = (t.to(device) for t in (train_x, train_y, val_x, val_y))
    sampler = EpochSampler(len(train_x), shuffle=True, seed=datamodule.shuffle_seed)
    train_batches = TensorBatchLoader(train_x, train_y, datamodule.batch_size, sampler)
    val_batches = TensorBatchLoader(val_x, val_y, datamodule.eval_batch_size, EpochSampler(len(val_x), False))
    result = Result(WAYS["plain"], train_images=len(train_x))
    with PeakMemory(device) as memory:
        for epoch in range(cfg.epochs):
            sampler.set_epoch(epoch)
            seconds, result.val_acc = _train_and_validate(model, optimizer, train_batches, val_batches,
                                                          datamodule.prepare_batch, cfg, device)
            result.epoch_seconds.append(seconds)
    result.peak_memory = memory.peak
    return result


def run_dataloader(cfg: DictConfig, device: torch.device) -> Result:
    """The tutorials' pipeline: a PIL image per example through ToTensor/Normalize (and crop/flip) transforms."""
    datamodule, model, optimizer = _plain_setup(cfg, device)
    mean, std = datamodule.mean.flatten().tolist(), datamodule.std.flatten().tolist()
    augment = []
    if datamodule.augment.get("crop_padding"):
        augment.append(transforms.RandomCrop(datamodule.image_size, padding=datamodule.augment["crop_padding"]))
    if datamodule.augment.get("flip"):
        augment.append(transforms.RandomHorizontalFlip())
    to_tensor = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    parser = DATASETS[datamodule.dataset].parser
    train_set = parser(str(datamodule.data_dir), train=True, transform=transforms.Compose(augment + to_tensor))
    val_set = parser(str(datamodule.data_dir), train=True, transform=transforms.Compose(to_tensor))
    train_idx, val_idx = datamodule.split_indices(len(train_set))
    workers = cfg.dataloader_workers
    train_batches = DataLoader(Subset(train_set, train_idx.tolist()), batch_size=datamodule.batch_size, shuffle=True,
                               num_workers=workers, pin_memory=device.type == "cuda")
    val_batches = DataLoader(Subset(val_set, val_idx.tolist()), batch_size=datamodule.eval_batch_size,
                             num_workers=workers)
    result = Result(WAYS["dataloader"], train_images=len(train_idx))
    with PeakMemory(device) as memory:
        for _ in range(cfg.epochs):
            seconds, result.val_acc = _train_and_validate(model, optimizer, train_batches, val_batches,
                                                          lambda images, train: images, cfg, device)
            result.epoch_seconds.append(seconds)
    result.peak_memory = memory.peak
    return result


RUNNERS = {"trainer": run_trainer, "plain": run_plain, "dataloader": run_dataloader}


def markdown_table(results: dict[str, Result]) -> str:
    rows = ["| way | s/epoch (median, epochs 2+) | images/s | peak memory | val/acc | every epoch (s) |",
            "| --- | --- | --- | --- | --- | --- |"]
    for result in results.values():
        rate = result.train_images / result.seconds_per_epoch
        rows.append(f"| {result.way} | {result.seconds_per_epoch:.2f} | {rate:,.0f} | "
                    f"{result.peak_memory / 2**30:.2f} GiB | {result.val_acc:.4f} | "
                    f"{' '.join(f'{t:.2f}' for t in result.epoch_seconds)} |")
    seconds = {name: r.seconds_per_epoch for name, r in results.items()}
    if {"trainer", "plain"} <= seconds.keys():
        rows.append(f"\n(a)/(b) = {seconds['trainer'] / seconds['plain']:.3f} (template overhead over a bare loop)")
    if {"trainer", "dataloader"} <= seconds.keys():
        rows.append(f"(c)/(a) = {seconds['dataloader'] / seconds['trainer']:.2f} (tutorial pipeline vs template)")
    return "\n".join(rows)


def benchmark(cfg: DictConfig) -> dict[str, float]:
    """Run the configured ways one after another; print and save the table; return seconds per epoch."""
    with open_dict(cfg):
        cfg.trainer.max_epochs = cfg.epochs
    device = _device(cfg)
    results = {way: RUNNERS[way](cfg, device) for way in cfg.ways}
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    header = (f"model={cfg.model.net._target_.rsplit('.', 1)[-1]} data={cfg.data._target_.rsplit('.', 1)[-1]} "
              f"batch={cfg.data.batch_size} epochs={cfg.epochs} precision={cfg.trainer.precision} device={machine} "
              f"torch={torch.__version__}")
    table = f"{header}\n\n{markdown_table(results)}\n"
    print(table)
    out = Path(cfg.paths.output_dir) / "benchmark.md"
    out.write_text(table)
    log.info("table saved to %s", out)
    return {f"{name}/seconds_per_epoch": r.seconds_per_epoch for name, r in results.items()}
