"""Batches taken by index from tensors held in memory: no per-image Python in the training loop."""

from __future__ import annotations

import torch


class EpochSampler:
    """This rank's example order for one epoch.

    The permutation comes from ``seed + epoch`` so every rank draws the same one and takes a disjoint
    stride of it; Lightning calls :meth:`set_epoch` at each epoch start (also when resuming), so a
    resumed run continues the data order.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))


class TensorBatchLoader:
    """Iterates ``(images[idx], labels[idx])`` batches; ``images`` stay uint8 until the device converts them."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        sampler: EpochSampler,
        drop_last: bool = False,
    ):
        self.images, self.labels = images, labels
        self.batch_size, self.drop_last = batch_size, drop_last
        # Named like DataLoader's attributes, so Lightning's per-epoch set_epoch call finds the sampler.
        self.sampler, self.batch_sampler = sampler, None

    def __iter__(self):
        return self.batches()

    def batches(self, skip: int = 0):
        """This epoch's batches from batch ``skip`` on; the skipped ones are never gathered."""
        order = self.sampler.indices().to(self.images.device)
        if self.drop_last:
            order = order[: len(self) * self.batch_size]
        for batch_indices in order.split(self.batch_size)[skip:]:
            # index_select, not images[batch_indices]: the same copy through a much leaner CPU kernel.
            yield self.images.index_select(0, batch_indices), self.labels.index_select(0, batch_indices)

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1
