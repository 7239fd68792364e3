"""Image folders (torchvision's ImageFolder layout) as a dataset: ``data=folder data.data_dir=<folder>``.

One subfolder per class, its name the class name (classes in sorted order). Either ``train/`` (and
optionally ``val/``, ``test/``) holding the class folders, or the class folders directly, split into
train/val/test by seeded, per-class fractions. Every file is decoded once by
:func:`litvision.data.images.read_image` (threads over all cores) into the uint8 tensors the built-in
datasets use, and kept in a cache file in the folder, keyed by the files' names, sizes and modification
times and by the decode settings: a second run loads it in seconds, a changed folder is decoded again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from litvision.data import audit as data_audit
from litvision.data.datamodule import ImageDataModule
from litvision.data.folder_files import (
    CACHE_VERSION,
    SPLIT_FOLDERS,
    FileList,
    ImageFileDataset,
    atomic_save,
    collate_skipping,
    decode_all,
    fingerprint,
    per_channel_stats,
    scan_folder,
    stratified_carve,
)
from litvision.data.normalization import Normalization
from litvision.support.errors import DataError
from litvision.support.options import check_folder_options

log = logging.getLogger(__name__)

CACHE_PREFIX = ".litvision-cache"
STATS_SAMPLE = 2000  # training images decoded for mean/std on the dataloader path


class FolderDataModule(ImageDataModule):
    """Images in class folders, decoded once into in-memory uint8 splits (or per batch with loader=dataloader).

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
        in_channels: int = 3,
        image_size: int = 64,
        resize: str = "crop",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        on_bad_image: str = "skip",
        cache: bool = True,
        decode_threads: int | None = None,
        **kwargs,
    ):
        found = check_folder_options(
            data_dir,
            num_classes=num_classes,
            class_names=class_names,
            in_channels=in_channels,
            image_size=image_size,
            resize=resize,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            mean=mean,
            std=std,
            on_bad_image=on_bad_image,
            decode_threads=decode_threads,
        )
        self.native_shape = (in_channels, image_size)  # what read_image produces
        self.given_stats = mean is not None and std is not None
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
        self.decode_threads = decode_threads or os.cpu_count() or 1
        self.files: FileList | None = None
        self.split_positions: dict[str, torch.Tensor] = {}  # split -> positions into self.files
        self.skipped: list[str] = []  # "<path>: not a readable image (...)" per skipped file

    def prepare_data(self) -> None:
        """Nothing to download: the folder is the data."""

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
        names = {}  # each split's file paths, so the data audit names the duplicates it finds
        for split, positions in self.split_positions.items():
            kept = positions[ok[positions]]
            self.splits[split] = (images[kept], self.files.labels[kept])
            names[split] = [str(self.files.paths[i]) for i in kept.tolist()]
        if not len(self.splits["train"][0]):
            raise DataError(f"{self.data_dir}: none of the training files is a readable image")
        data_audit.run(self, names)  # class counts, duplicates across splits; drop_duplicates=test
        if not self.given_stats:
            self._set_stats(per_channel_stats(self.splits["train"][0]))

    def _settings(self) -> str:
        return f"{self.in_channels}x{self.image_size}-{self.resize}"

    def _decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every listed file decoded, from the cache when it matches; bad files reported (or raised)."""
        paths = self.files.paths
        key = fingerprint(paths, self.data_dir, self._settings())
        cache = self.data_dir / f"{CACHE_PREFIX}-{self._settings()}-{key}.pt"
        payload = self._load_cache(cache, key) if self.use_cache else None
        if payload is None:
            started = time.perf_counter()
            log.info("decoding %d files from %s (%d threads)", len(paths), self.data_dir, self.decode_threads)
            images, ok, errors = decode_all(paths, self.in_channels, self.image_size, self.resize, self.decode_threads)
            seconds = time.perf_counter() - started
            log.info("decoded %d files in %.1f s (%.0f images/s)", len(paths), seconds, len(paths) / max(seconds, 1e-9))
            payload = {"version": CACHE_VERSION, "key": key, "images": images, "ok": ok, "errors": errors}
            if self.use_cache and not (errors and self.on_bad_image == "error"):
                self._write_cache(cache, payload)
        images, ok, errors = payload["images"], payload["ok"], list(payload["errors"])
        if errors:
            if self.on_bad_image == "error":
                more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
                raise DataError(f"{errors[0]}{more}; data.on_bad_image=skip leaves such files out")
            self.skipped = errors
            log.warning("skipped %d unreadable file(s):\n  %s", len(errors), "\n  ".join(errors))
        return images, ok

    def _load_cache(self, cache: Path, key: str) -> dict | None:
        if not cache.is_file():
            return None
        started = time.perf_counter()
        try:
            payload = torch.load(cache, weights_only=True, mmap=True)  # pages read as the splits are copied
            if not isinstance(payload, dict) or payload.get("key") != key or payload.get("version") != CACHE_VERSION:
                return None
            if len(payload["images"]) != len(self.files.paths):
                return None
        except Exception as err:  # a damaged cache is decoded again, never trusted
            log.warning("ignoring the unreadable cache %s (%s)", cache, type(err).__name__)
            return None
        log.info(
            "loaded %d decoded images from %s in %.1f s", len(payload["images"]), cache, time.perf_counter() - started
        )
        return payload

    def _write_cache(self, cache: Path, payload: dict) -> None:
        try:
            atomic_save(payload, cache)
        except OSError as err:  # a read-only folder: the run goes on, the next one decodes again
            log.warning("could not write the cache %s (%s)", cache, err.strerror or err)
            return
        for stale in self.data_dir.glob(f"{CACHE_PREFIX}-{self._settings()}-*.pt"):
            if stale != cache:  # the same settings for an older state of the folder
                stale.unlink(missing_ok=True)

    def _set_stats(self, stats: tuple[list[float], list[float]]) -> None:
        mean, std = stats
        self.normalization = Normalization(mean, std)
        log.info("data mean %s, std %s (from the training split)", _rounded(mean), _rounded(std))

    # -- the statistics are data state: saved in every checkpoint -------------------------------
    def state_dict(self) -> dict[str, list[float]]:
        """``{"mean", "std"}`` the batches are normalized with.

        Lightning saves it in each checkpoint under this class's name, and
        :func:`litvision.support.checkpoint.saved_configs` puts it into the data config that eval,
        predict and export read, so they normalize as training did.
        """
        return self.normalization.stats()

    def load_state_dict(self, state_dict: dict) -> None:
        """Resuming or testing from a checkpoint: its statistics, not the ones the folder gives today.

        Called after :meth:`setup`; the weights were trained with the saved values, which differ from the
        recomputed ones only if the folder changed since. Statistics given in the config stay.
        """
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
        images, ok, _ = decode_all(paths, self.in_channels, self.image_size, self.resize, self.decode_threads)
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
