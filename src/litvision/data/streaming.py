"""Chunked datasets streamed with LitData: ``data=streaming data.data_dir=<folder or s3://...>``.

``python scripts/stream_convert.py data=<any data config> output=<dir>`` writes ``<dir>/train``,
``<dir>/val`` and ``<dir>/test`` with ``litdata.optimize`` (uint8 ``(C, H, W)`` images and int labels
in chunks) and ``<dir>/litvision.json`` (class names, channels, size, mean and std, the source).
Training reads them through ``litdata.StreamingDataset``/``StreamingDataLoader``: chunks are fetched
(from a local disk or an object store) as they are needed, shuffled with the seed, and every rank
gets the same number of training examples (LitData drops the last partial batch, and the remainder
under DDP; a training split smaller than one batch on every rank is refused, not trained for 0
steps). Batches arrive as uint8, so normalization and the on-device augmentation are those of every
other dataset. The data position travels in the data module's checkpoint state as for every dataset,
so a run stopped mid-epoch continues there with the same order.

A LitData folder is untrusted data (:mod:`litvision.data.streaming_checks`): its ``litvision.json``
and each split's ``index.json`` are checked before LitData is given the folder (an index of another
format, ``pickle`` say, would have LitData unpickle each sample), and each sample as it is read.

LitData is an optional extra (``pip install -e ".[streaming]"``), imported only here.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from pathlib import Path

import torch

from litvision.data.datamodule import ImageDataModule, _ResumableBatchLoader
from litvision.data.streaming_checks import (
    NOT_CONVERTED,
    SPLITS,
    ImageSerializer,
    LabelSerializer,
    check_index,
    check_info,
    read_json,
    refusal,
)
from litvision.support.errors import DataError, LitvisionError, first_line

log = logging.getLogger(__name__)

INFO_FILE = "litvision.json"
EXTRA = 'pip install -e ".[streaming]"'
__all__ = ["INFO_FILE", "SPLITS", "StreamingDataModule", "import_litdata", "read_info"]


def import_litdata():
    try:
        import litdata
    except ImportError:
        raise LitvisionError(f"data=streaming needs litdata: {EXTRA}") from None
    return litdata


def is_url(location: str) -> bool:
    return "://" in str(location)


def read_info(data_dir: str) -> dict | None:
    """``litvision.json`` of a local converted dataset, checked (None for an object-store URL or a missing file)."""
    if not data_dir or is_url(data_dir):
        return None
    path = Path(data_dir).expanduser() / INFO_FILE
    if not path.exists():
        return None
    return check_info(read_json(path, INFO_FILE), path)


class _Collate:
    """The loaders' collate, in their workers: uint8 images and int64 labels, or why the samples are not a batch.

    The reason is returned as a string and raised in the main process (:func:`_checked`): raised in a
    worker it would reach the user as that worker's traceback.
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def __call__(self, samples: list) -> tuple[torch.Tensor, torch.Tensor] | str:
        reason = refusal(samples, self.num_classes)
        if reason is not None:
            return reason
        images = torch.stack([sample["image"] for sample in samples])
        return images, torch.tensor([sample["label"] for sample in samples], dtype=torch.int64)


# What LitData raises on chunk bytes it cannot parse (struct.error, say), also re-raised from a loader
# worker with that worker's traceback as the message.
_READ_ERRORS = (struct.error, ValueError, KeyError, IndexError, TypeError, OverflowError, RuntimeError, OSError)


def _read_error(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if "Original Traceback" in str(err) and lines:  # from a worker: its last line is the original error
        return lines[-1][:200]
    kind = type(err)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    return f"{name}: {first_line(err)}"


def _checked(loader, location: str):
    """``loader``'s batches; a sample not of this dataset or a chunk LitData cannot read is one :class:`DataError`."""
    batches = iter(loader)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except _READ_ERRORS as err:
            raise DataError(f"{location}: reading its chunks failed: {_read_error(err)}") from None
        if isinstance(batch, str):
            raise DataError(f"{location}: {batch}; {NOT_CONVERTED}")
        yield batch


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
        native = (facts["in_channels"], info.get("image_size", facts["image_size"]))
        if not all(isinstance(value, int) and not isinstance(value, bool) for value in native):
            raise DataError(f"data.in_channels and data.image_size must be integers (got {native[0]!r}, {native[1]!r})")
        self.native_shape = native
        for key in ("val_size", "search_dirs", "download", "loader", "keep_on_device"):
            kwargs.pop(key, None)  # the splits were fixed when the dataset was converted
        super().__init__(data_dir=self.location, val_size=0, download=False, **facts, **kwargs)
        self.cache_dir = cache_dir
        self.sizes = dict(info.get("splits", {}))  # examples per split, as stream_convert wrote them
        import_litdata()  # a missing extra fails now, in one line

    def prepare_data(self) -> None:
        """Nothing to prepare: LitData fetches chunks while it reads."""

    def setup(self, stage: str | None = None) -> None:
        """Nothing is loaded: each loader opens its split's index."""

    def _dataset(self, location: str, train: bool):
        """LitData's dataset of one split and its number of examples, its index checked first (for a URL: as
        soon as LitData fetched it)."""
        litdata = import_litdata()
        examples = self.sizes.get(location.rsplit("/", 1)[-1])
        if not is_url(location):
            examples = check_index(Path(location).expanduser(), examples)
            location = str(Path(location).expanduser())  # LitData reads the folder just checked
        shape = (self.native_shape[0], self.native_shape[1], self.native_shape[1])
        serializers = {"tensor": ImageSerializer(shape), "int": LabelSerializer()}
        try:
            dataset = litdata.StreamingDataset(
                location,
                cache_dir=self.cache_dir,
                shuffle=train,
                seed=self.shuffle_seed,
                drop_last=train or None,
                serializers=serializers,
            )
        except (AssertionError, FileNotFoundError, ValueError) as err:
            raise DataError(f"{location}: {NOT_CONVERTED} ({first_line(err)})") from None
        if is_url(location):  # LitData fetched index.json into its cache; no chunk is read before the check
            cached = getattr(dataset.input_dir, "path", None)
            if not cached:
                raise DataError(f"{location}: LitData kept no index.json to check; {NOT_CONVERTED}")
            examples = check_index(Path(cached), examples, local=False, shown=location)
        return dataset, examples

    def _loader(self, split: str, train: bool):
        litdata = import_litdata()
        location = f"{self.location}/{split}"
        dataset, examples = self._dataset(location, train)
        batch_size = self.batch_size if train else self.eval_batch_size
        loader = litdata.StreamingDataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            collate_fn=_Collate(self.num_classes),
            pin_memory=torch.cuda.is_available(),
        )
        world = self.trainer.world_size if self.trainer is not None else 1
        if train and len(dataset) == 0:  # LitData keeps whole batches on each rank: not one fits
            fits = f"data.batch_size<={examples // world}" if examples >= world else f"at most {examples} process(es)"
            raise DataError(
                f"{location} has {examples} training example(s): fewer than one batch of data.batch_size={batch_size} "
                f"per process ({world} process(es)), so an epoch would take 0 steps; use {fits}"
            )
        streamed = _StreamedBatches(loader, location, len(dataset), world)
        if not train or self.trainer is None:
            return streamed
        return _ResumableBatchLoader(streamed, self)

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
    """A StreamingDataLoader behind the interface :class:`_ResumableBatchLoader` resumes, its batches checked
    (:func:`_checked`); also what the evaluation loaders are.

    Each epoch is LitData's epoch ``epoch + 1`` (its count starts at 1), whether the run started there
    or resumed: the shuffle is that of an uninterrupted run. A resumed epoch reads past the examples
    already trained on.
    """

    def __init__(self, loader, location: str, examples: int, world_size: int):
        self.loader, self.location, self.batch_size = loader, location, loader.batch_size
        self.sampler = _EpochSampler(examples, world_size)
        self.dataset = loader.dataset  # an IterableDataset: what tells Lightning that its order is LitData's

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return self.batches()

    def batches(self, skip_samples: int = 0):
        self.loader.current_epoch = self.sampler.epoch  # LitData adds one as the iteration starts
        for images, labels in _checked(self.loader, self.location):
            if skip_samples >= len(labels):
                skip_samples -= len(labels)
                continue
            yield images[skip_samples:], labels[skip_samples:]
            skip_samples = 0
