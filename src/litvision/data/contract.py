"""What a data module gives the rest of litvision: the contract a LightningDataModule of your own follows.

Subclassing :class:`~litvision.data.datamodule.ImageDataModule` fulfils it. A plain ``LightningDataModule``
works too when it has these attributes and batches of ``(images, labels)``:

- ``num_classes``, ``class_names``: the label space; the model config interpolates ``${data.num_classes}``,
  and the dashboards, reports and predictions name classes by ``class_names``.
- ``in_channels``, ``image_size``: the images' shape after any resizing, what the net is built for.
- ``mean``, ``std``: tensors of one value per channel. Batches reach the model **normalized** with them (the module
  normalizes in ``on_after_batch_transfer``); prediction and export apply the same statistics to raw uint8
  images, from the data config saved in the checkpoint, so they must also be the config's ``data.mean`` and
  ``data.std`` (or restored by the module's ``state_dict``, as the folder module does).
- ``denormalize(images)``: the inverse, for the pictures of the dashboards.

The checkpoint keeps the data config (``data_config``), so ``eval.py`` rebuilds the same module from it:
its constructor takes the config's keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ImageData(Protocol):
    num_classes: int
    class_names: Sequence[str]
    in_channels: int
    image_size: int

    @property
    def mean(self) -> torch.Tensor: ...

    @property
    def std(self) -> torch.Tensor: ...

    def denormalize(self, images: torch.Tensor) -> torch.Tensor: ...
