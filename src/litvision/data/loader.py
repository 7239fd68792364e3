"""Batches taken by index: from tensors held in memory, or from a memory-mapped cache by DataLoader workers.

Both loaders draw the same seeded order, the same DDP shares and resume mid-epoch the same way, so a
run gives the same batches whichever home the data has.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset


class EpochSampler:
    """This rank's example order for one epoch.

    The permutation comes from ``seed + epoch`` so every rank draws the same one and takes a disjoint
    stride of it; Lightning calls :meth:`set_epoch` at each epoch start (also when resuming), so a
    resumed run continues the data order. ``even``: every rank gets the same number of examples, the
    order padded by repeating its first examples as torch's ``DistributedSampler`` does, so no rank
    takes a step the others do not (a training step under DDP is a collective: an extra one waits
    forever). Evaluation keeps exact, unpadded shares: its metrics are reduced once, at the epoch end.
    """

    def __init__(self, size: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1, even: bool = False):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.even = rank, world_size, even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        padding = self._padded_size() - self.size
        if padding:
            order = torch.cat([order, order.repeat(padding // max(self.size, 1) + 1)[:padding]])
        return order[self.rank :: self.world_size]

    def _padded_size(self) -> int:
        if not self.even or self.world_size == 1:
            return self.size
        return -(-self.size // self.world_size) * self.world_size

    def __len__(self) -> int:
        return len(range(self.rank, self._padded_size(), self.world_size))


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

    def batch_indices(self, skip_samples: int = 0, device=None) -> list[torch.Tensor]:
        """This epoch's batches of indices, starting ``skip_samples`` examples into this rank's order."""
        order = self.sampler.indices().to(device or "cpu")
        if self.drop_last:
            order = order[: len(self) * self.batch_size]
        return list(order[skip_samples:].split(self.batch_size))

    def batches(self, skip_samples: int = 0):
        """This epoch's batches from example ``skip_samples`` on; the skipped ones are never gathered."""
        for batch_indices in self.batch_indices(skip_samples, self.images.device):
            # index_select, not images[batch_indices]: the same copy through a much leaner CPU kernel.
            yield self.images.index_select(0, batch_indices), self.labels.index_select(0, batch_indices)

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1


class _GatheredBatches(Dataset):
    """Item ``i`` is batch ``i``: its rows gathered from the mapped images (in a DataLoader worker)."""

    def __init__(self, images, labels: torch.Tensor, batches: list[torch.Tensor]):
        self.images, self.labels, self.batches = images, labels, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        rows = self.batches[index]
        return self.images.gather(rows), self.labels.index_select(0, rows)


class MappedBatchLoader(TensorBatchLoader):
    """The same batches as :class:`TensorBatchLoader`, gathered from a memory-mapped cache in ``num_workers``
    DataLoader workers (pinned memory on a GPU machine), for data that does not fit in memory.

    ``images`` is a :class:`litvision.data.folder_files.MappedImages`: its rows are read through the
    page cache, which the ranks of one node share. The DataLoader returns batches in order, so the
    seeded order, the DDP shares and the mid-epoch resume are those of the in-memory path.
    """

    def __init__(self, images, labels, batch_size, sampler, drop_last: bool = False, num_workers: int = 0):
        super().__init__(images, labels, batch_size, sampler, drop_last)
        self.num_workers = num_workers

    def batches(self, skip_samples: int = 0):
        loader = DataLoader(
            _GatheredBatches(self.images, self.labels, self.batch_indices(skip_samples)),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if self.num_workers else None,
        )
        yield from loader
