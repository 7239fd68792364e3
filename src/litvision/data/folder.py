"""Image folders (torchvision's ImageFolder layout) as a dataset: ``data=folder data.data_dir=<folder>``.

One subfolder per class, its name the class name (classes in sorted order). Either ``train/`` (and
optionally ``val/``, ``test/``) holding the class folders, or the class folders directly, split into
train/val/test by seeded, per-class fractions. Every file is decoded once by
:func:`litvision.data.images.read_image`, in worker processes, straight into a memory-mapped uint8
cache file in the folder (:mod:`litvision.data.folder_cache`), once per machine. The splits are then
copied into memory when they fit the memory budget (``data.in_memory=auto``), or read from the mapped
cache by DataLoader workers: the same batches either way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Annotated

import torch
from torch.utils.data import DataLoader

from litvision.data.datamodule import ImageDataModule
from litvision.data.folder_cache import FolderCache
from litvision.data.folder_files import (
    SPLIT_FOLDERS,
    FileList,
    ImageFileDataset,
    collate_skipping,
    decode_all,
    per_channel_stats,
    scan_folder,
    stratified_carve,
)
from litvision.data.images import RESIZE_MODES
from litvision.data.mapped import MappedImages, human_size, memory_budget
from litvision.data.normalization import Normalization
from litvision.data.options import check_folder_options
from litvision.support.arguments import AtLeast, OneOf, check_arguments, locals_without_self
from litvision.support.errors import DataError

log = logging.getLogger(__name__)

STATS_SAMPLE = 2000  # training images decoded for mean/std on the dataloader path


class FolderDataModule(ImageDataModule):
    """Images in class folders, decoded once into uint8 splits (or per batch with loader=dataloader).

    ``num_classes`` and ``class_names`` default to the folder's class folders (the data config resolves
    them with ``${litvision.folder_classes:...}``); given ones must agree with the folder. ``mean`` and
    ``std`` null: computed from the training split and kept as the data module's state in every
    checkpoint (:meth:`state_dict`). ``on_bad_image``: "skip" (one warning listing every unreadable
    file) or "error".
    """

    dataset = "folder"

    def __init__(
        self,
        data_dir: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        in_channels: Annotated[int, OneOf(1, 3)] = 3,
        image_size: Annotated[int, AtLeast(1)] = 64,
        resize: Annotated[str, OneOf(*RESIZE_MODES)] = "crop",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        on_bad_image: Annotated[str, OneOf("skip", "error")] = "skip",
        cache: bool = True,
        decode_workers: Annotated[int, AtLeast(1)] | None = None,
        in_memory: Annotated[str | bool, OneOf("auto", True, False)] = "auto",
        memory_budget: float = 0.5,
        **kwargs,
    ):
        check_arguments(FolderDataModule.__init__, locals_without_self(locals()), "data", DataError)
        found = check_folder_options(
            data_dir, num_classes, class_names, val_fraction, test_fraction, mean, std, memory_budget
        )
        self.native_shape = (in_channels, image_size)  # what read_image produces
        self.given_stats = mean is not None and std is not None
        self.stats_known = self.given_stats  # False while the normalization is the placeholder below
        kwargs.pop("val_size", None)  # the folder's split comes from the fractions (or val/)
        super().__init__(
            data_dir=data_dir,
            num_classes=len(found),
            in_channels=in_channels,
            image_size=image_size,
            class_names=found,
            mean=mean if mean is not None else (0.5,) * in_channels,
            std=std if std is not None else (0.5,) * in_channels,
            val_size=0,
            **kwargs,
        )
        self.resize, self.on_bad_image, self.use_cache = resize, on_bad_image, cache
        self.val_fraction, self.test_fraction = float(val_fraction), float(test_fraction)
        self.decode_workers = decode_workers or os.cpu_count() or 1
        self.in_memory, self.memory_budget = in_memory, memory_budget
        self.files: FileList | None = None
        self.split_positions: dict[str, torch.Tensor] = {}  # split -> positions into self.files
        self.skipped: list[str] = []  # "<path>: not a readable image (...)" per skipped file
        self._mapped: tuple[MappedImages, dict[int, str]] | None = None  # the cache and its failures

    def prepare_data(self) -> None:
        """Decode the folder into its cache, once per machine: Lightning runs this on one process per node
        while the node's other ranks wait; their :meth:`setup` then maps the same file."""
        if self.loader == "tensor" and self.use_cache:
            self._plan_splits()
            self._decoded()

    # -- splits over the file list -------------------------------------------------------------
    def _plan_splits(self) -> None:
        files = scan_folder(self.data_dir, self.class_names)
        origin = torch.tensor([SPLIT_FOLDERS.index(o) for o in files.origin])
        positions = {name: (origin == i).nonzero().flatten() for i, name in enumerate(SPLIT_FOLDERS)}
        pool = positions["train"]
        if not len(positions["test"]):  # no test/ folder: carve the test split from the training files
            kept, carved = stratified_carve(files.labels[pool], self.test_fraction, self.split_seed + 1)
            pool, positions["test"] = pool[kept], pool[carved]
        if self.num_folds is not None:
            # k-fold: fold i of the training pool (train/ and val/) is the validation split.
            pool = torch.cat([pool, positions["val"]]).sort().values
            train, val = self.split_indices(len(pool), files.labels[pool])
            positions["train"], positions["val"] = pool[train], pool[val]
        elif not len(positions["val"]):
            kept, carved = stratified_carve(files.labels[pool], self.val_fraction, self.split_seed)
            positions["train"], positions["val"] = pool[kept], pool[carved]
        else:
            positions["train"] = pool
        if not len(positions["train"]):
            raise DataError(f"{self.data_dir}: no training images left after the validation and test splits")
        self.files, self.split_positions = files, positions

    # -- the tensor path -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits or (self.loader == "dataloader" and self.files is not None):
            return
        self._plan_splits()
        if self.loader == "dataloader":
            if not self.given_stats:
                self._set_stats(self._sample_stats())
            return
        images, ok = self._decoded()
        kept = {split: positions[ok[positions]] for split, positions in self.split_positions.items()}
        in_memory = self._hold_in_memory(images, sum(len(rows) for rows in kept.values()))
        names = {}  # each split's file paths, so the data audit names the duplicates it finds
        for split, rows in kept.items():
            self.splits[split] = (images[rows].load() if in_memory else images[rows], self.files.labels[rows])
            names[split] = [str(self.files.paths[i]) for i in rows.tolist()]
        if not len(self.splits["train"][0]):
            raise DataError(f"{self.data_dir}: none of the training files is a readable image")
        self.audit_splits(names)
        if not self.given_stats:
            self._set_stats(per_channel_stats(self.splits["train"][0]))

    def _settings(self) -> str:
        return f"{self.in_channels}x{self.image_size}-{self.resize}"

    def _decoded(self) -> tuple[MappedImages, torch.Tensor]:
        """Every listed file decoded (mapped from the cache), and a mask of the readable ones; bad files
        reported (or raised)."""
        paths = self.files.paths
        cache = FolderCache(
            self.data_dir, self.in_channels, self.image_size, self.resize, self.use_cache, self.decode_workers
        )
        if self._mapped is None or len(self._mapped[0]) != len(paths):  # prepare_data may have mapped it already
            self._mapped = cache.find(paths) or cache.build(paths)
        images, failures = self._mapped
        ok = torch.ones(len(paths), dtype=torch.bool)
        ok[list(failures)] = False
        errors = [failures[position] for position in sorted(failures)]
        if errors:
            if self.on_bad_image == "error":
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                raise DataError(f"{errors[0]}{more}; data.on_bad_image=skip leaves such files out")
            self.skipped = errors
            log.warning("skipped %d unreadable file(s):\n  %s", len(errors), "\n  ".join(errors))
        return images, ok

    def _hold_in_memory(self, images: MappedImages, count: int) -> bool:
        """Whether the splits are copied into memory (``data.in_memory``), said in one line."""
        trainer = self.trainer
        needed = count * images.nbytes // max(1, len(images))
        budget, how = memory_budget(self.memory_budget, trainer.num_devices if trainer is not None else 1)
        if self.in_memory is True and needed > budget:
            raise DataError(
                f"data.in_memory=true: the splits take {human_size(needed)}, more than the memory budget of "
                f"{human_size(budget)} ({how}); use data.in_memory=auto to read them from the mapped cache, "
                f"or raise data.memory_budget"
            )
        in_memory = self.in_memory is True or (self.in_memory == "auto" and needed <= budget)
        if in_memory:
            log.info("data: %d images (%s) held in memory", count, human_size(needed))
        else:
            log.info(
                "data: %d images (%s) read from the mapped cache %s by %d loader worker(s) (%s)",
                *(count, human_size(needed), images.path, self.num_workers),
                "data.in_memory=false" if self.in_memory is False else f"memory budget {human_size(budget)}",
            )
        return in_memory

    def _set_stats(self, stats: tuple[list[float], list[float]]) -> None:
        mean, std = stats
        self.normalization = Normalization(mean, std)
        self.stats_known = True
        log.info("data mean %s, std %s (from the training split)", _rounded(mean), _rounded(std))

    # -- the statistics are data state: saved in every checkpoint -------------------------------
    def state_dict(self) -> dict:
        """``{"mean", "std"}`` the batches are normalized with, and the batching of the base class.

        Lightning saves it in each checkpoint under this class's name, and
        :func:`litvision.support.checkpoint.saved_configs` puts it into the data config that eval,
        predict and export read, so they normalize as training did. Before :meth:`setup` has computed
        them, the placeholder values are never saved: a checkpoint without them is not one a resume
        or a prediction would normalize wrongly from.
        """
        return {**super().state_dict(), **(self.normalization.stats() if self.stats_known else {})}

    def load_state_dict(self, state_dict: dict) -> None:
        """Resuming or testing from a checkpoint: its statistics, not the ones the folder gives today.

        Called after :meth:`setup`; the weights were trained with the saved values, which differ from the
        recomputed ones only if the folder changed since. Statistics given in the config stay.
        """
        super().load_state_dict(state_dict)
        if self.given_stats or "mean" not in state_dict:
            return
        restored, current = Normalization(state_dict["mean"], state_dict["std"]), self.normalization
        if restored.stats() != current.stats():
            saved, now = restored.stats(), current.stats()
            log.info(
                "data mean %s, std %s (from the checkpoint; the folder's training split now gives %s, %s)",
                *(_rounded(values) for values in (saved["mean"], saved["std"], now["mean"], now["std"])),
            )
        self.normalization = restored

    # -- the dataloader path -------------------------------------------------------------------
    def _dataset(self, split: str) -> ImageFileDataset:
        positions = self.split_positions[split].tolist()
        return ImageFileDataset(
            [self.files.paths[i] for i in positions],
            self.files.labels[positions],
            self.in_channels,
            self.image_size,
            self.resize,
            skip=self.on_bad_image == "skip",
        )

    def _sample_stats(self) -> tuple[list[float], list[float]]:
        positions = self.split_positions["train"]
        if len(positions) > STATS_SAMPLE:
            generator = torch.Generator().manual_seed(self.split_seed)
            positions = positions[torch.randperm(len(positions), generator=generator)[:STATS_SAMPLE]]
        paths = [self.files.paths[i] for i in positions.tolist()]
        images, ok, _ = decode_all(paths, self.in_channels, self.image_size, self.resize, self.decode_workers)
        if not ok.any():
            raise DataError(f"{self.data_dir}: none of the training files is a readable image")
        return per_channel_stats(images[ok])

    def _torch_dataloader(self, split: str, train: bool, batch_size: int) -> DataLoader:
        return DataLoader(
            self._dataset(split),
            batch_size=batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=collate_skipping,
        )


def _rounded(values: Sequence[float]) -> list[float]:
    return [round(float(v), 4) for v in values]
