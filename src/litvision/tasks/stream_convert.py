"""The stream_convert task: any data config's splits written as LitData chunks for ``data=streaming``.

``python scripts/stream_convert.py data=<data config> output=<dir>`` builds the data module as
training would (a folder is decoded through its cache, a built-in dataset parsed), then writes each
split with ``litdata.optimize`` in worker processes: uint8 ``(C, H, W)`` images and int labels, so a
streamed batch is the batch the source would give. ``<dir>/litvision.json`` records what the data
config of ``data=streaming`` reads: class names, channels, size, the normalization statistics, the
split sizes and the source. Each split's ``index.json`` is checked as ``data=streaming`` checks it
(:func:`litvision.data.streaming_checks.check_index`), so a LitData that writes another format fails
here, not at training time.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from litvision.data.mapped import MappedImages
from litvision.data.streaming import INFO_FILE, SPLITS, import_litdata
from litvision.data.streaming_checks import check_index
from litvision.support.atomic import write_json
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build

log = logging.getLogger(__name__)

ITEMS_PER_INPUT = 256  # examples one optimize input yields: the unit the workers share


class _Examples:
    """``litdata.optimize``'s function: the examples of one ``(start, stop)`` range of a split.

    A class, so that the worker processes LitData spawns receive it pickled: a mapped split travels
    as its file's path, an in-memory one as its tensor.
    """

    def __init__(self, images, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __call__(self, span: tuple[int, int]):
        rows = torch.arange(*span)
        images = self.images
        chunk = images.gather(rows) if isinstance(images, MappedImages) else images.index_select(0, rows)
        for image, label in zip(chunk, self.labels[span[0] : span[1]].tolist()):
            yield {"image": image.contiguous(), "label": int(label)}


def stream_convert(cfg: DictConfig) -> dict[str, float]:
    """Write ``cfg.output``'s splits and ``litvision.json``; return the number of examples per split."""
    litdata = import_litdata()
    output = Path(str(cfg.output)).expanduser().resolve()
    if output.exists() and any(output.iterdir()):
        raise LitvisionError(f"output={output} is not empty: give a new folder")
    data_config = OmegaConf.to_container(cfg.data, resolve=True)
    if "in_memory" in data_config:
        data_config["in_memory"] = False  # a folder's splits stay mapped: the workers get its path, not its pixels
    datamodule = build(data_config, "data")
    if getattr(datamodule, "loader", "tensor") != "tensor":
        raise LitvisionError("stream_convert reads the decoded splits: leave data.loader at tensor")
    datamodule.prepare_data()
    datamodule.setup("fit")
    workers = int(cfg.num_workers or os.cpu_count() or 1)
    sizes = {}
    for split in SPLITS:
        images, labels = datamodule.splits[split]
        spans = [(start, min(start + ITEMS_PER_INPUT, len(labels))) for start in range(0, len(labels), ITEMS_PER_INPUT)]
        started = time.perf_counter()
        if spans:
            litdata.optimize(
                fn=_Examples(images, labels),
                inputs=spans,
                output_dir=str(output / split),
                num_workers=min(workers, len(spans)),
                chunk_bytes=str(cfg.chunk_bytes),
                verbose=False,
            )
            check_index(output / split, len(labels))
        sizes[split] = len(labels)
        log.info(
            "%s: %d examples written to %s in %.1f s", split, len(labels), output / split, time.perf_counter() - started
        )
    info = {
        "num_classes": datamodule.num_classes,
        "class_names": list(datamodule.class_names),
        "in_channels": datamodule.in_channels,
        "image_size": int(datamodule.splits["train"][0].shape[-1]),
        **datamodule.normalization.stats(),
        "splits": sizes,
        "source": OmegaConf.to_container(cfg.data, resolve=True),
    }
    write_json(output / INFO_FILE, info, indent=1)
    log.info("train on it with: python scripts/train.py data=streaming data.data_dir=%s", output)
    return {f"{split}_examples": float(size) for split, size in sizes.items()}
