"""Epoch time and training throughput as scalars.

Lightning's ThroughputMonitor reports per-step rates and needs a batch-size function; this callback
gives what a person compares between runs: the wall time of a whole epoch (validation included) and
the epoch's training images per second.
"""

from __future__ import annotations

import time

from lightning import Callback, LightningModule, Trainer


class EpochTimer(Callback):
    """Logs ``time/epoch_s`` and ``time/images_per_s`` once per training epoch.

    ``time/epoch_s`` is the wall time of the whole epoch, its validation included: what one waits for.
    ``time/images_per_s`` counts training images over the training batches' time only (first batch
    fetched to last step done), so validation does not blur the throughput. Under DDP the epoch time
    is the slowest rank's and the throughput the sum over ranks. Logged with ``self.log``, so the CSV
    logger and ``callback_metrics`` get them too.
    """

    def __init__(self) -> None:
        self._epoch_start = self._last_batch_end = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._images = 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        self._images += len(batch[0])
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._images == 0:
            return
        epoch_s = time.perf_counter() - self._epoch_start
        train_s = max(self._last_batch_end - self._epoch_start, 1e-9)
        pl_module.log("time/epoch_s", epoch_s, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")
        pl_module.log(
            "time/images_per_s", self._images / train_s, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="sum"
        )
