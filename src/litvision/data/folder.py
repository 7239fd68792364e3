"""Image folders (torchvision's ImageFolder layout) as a dataset: ``data=folder data.data_dir=<folder>``.

One subfolder per class, its name the class name (classes in sorted order). Either ``train/`` (and
optionally ``val/``, ``test/``) holding the class folders, or the class folders directly, split into
train/val/test by seeded, per-class fractions. Every file is decoded once by
:func:`litvision.data.images.read_image` (threads over all cores) into the uint8 tensors the built-in
datasets use, and kept in a cache file in the folder, keyed by the files' names, sizes and modification
times and by the decode settings: a second run loads it in seconds, a changed folder is decoded again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

from litvision.data.datamodule import ImageDataModule, _per_channel
from litvision.data.images import RESIZE_MODES, read_image
from litvision.errors import DataError

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")
CACHE_PREFIX = ".litvision-cache"
CACHE_VERSION = 1  # bump when the cache's content or the decoder's output changes
STATS_SAMPLE = 2000  # training images decoded for mean/std on the dataloader path


# -- scanning ----------------------------------------------------------------------------------
def _visible_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def class_root(data_dir: str | Path) -> Path:
    """The folder holding the class folders: ``<data_dir>/train`` in the split layout, else ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    return data_dir / "train" if (data_dir / "train").is_dir() else data_dir


def folder_class_names(data_dir: str | Path) -> list[str]:
    """Sorted class-folder names (hidden folders skipped); raises :class:`DataError` when there are none."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(
            f"data.data_dir={data_dir} is not a folder; data=folder needs a folder with one subfolder of images "
            f"per class (or train/, val/, test/ holding such subfolders)"
        )
    names = [p.name for p in _visible_dirs(class_root(data_dir))]
    if not names:
        raise DataError(f"{class_root(data_dir)} has no class folders: put each class's images in a subfolder")
    return names


def _resolve_or_none(function, data_dir):
    # A resolver must not raise (OmegaConf wraps it in a multi-line error): None here, and the data module
    # reports the problem in one line when it is built.
    try:
        return function(data_dir) if data_dir not in (None, "", "???") else None
    except (DataError, OSError):
        return None


def register_resolvers() -> None:
    """``${litvision.folder_classes:<dir>}`` and ``${litvision.folder_class_names:<dir>}`` for the data configs.

    Registered when Hydra scans its plugins (``hydra_plugins/litvision_resolvers``) and when this module is
    imported, so ``data.num_classes`` is known when the model config interpolates it.
    """
    resolvers = {
        "litvision.folder_classes": lambda data_dir: _resolve_or_none(lambda d: len(folder_class_names(d)), data_dir),
        "litvision.folder_class_names": lambda data_dir: _resolve_or_none(folder_class_names, data_dir),
    }
    for name, resolver in resolvers.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


register_resolvers()


@dataclass
class FileList:
    """Every candidate file: path, label and the split folder it came from ("train", "val", "test")."""

    paths: list[Path]
    labels: torch.Tensor
    origin: list[str]


def scan_folder(data_dir: Path, class_names: Sequence[str]) -> FileList:
    """All non-hidden files in the class folders, in a fixed order (split, class, file name)."""
    split_layout = (data_dir / "train").is_dir()
    roots = [(name, data_dir / name) for name in SPLIT_FOLDERS if (data_dir / name).is_dir()]
    if not split_layout:
        roots = [("train", data_dir)]
    index = {name: label for label, name in enumerate(class_names)}
    paths, labels, origin = [], [], []
    for split, root in roots:
        for folder in _visible_dirs(root):
            if folder.name not in index:
                raise DataError(
                    f"{folder}: class {folder.name!r} is not among the classes of {class_root(data_dir)} "
                    f"({', '.join(class_names)})"
                )
            files = sorted(
                (entry.path for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith(".")),
            )
            if split == "train" and not files:
                raise DataError(f"{folder}: empty class folder (class {folder.name!r} has no files)")
            paths += [Path(f) for f in files]
            labels += [index[folder.name]] * len(files)
            origin += [split] * len(files)
    if not paths:
        raise DataError(f"{data_dir}: no image files in the class folders")
    return FileList(paths, torch.tensor(labels, dtype=torch.int64), origin)


# -- splits ------------------------------------------------------------------------------------
def stratified_carve(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) positions: ``fraction`` of each class (at least one where the class has two or more)."""
    generator = torch.Generator().manual_seed(seed)
    kept, carved = [], []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(len(members) * fraction)
        if fraction > 0 and len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        carved.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(carved).sort().values


# -- decoding and the cache ----------------------------------------------------------------------
def fingerprint(paths: Sequence[Path], root: Path, settings: str) -> str:
    """A hash of the files' relative names, sizes and modification times and of the decode settings."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{settings}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\n{path.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def decode_all(
    paths: Sequence[Path], channels: int, size: int, resize: str, threads: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """uint8 images ``(N, C, size, size)``, a bool mask of the files that decoded and the failures' messages.

    Threads, not processes: Pillow releases the GIL while it decodes and resizes, and the images land
    straight in the shared tensor.
    """
    images = torch.zeros(len(paths), channels, size, size, dtype=torch.uint8)
    ok = torch.ones(len(paths), dtype=torch.bool)
    errors: list[str | None] = [None] * len(paths)

    def work(chunk: range) -> None:
        for i in chunk:
            try:
                images[i] = read_image(paths[i], channels, size, resize)
            except DataError as err:
                ok[i], errors[i] = False, str(err)

    chunk = 64
    chunks = [range(start, min(start + chunk, len(paths))) for start in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(work, chunks))
    return images, ok, [e for e in errors if e is not None]


def _atomic_save(payload: dict, target: Path) -> None:
    scratch = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        torch.save(payload, scratch)
        os.replace(scratch, target)
    finally:
        scratch.unlink(missing_ok=True)


def per_channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Mean and std per channel of uint8 ``images`` scaled to [0, 1], exact, from each channel's histogram.

    A histogram of 256 counts per channel: no float copy of the split, and no rounding in long sums.
    """
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum().clamp_min(1)
        mean = (counts * values).sum() / total
        variance = ((counts * values.square()).sum() / total - mean.square()).clamp_min(0)
        means.append(float(mean) / 255)
        stds.append(max(float(variance.sqrt()) / 255, 1e-3))  # a flat channel: std stays > 0
    return means, stds


class ImageFileDataset(Dataset):
    """``(uint8 image, label)`` per file, decoded on access (in DataLoader workers): data larger than memory.

    In skip mode an unreadable file yields None (logged with its path), which :func:`collate_skipping` drops.
    """

    def __init__(self, paths: Sequence[Path], labels: torch.Tensor, channels: int, size: int, resize: str, skip: bool):
        self.paths, self.labels = [str(p) for p in paths], labels
        self.channels, self.size, self.resize, self.skip = channels, size, resize, skip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = read_image(self.paths[index], self.channels, self.size, self.resize)
        except DataError as err:
            if not self.skip:
                raise
            log.warning("skipped %s", err)
            return None
        return image, int(self.labels[index])


def collate_skipping(samples):
    samples = [s for s in samples if s is not None]
    if not samples:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples], dtype=torch.int64)


class FolderDataModule(ImageDataModule):
    """Images in class folders, decoded once into in-memory uint8 splits (or per batch with loader=dataloader).

    ``num_classes`` and ``class_names`` default to the folder's class folders (the data config resolves
    them with ``${litvision.folder_classes:...}``); given ones must agree with the folder. ``mean`` and
    ``std`` null: computed from the training split. ``on_bad_image``: "skip" (one warning listing every
    unreadable file) or "error".
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
        if not data_dir:
            raise DataError("data=folder needs data.data_dir=<folder with one subfolder of images per class>")
        if in_channels not in (1, 3):
            raise DataError(f"data.in_channels must be 1 or 3 for data=folder (got {in_channels!r})")
        if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
            raise DataError(f"data.image_size must be an integer >= 1 (got {image_size!r})")
        if resize not in RESIZE_MODES:
            raise DataError(f"data.resize must be one of {', '.join(RESIZE_MODES)} (got {resize!r})")
        if on_bad_image not in ("skip", "error"):
            raise DataError(f"data.on_bad_image must be 'skip' or 'error' (got {on_bad_image!r})")
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise DataError(f"data.{name} must be in [0, 1) (got {value!r})")
        if val_fraction + test_fraction >= 1:
            raise DataError(f"data.val_fraction + data.test_fraction must be < 1 (got {val_fraction + test_fraction})")
        if decode_threads is not None and (not isinstance(decode_threads, int) or decode_threads < 1):
            raise DataError(f"data.decode_threads must be null or an integer >= 1 (got {decode_threads!r})")
        found = folder_class_names(data_dir)
        if len(found) < 2:
            raise DataError(
                f"{class_root(data_dir)} has one class folder ({found[0]}); classification needs two or more"
            )
        if num_classes is not None and num_classes != len(found):
            raise DataError(
                f"data.num_classes={num_classes} but {class_root(data_dir)} has {len(found)} class folders "
                f"({', '.join(found)}); leave data.num_classes unset to take it from the folder"
            )
        if class_names and list(class_names) != found:
            raise DataError(
                f"data.class_names {list(class_names)} differ from the class folders of {class_root(data_dir)} "
                f"({found}); leave data.class_names unset to take them from the folder"
            )
        self.native_shape = (in_channels, image_size)  # what read_image produces
        self.given_stats = mean is not None and std is not None
        if (mean is None) != (std is None):
            raise DataError("data.mean and data.std: give both or neither (neither: computed from the training split)")
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
        for split, positions in self.split_positions.items():
            kept = positions[ok[positions]]
            self.splits[split] = (images[kept], self.files.labels[kept])
        if not len(self.splits["train"][0]):
            raise DataError(f"{self.data_dir}: none of the training files is a readable image")
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
            _atomic_save(payload, cache)
        except OSError as err:  # a read-only folder: the run goes on, the next one decodes again
            log.warning("could not write the cache %s (%s)", cache, err.strerror or err)
            return
        for stale in self.data_dir.glob(f"{CACHE_PREFIX}-{self._settings()}-*.pt"):
            if stale != cache:  # the same settings for an older state of the folder
                stale.unlink(missing_ok=True)

    def _set_stats(self, stats: tuple[list[float], list[float]]) -> None:
        mean, std = stats
        self.mean, self.std, self._affine = _per_channel(mean), _per_channel(std), None
        log.info("data mean %s, std %s (from the training split)", _rounded(mean), _rounded(std))
        # The checkpoint's data config then holds the values, so evaluation and prediction use the same ones.
        module = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        data_config = getattr(module, "hparams", {}).get("data_config") if module is not None else None
        if isinstance(data_config, dict):
            data_config["mean"], data_config["std"] = _rounded(mean), _rounded(std)

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
