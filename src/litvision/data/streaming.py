"""Chunked datasets streamed with LitData: ``data=streaming data.data_dir=<folder or s3://...>``.

``python scripts/stream_convert.py data=<any data config> output=<dir>`` writes ``<dir>/train``,
``<dir>/val`` and ``<dir>/test`` with ``litdata.optimize`` (uint8 ``(C, H, W)`` images and int labels
in chunks) and ``<dir>/litvision.json`` (class names, channels, size, mean and std, the source).
Training reads them through ``litdata.StreamingDataset``/``StreamingDataLoader``: chunks are fetched
(from a local disk or an object store) as they are needed, shuffled with the seed, and every rank
gets the same number of training examples (LitData drops the remainder under DDP). Batches arrive as
uint8, so normalization and the on-device augmentation are those of every other dataset. The data
position travels in the data module's checkpoint state as for every dataset, so a run stopped
mid-epoch continues there with the same order.

LitData is an optional extra (``pip install -e ".[streaming]"``), imported only here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from litvision.data.datamodule import ImageDataModule, _ResumableBatchLoader
from litvision.support.errors import DataError, LitvisionError

log = logging.getLogger(__name__)

INFO_FILE = "litvision.json"
SPLITS = ("train", "val", "test")
EXTRA = 'pip install -e ".[streaming]"'


def import_litdata():
    try:
        import litdata
    except ImportError:
        raise LitvisionError(f"data=streaming needs litdata: {EXTRA}") from None
    return litdata


def is_url(location: str) -> bool:
    return "://" in str(location)


def read_info(data_dir: str) -> dict | None:
    """``litvision.json`` of a local converted dataset (None for an object-store URL or a missing file)."""
    if not data_dir or is_url(data_dir):
        return None
    try:
        return json.loads((Path(data_dir).expanduser() / INFO_FILE).read_text())
    except (OSError, ValueError):
        return None


def _collate(samples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([torch.as_tensor(sample["image"], dtype=torch.uint8) for sample in samples])
    return images, torch.tensor([int(sample["label"]) for sample in samples], dtype=torch.int64)


class StreamingDataModule(ImageDataModule):
    """Splits converted by ``scripts/stream_convert.py``, streamed by LitData (see the module doc).

    ``num_classes``, ``class_names``, ``in_channels``, ``image_size``, ``mean`` and ``std`` default to
    the dataset's ``litvision.json`` (the data config reads it when composing; give them for a URL).
    ``cache_dir``: where LitData keeps the chunks of a remote dataset (null: its default).
    """

    dataset = "streaming"

    def __init__(
        self,
        data_dir: str | None = None,
        num_classes: int | None = None,
        class_names: Sequence[str] | None = None,
        in_channels: int | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        cache_dir: str | None = None,
        **kwargs,
    ):
        if not data_dir:
            raise DataError("data=streaming needs data.data_dir=<folder or URL written by scripts/stream_convert.py>")
        self.location = str(data_dir).rstrip("/")
        info = read_info(self.location) or {}
        if not info and not is_url(self.location):
            raise DataError(
                f"{self.location}/{INFO_FILE} is missing: convert a dataset first with "
                f"python scripts/stream_convert.py data=<data config> output={self.location}"
            )
        given = dict(num_classes=num_classes, class_names=class_names, in_channels=in_channels)
        given.update(image_size=image_size, mean=mean, std=std)
        facts = {key: info.get(key) if value is None else value for key, value in given.items()}
        missing = [key for key, value in facts.items() if value is None]
        if missing:
            raise DataError(f"data=streaming from {self.location} needs data.{', data.'.join(missing)}")
        self.native_shape = (int(facts["in_channels"]), int(info.get("image_size", facts["image_size"])))
        for key in ("val_size", "search_dirs", "download", "loader", "keep_on_device"):
            kwargs.pop(key, None)  # the splits were fixed when the dataset was converted
        super().__init__(data_dir=self.location, val_size=0, download=False, **facts, **kwargs)
        self.cache_dir = cache_dir
        self.sizes = dict(info.get("splits", {}))
        import_litdata()  # a missing extra fails now, in one line

    def prepare_data(self) -> None:
        """Nothing to prepare: LitData fetches chunks while it reads."""

    def setup(self, stage: str | None = None) -> None:
        """Nothing is loaded: each loader opens its split's index."""

    def _loader(self, split: str, train: bool):
        litdata = import_litdata()
        location = f"{self.location}/{split}"
        try:
            dataset = litdata.StreamingDataset(
                location, cache_dir=self.cache_dir, shuffle=train, seed=self.shuffle_seed, drop_last=train or None
            )
        except (AssertionError, FileNotFoundError, ValueError) as err:
            raise DataError(f"{location}: not a dataset written by scripts/stream_convert.py ({err})") from None
        loader = litdata.StreamingDataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=torch.cuda.is_available(),
        )
        if not train or self.trainer is None:
            return loader
        world = self.trainer.world_size
        return _ResumableBatchLoader(_StreamedBatches(loader, len(dataset), world), self)

    def state_dict(self) -> dict:
        """The data position (see :meth:`ImageDataModule.state_dict`) and the normalization statistics."""
        return {**super().state_dict(), **self.normalization.stats()}


class _EpochSampler:
    """What Lightning's per-epoch ``set_epoch`` call finds: the epoch, for LitData's seeded shuffle."""

    def __init__(self, examples: int, world_size: int):
        self.examples, self.world_size, self.epoch = examples, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.examples  # this rank's examples per epoch


class _StreamedBatches:
    """A StreamingDataLoader behind the interface :class:`_ResumableBatchLoader` resumes.

    Each epoch is LitData's epoch ``epoch + 1`` (its count starts at 1), whether the run started there
    or resumed: the shuffle is that of an uninterrupted run. A resumed epoch reads past the examples
    already trained on.
    """

    def __init__(self, loader, examples: int, world_size: int):
        self.loader, self.batch_size = loader, loader.batch_size
        self.sampler = _EpochSampler(examples, world_size)

    def __len__(self) -> int:
        return len(self.loader)

    def batches(self, skip_samples: int = 0):
        self.loader.current_epoch = self.sampler.epoch  # LitData adds one as the iteration starts
        for images, labels in self.loader:
            if skip_samples >= len(labels):
                skip_samples -= len(labels)
                continue
            yield images[skip_samples:], labels[skip_samples:]
            skip_samples = 0
