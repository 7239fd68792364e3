"""Checkpoints written whole or not at all: the ``trainer.plugins`` entry of conf/trainer/default.yaml.

Lightning's own writer stages a checkpoint in the system temporary folder and moves it into place,
which is a copy into the final file when that folder is on another file system (a tmpfs ``/tmp``, a
cluster's network-mounted logs): a kill during that copy left a truncated ``last.ckpt``.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from litvision.support.atomic import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file beside its target, flushed to disk, then renamed over it;
    reads every checkpoint weights-only.

    The rename is atomic on a local or network file system, so a reader (the next resume) sees the old
    file or the new one, never part of one. Local paths only; remote URLs go to Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_open(path, "wb") as handle:
            torch.save(checkpoint, handle)

    def load_checkpoint(self, path, map_location: Any | None = None, weights_only: bool | None = None) -> dict:
        # Always weights-only: a checkpoint is data (Lightning passes None, which torch < 2.6 read as a full unpickle).
        return super().load_checkpoint(path, map_location=map_location, weights_only=True)
