"""Speed side by side: this template's Trainer.fit, a bare PyTorch loop, and the tutorials' DataLoader loop.

All three train the same model (same seed, init, optimizer, batch size, epochs and device); an epoch
is a training pass plus a validation pass. The ways take turns every ``turn_batches`` training
batches: inside Trainer.fit, outside (a)'s clock, (b) and (c) train as many batches of their own
epoch k while (a) is in its epoch k (see :class:`TakeTurns`). A slow spell of a shared machine (other
tenants, a busy neighbour core) then hits every way alike instead of whichever ran at the time: run
one after another, the same way's epoch time varies between runs far more than the differences the
benchmark is after.
Each way keeps its own random-number stream, so it trains exactly as it would alone.

The table reports the median epoch time over the epochs after the first (which pays for warm-up),
images/s, the peak memory while that way ran, and the final training and validation accuracy; then
(a)/(b) both from those medians and epoch by epoch.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from litvision.data.loader import EpochSampler, TensorBatchLoader
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build, build_each
from litvision.support.precision import BF16_EMULATED, has_bfloat16_instructions
from litvision_lab.benchmark_meters import MemoryMeter, RandomStream

log = logging.getLogger(__name__)
WAYS = {
    "trainer": "(a) litvision Trainer.fit",
    "plain": "(b) plain PyTorch loop, same tensors",
    "dataloader": "(c) torchvision Dataset + DataLoader(ToTensor)",
}


@dataclass
class Result:
    way: str
    epoch_seconds: list[float] = field(default_factory=list)
    train_images: int = 0
    train_acc: float = float("nan")
    val_acc: float = float("nan")
    peak_memory: int = 0

    @property
    def seconds_per_epoch(self) -> float:
        steady = self.epoch_seconds[1:] or self.epoch_seconds
        return statistics.median(steady)


def warn_if_bfloat16_is_emulated(trainer: L.Trainer, cpuinfo: Path | None = None) -> bool:
    """Log a warning (and return True) when ``trainer`` trains in bfloat16 on a CPU that emulates it."""
    precision = str(trainer.precision)
    if not precision.startswith("bf16") or not isinstance(trainer.accelerator, CPUAccelerator):
        return False
    if has_bfloat16_instructions(cpuinfo) is not False:
        return False
    log.warning("trainer.precision=%s %s", precision, BF16_EMULATED)
    return True


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_of(cfg: DictConfig) -> torch.device:
    accelerator = cfg.trainer.accelerator
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _autocast(precision: str, device: torch.device):
    dtypes = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
    if str(precision) in dtypes:
        return torch.autocast(device.type, dtype=dtypes[str(precision)])
    return contextlib.nullcontext()


@dataclass
class LoopWay:
    """(b) or (c): a hand-written loop, run a turn of training batches at a time.

    An epoch is :meth:`start_epoch`, any number of :meth:`train` turns, and :meth:`finish_epoch`
    (the batches left, then the validation pass). Only the work inside those calls is clocked.
    """

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_batches: Iterable
    val_batches: Iterable
    prepare: Callable[[torch.Tensor, bool], torch.Tensor]
    result: Result
    sampler: EpochSampler | None = None
    stream: RandomStream = field(default_factory=RandomStream)
    _epoch: dict = field(default_factory=dict, repr=False)

    def start_epoch(self, epoch: int, cfg: DictConfig, device: torch.device) -> None:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        scaler = torch.amp.GradScaler(device.type, enabled=str(cfg.trainer.precision) == "16-mixed")
        self._epoch = {
            "batches": None,
            "seconds": 0.0,
            "scaler": scaler,
            "right": torch.zeros((), dtype=torch.long, device=device),
            "trained": 0,
        }

    def train(self, cfg: DictConfig, device: torch.device, meter: MemoryMeter, batches: int | None = None) -> None:
        """The next ``batches`` training batches of this epoch (all that are left if None)."""
        epoch = self._epoch
        with self.stream.active(), meter.measuring(self.name):
            _sync(device)
            start = time.perf_counter()
            if epoch["batches"] is None:  # the first turn pays for the epoch's permutation, as Trainer.fit's does
                epoch["batches"] = iter(self.train_batches)
            turn = itertools.islice(epoch["batches"], batches)
            trained = _train_steps(
                self.model, self.optimizer, epoch["scaler"], turn, self.prepare, epoch["right"], cfg, device
            )
            _sync(device)
            epoch["seconds"] += time.perf_counter() - start
        epoch["trained"] += trained

    def finish_epoch(self, cfg: DictConfig, device: torch.device, meter: MemoryMeter) -> None:
        self.train(cfg, device, meter)
        epoch = self._epoch
        with self.stream.active(), meter.measuring(self.name):
            _sync(device)
            start = time.perf_counter()
            self.result.val_acc = _validate(self.model, self.val_batches, self.prepare, cfg, device)
            _sync(device)
            epoch["seconds"] += time.perf_counter() - start
        self.result.epoch_seconds.append(epoch["seconds"])
        self.result.train_acc = int(epoch["right"]) / max(epoch["trained"], 1)


class TakeTurns(Callback):
    """Clocks Trainer.fit's epochs and gives the other ways a turn every ``turn_batches`` training batches.

    At batch ``turn_batches`` of an (a) epoch and every ``turn_batches`` batches after, (a)'s clock
    stops while each other way trains as many batches of its own epoch; when (a) starts its next epoch
    (or ends), they finish theirs (the batches left and the validation pass). A slow spell of a
    shared machine then hits all the ways within seconds of each other. An (a) epoch is clocked
    from this hook to the next one, so it includes its validation, checkpointing and every callback.
    Put first in the callback list, so the other callbacks' per-batch work falls inside (a)'s clock.
    """

    def __init__(self, others: list[LoopWay], cfg: DictConfig, device: torch.device, meter: MemoryMeter):
        self.others, self.cfg, self.device, self.meter = others, cfg, device, meter
        self.turn_batches = int(cfg.turn_batches)
        self.durations: list[float] = []
        self._elapsed, self._start = 0.0, None

    def on_train_epoch_start(self, trainer, pl_module):
        self._end_epoch()
        for way in self.others:
            way.start_epoch(trainer.current_epoch, self.cfg, self.device)
        self._run_clock()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx and batch_idx % self.turn_batches == 0:
            self._stop_clock()
            # Every other turn in reverse order, so that neither (a) nor (b) always runs right after (c).
            turn = batch_idx // self.turn_batches
            for way in self.others if turn % 2 else self.others[::-1]:
                way.train(self.cfg, self.device, self.meter, self.turn_batches)
            self._run_clock()

    def on_train_end(self, trainer, pl_module):
        self._end_epoch()

    def _end_epoch(self) -> None:
        if self._start is None:
            return
        self._stop_clock()
        self.durations.append(self._elapsed)
        self._elapsed = 0.0
        for way in self.others:
            way.finish_epoch(self.cfg, self.device, self.meter)

    def _run_clock(self) -> None:
        _sync(self.device)
        self.meter.begin("trainer")
        self._start = time.perf_counter()

    def _stop_clock(self) -> None:
        _sync(self.device)
        self._elapsed += time.perf_counter() - self._start
        self.meter.end()


def run_trainer(cfg: DictConfig, device: torch.device, others: list[LoopWay], meter: MemoryMeter) -> Result:
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    turns = TakeTurns(others, cfg, device, meter)
    callbacks = [turns] + build_each(cfg.get("callbacks"), "callbacks")
    trainer = build(
        cfg.trainer, "trainer", callbacks=callbacks, logger=build_each(cfg.get("logger"), "logger") or False
    )
    warn_if_bfloat16_is_emulated(trainer)
    trainer.fit(model, datamodule=datamodule)
    metrics = trainer.callback_metrics
    return Result(
        WAYS["trainer"],
        turns.durations,
        len(datamodule.splits["train"][0]),
        float(metrics.get("train/acc", float("nan"))),
        float(metrics["val/acc"]),
        meter.peaks["trainer"],
    )


def _plain_setup(cfg: DictConfig, device: torch.device):
    L.seed_everything(cfg.seed, workers=True)
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    datamodule.prepare_data()
    datamodule.setup("fit")
    model.to(device)
    return datamodule, model, model.optimizer_factory(params=model.parameters())


def _train_steps(model, optimizer, scaler, batches, prepare, right, cfg, device) -> int:
    """The same training work Trainer.fit does per batch. Like the tutorials' loops (and the template),
    it also counts the training accuracy; on the device (into ``right``), so with no host sync per step."""
    model.train()
    trained = 0
    for images, labels in batches:
        images, labels = prepare(images.to(device, non_blocking=True), True), labels.to(device, non_blocking=True)
        with _autocast(cfg.trainer.precision, device):
            logits = model(images)
            loss = model.criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        right += (logits.detach().argmax(1) == labels).sum()
        trained += len(labels)
    return trained


def _validate(model, val_batches, prepare, cfg, device) -> float:
    model.eval()
    correct = seen = 0
    with torch.no_grad(), _autocast(cfg.trainer.precision, device):
        for images, labels in val_batches:
            images, labels = prepare(images.to(device), False), labels.to(device)
            correct += (model(images).argmax(1) == labels).sum().item()
            seen += len(labels)
    return correct / seen


def plain_way(cfg: DictConfig, device: torch.device) -> LoopWay:
    datamodule, model, optimizer = _plain_setup(cfg, device)
    (train_x, train_y), (val_x, val_y) = datamodule.splits["train"], datamodule.splits["val"]
    if device.type == "cuda":
        train_x, train_y, val_x, val_y = (t.to(device) for t in (train_x, train_y, val_x, val_y))
    sampler = EpochSampler(len(train_x), shuffle=True, seed=datamodule.shuffle_seed)
    train_batches = TensorBatchLoader(train_x, train_y, datamodule.batch_size, sampler)
    val_batches = TensorBatchLoader(val_x, val_y, datamodule.eval_batch_size, EpochSampler(len(val_x), False))
    return LoopWay(
        "plain",
        model,
        optimizer,
        train_batches,
        val_batches,
        datamodule.prepare_batch,
        Result(WAYS["plain"], train_images=len(train_x)),
        sampler,
    )


def dataloader_way(cfg: DictConfig, device: torch.device) -> LoopWay:
    """The tutorials' pipeline: a PIL image per example through ToTensor/Normalize (and crop/flip) transforms."""
    datamodule, model, optimizer = _plain_setup(cfg, device)
    mean, std = datamodule.mean.flatten().tolist(), datamodule.std.flatten().tolist()
    augment = []
    if datamodule.augment.get("crop_padding"):
        augment.append(transforms.RandomCrop(datamodule.image_size, padding=datamodule.augment["crop_padding"]))
    if datamodule.augment.get("flip"):
        augment.append(transforms.RandomHorizontalFlip())
    to_tensor = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    parser = datamodule.dataset_files.parser
    train_set = parser(str(datamodule.data_dir), train=True, transform=transforms.Compose(augment + to_tensor))
    val_set = parser(str(datamodule.data_dir), train=True, transform=transforms.Compose(to_tensor))
    train_idx, val_idx = datamodule.split_indices(len(train_set))
    workers = cfg.dataloader_workers
    train_batches = DataLoader(
        Subset(train_set, train_idx.tolist()),
        batch_size=datamodule.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    val_batches = DataLoader(
        Subset(val_set, val_idx.tolist()), batch_size=datamodule.eval_batch_size, num_workers=workers
    )
    return LoopWay(
        "dataloader",
        model,
        optimizer,
        train_batches,
        val_batches,
        lambda images, train: images,
        Result(WAYS["dataloader"], train_images=len(train_idx)),
    )


LOOP_WAYS = {"plain": plain_way, "dataloader": dataloader_way}


def run_ways(cfg: DictConfig, device: torch.device) -> dict[str, Result]:
    """All configured ways, taking turns every ``turn_batches`` batches; (a), when asked for, drives the turns."""
    unknown = set(cfg.ways) - WAYS.keys()
    if unknown:
        raise LitvisionError(f"unknown ways {sorted(unknown)}; choose from {list(WAYS)}")
    if not isinstance(cfg.turn_batches, int) or cfg.turn_batches < 1:
        raise LitvisionError(f"turn_batches must be a whole number >= 1 (got {cfg.turn_batches})")
    with MemoryMeter(device) as meter:
        others = [LOOP_WAYS[name](cfg, device) for name in cfg.ways if name != "trainer"]
        results = {way.name: way.result for way in others}
        if "trainer" in cfg.ways:
            results["trainer"] = run_trainer(cfg, device, others, meter)
        else:
            for epoch in range(cfg.epochs):
                for way in others:
                    way.start_epoch(epoch, cfg, device)
                    way.finish_epoch(cfg, device, meter)
    for way in others:
        way.result.peak_memory = meter.peaks[way.name]
    return {name: results[name] for name in WAYS if name in results}
