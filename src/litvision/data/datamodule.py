"""LightningDataModules: each split held once as a uint8 tensor, batches normalized and augmented on device."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import torch
import torch.nn.functional as F
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Subset
from torchvision.transforms import PILToTensor

import litvision.data.audit as data_audit
from litvision.data.audit import check_drop_duplicates
from litvision.data.augment import Augmentation
from litvision.data.datasets import (
    CIFAR10_FILES,
    FASHION_MNIST_FILES,
    MNIST_FILES,
    DatasetFiles,
    ensure_available,
    load_split,
)
from litvision.data.loader import EpochSampler, MappedBatchLoader, TensorBatchLoader
from litvision.data.mapped import MappedImages
from litvision.data.normalization import Normalization
from litvision.data.options import check_augment, check_data_options, check_folds
from litvision.support.arguments import AtLeast, OneOf, check_arguments, locals_without_self
from litvision.support.errors import DataError

log = logging.getLogger(__name__)


class _ResumableBatchLoader:
    """The training loader: after a mid-epoch checkpoint it continues the epoch where it stopped.

    The data module's state in the checkpoint records the epoch, the batches of it done and their
    batch size (:meth:`ImageDataModule.state_dict`); Lightning hands it back before the first batch
    is drawn. The sampler's epoch fixes the order, so skipping the examples those batches took gives
    the batches an uninterrupted run would have seen next, also when the resume asks for a smaller
    ``data.batch_size`` (the examples are counted, not the batches). A larger batch size or another
    number of processes cannot continue that epoch exactly and is refused in one line.
    """

    def __init__(self, inner: TensorBatchLoader, datamodule: ImageDataModule):
        self.inner, self._datamodule = inner, datamodule
        # Named like DataLoader's attributes, so Lightning's per-epoch set_epoch call finds the sampler.
        self.sampler, self.batch_sampler = inner.sampler, None

    def __len__(self) -> int:
        return len(self.inner)

    def _samples_done(self) -> int:
        """Examples of this epoch's order that the resumed checkpoint had trained on (0: none, or a new epoch)."""
        saved = self._datamodule.resume_point
        trainer = self._datamodule.trainer
        if saved is None or not trainer.training:
            return 0
        self._datamodule.resume_point = None  # once: the epochs after it start afresh
        batches, saved_size, saved_world = saved["batches_done"], saved["train_batch_size"], saved["world_size"]
        batch_size, world = self.inner.batch_size, self.sampler.world_size
        if saved["epoch"] != self.sampler.epoch or batches * saved_size >= len(self.sampler) or not batches:
            return 0  # saved at an epoch's end
        # Lightning counts this epoch's batches on from the saved count and ends the epoch when the count
        # reaches the loader's length: a batch size up to the saved one always gets there, a larger one may
        # end it early; and with another number of processes every rank's share of the order changes.
        if saved_world != world or saved_size < batch_size:
            raise DataError(
                f"the checkpoint stopped mid-epoch after {batches} batches of {saved_size} images on {saved_world} "
                f"process(es); its epoch continues only with data.batch_size<={saved_size} on {saved_world} "
                f"process(es) (got {batch_size} on {world}); or resume from a checkpoint saved at an epoch end"
            )
        return batches * saved_size

    def __iter__(self):
        # A generator: the resume point is read when the epoch's first batch is drawn, after Lightning's restore.
        skip = self._samples_done()
        if skip:
            log.info("resuming the epoch after its first %d training images", skip)
        yield from self.inner.batches(skip)

    # Lightning's resumable-loader interface, which marks the loader as resumable (no mid-epoch warning);
    # the position travels in the data module's state, so there is nothing to save here.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


class ImageDataModule(LightningDataModule):
    """Base for image-classification datasets; subclasses name the dataset and its facts.

    The official test split stays the test split; ``val_size`` examples are carved from the training
    split with a generator seeded by ``split_seed``, so the split is the same in every run. With
    ``num_folds`` K, fold ``fold`` of K (stratified by label, seeded by ``split_seed``) is the validation
    split instead (k-fold cross-validation).
    """

    dataset_files: DatasetFiles | None = (
        None  # where the files live, which torchvision class parses them (None: setup's own)
    )
    native_shape: tuple[int, int]  # (channels, side) of the files

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: Annotated[int, AtLeast(1)] = 256,
        eval_batch_size: Annotated[int, AtLeast(1)] | None = None,
        val_size: Annotated[int, AtLeast(0)] = 5000,
        split_seed: Annotated[int, AtLeast(0)] = 0,
        shuffle_seed: Annotated[int, AtLeast(0)] = 0,  # ${seed} by default: train.py draws one for seed=null
        num_classes: Annotated[int, AtLeast(2)] = 10,
        in_channels: Annotated[int, AtLeast(1)] | None = None,
        image_size: Annotated[int, AtLeast(1)] | None = None,
        class_names: Sequence[str] = (),
        mean: Sequence[float] = (0.5,),
        std: Sequence[float] = (0.5,),
        augment: dict | None = None,
        search_dirs: Sequence[str] = (),
        download: bool = True,
        loader: Annotated[str, OneOf("tensor", "dataloader")] = "tensor",
        num_workers: Annotated[int, AtLeast(0)] = 0,
        keep_on_device: bool = True,
        num_folds: Annotated[int, AtLeast(2)] | None = None,
        fold: Annotated[int, AtLeast(0)] = 0,
        audit: bool = False,
        drop_duplicates: str = "none",
    ):
        # Each argument against its annotation above (one line naming data.<argument>), before anything else.
        check_arguments(ImageDataModule.__init__, locals_without_self(locals()), "data", DataError)
        super().__init__()
        check_drop_duplicates(drop_duplicates)
        self.audit, self.drop_duplicates, self.audit_result = audit, drop_duplicates, None  # see data/audit.py
        name = self.dataset_files.name if self.dataset_files else type(self).__name__
        check_data_options(name, self.native_shape, in_channels, image_size, num_classes, class_names, mean, std)
        check_augment(dict(augment or {}), image_size or self.native_shape[1])
        check_folds(num_folds, fold)
        native_channels, native_side = self.native_shape
        self.in_channels, self.image_size = in_channels or native_channels, image_size or native_side
        self.num_folds, self.fold = num_folds, fold
        self.data_dir = Path(data_dir).expanduser()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_size, self.split_seed, self.shuffle_seed = val_size, split_seed, shuffle_seed
        self.num_classes, self.class_names = num_classes, list(class_names)
        self.augment = dict(augment or {})
        self.augmentation = Augmentation(num_classes, **self.augment)
        self.search_dirs, self.download = list(search_dirs), download
        self.loader, self.num_workers, self.keep_on_device = loader, num_workers, keep_on_device
        self.normalization = Normalization(mean, std)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.resume_point: dict | None = None  # from the resumed checkpoint: see state_dict

    # -- files ---------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        ensure_available(self.dataset_files, self.data_dir, self.search_dirs, self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        # Each split is checked against the config: label range, one label per image, the declared shape.
        checks = {"num_classes": self.num_classes, "shape": self.native_shape}
        images, labels = load_split(self.dataset_files, self.data_dir, train=True, **checks)
        train_idx, val_idx = self.split_indices(len(images), labels)
        self.splits["train"] = (images[train_idx], labels[train_idx])
        self.splits["val"] = (images[val_idx], labels[val_idx])
        self.splits["test"] = load_split(self.dataset_files, self.data_dir, train=False, **checks)
        self.audit_splits()

    def audit_splits(self, names: dict[str, list[str]] | None = None) -> None:
        """Class counts and duplicates across splits (``audit``, shown in the report as ``audit_result``);
        with ``drop_duplicates=test``, the test images also in train or val leave the test split."""
        self.audit_result, keep = data_audit.run(self.splits, self.class_names, self.audit, self.drop_duplicates, names)
        if keep is not None and not keep.all():
            images, labels = self.splits["test"]
            self.splits["test"] = (images[keep], labels[keep])

    def split_indices(self, size: int, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(train, val) indices into the official training split, fixed by ``split_seed``.

        With ``num_folds`` set: fold ``fold`` is the validation split (``labels`` stratify the folds).
        """
        if self.num_folds is not None:
            if labels is None:
                raise ValueError("k-fold splits need the labels of the training split")
            return kfold_indices(labels, self.num_folds, self.fold, self.split_seed)
        if self.val_size >= size:
            raise DataError(f"data.val_size={self.val_size} leaves no training data ({size} examples)")
        order = torch.randperm(size, generator=torch.Generator().manual_seed(self.split_seed))
        return order[self.val_size :], order[: self.val_size]

    # -- loaders -------------------------------------------------------------------------------
    def _loader(self, split: str, train: bool):
        batch_size = self.batch_size if train else self.eval_batch_size
        if self.loader == "dataloader":
            return self._torch_dataloader(split, train, batch_size)
        trainer = self.trainer
        device = trainer.strategy.root_device if trainer is not None else None
        if device is not None and self.keep_on_device and _fits_on(device, self.splits[split][0]):
            # The whole uint8 split lives on the GPU: batches are gathered there, nothing crosses PCIe.
            self.splits[split] = tuple(t.to(device) for t in self.splits[split])
        images, labels = self.splits[split]
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        # Training shares are padded to one length: every rank takes the same number of steps.
        sampler = EpochSampler(len(images), train, self.shuffle_seed, rank, world, even=train)
        if isinstance(images, MappedImages):
            loader = MappedBatchLoader(images, labels, batch_size, sampler, num_workers=self.num_workers)
        else:
            loader = TensorBatchLoader(images, labels, batch_size, sampler)
        return _ResumableBatchLoader(loader, self) if train and trainer is not None else loader

    def _torch_dataloader(self, split: str, train: bool, batch_size: int) -> DataLoader:
        """The classic per-image path (torchvision Dataset + DataLoader) for data that does not fit in memory.

        Images stay uint8 (PILToTensor) so normalization and augmentation are the same as on the tensor path.
        """
        parsed = self.dataset_files.parser(str(self.data_dir), train=split != "test", transform=PILToTensor())
        if split != "test":
            train_idx, val_idx = self.split_indices(len(parsed), torch.as_tensor(parsed.targets))
            parsed = Subset(parsed, (train_idx if split == "train" else val_idx).tolist())
        return DataLoader(
            parsed,
            batch_size=batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self):
        return self._loader("train", train=True)

    def val_dataloader(self):
        return self._loader("val", train=False)

    def test_dataloader(self):
        return self._loader("test", train=False)

    def predict_dataloader(self):
        return self._loader("test", train=False)

    # -- state in every checkpoint -------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where training stands in its epoch's data order: the epoch, the batches of it done, their size and
        the number of processes, so that a mid-epoch resume skips exactly the examples already seen."""
        trainer = self.trainer
        if trainer is None:
            return {}
        batches_done = trainer.fit_loop.epoch_loop.batch_idx + 1 if trainer.training else 0
        return {
            "epoch": trainer.current_epoch,
            "batches_done": batches_done,
            "train_batch_size": self.batch_size,
            "world_size": trainer.world_size,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        keys = ("epoch", "batches_done", "train_batch_size", "world_size")
        if all(key in state_dict for key in keys):
            self.resume_point = {key: state_dict[key] for key in keys}

    # -- on the device -------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # the model summary's example_input_array, already float
            return batch
        images, labels = batch
        training = self.trainer is not None and self.trainer.training
        images = self.prepare_batch(images, augment=training)
        # MixUp/CutMix: training labels become soft targets (N, num_classes); val/test/predict keep class indices.
        return self.augmentation.mix(images, labels) if training else (images, labels)

    def prepare_batch(self, images: torch.Tensor, augment: bool) -> torch.Tensor:
        """uint8 batch -> normalized float on the batch's device (+ augmentation for training)."""
        if augment:
            images = self.augmentation.pixels(images)  # the per-image policy, on the uint8 pixels
        images = images.to(torch.float32, copy=True)  # a new tensor even for float input: changed in place below
        if images.shape[-1] != self.image_size:  # optional `image_size` override for nets wanting bigger input
            images = F.interpolate(images, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        images = self.normalization.on(images.device).normalize_(images)  # in place: one new tensor per batch
        if augment:
            images = self.augmentation.normalized(images)
        return images

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized batch -> pixel values in [0, 1] (what the image dashboards draw)."""
        return self.normalization.on(images.device).denormalize(images)

    @property
    def mean(self) -> torch.Tensor:
        """The per-channel mean the batches are normalized with, ``(1, C, 1, 1)``."""
        return self.normalization.mean

    @property
    def std(self) -> torch.Tensor:
        return self.normalization.std


class MNISTDataModule(ImageDataModule):
    dataset_files = MNIST_FILES
    native_shape = (1, 28)


class FashionMNISTDataModule(ImageDataModule):
    dataset_files = FASHION_MNIST_FILES
    native_shape = (1, 28)


class CIFAR10DataModule(ImageDataModule):
    dataset_files = CIFAR10_FILES
    native_shape = (3, 32)


def _fits_on(device: torch.device, images) -> bool:
    """Whether a split held in host memory also fits the GPU's free memory (half of it; a mapped split never)."""
    if device.type == "cpu" or isinstance(images, MappedImages) or images.device == device:
        return False
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return images.nbytes <= free // 2


def kfold_indices(labels: torch.Tensor, num_folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices of fold ``fold`` of ``num_folds``: stratified, disjoint folds that cover ``labels``.

    Each class's examples are shuffled (seeded) and dealt round-robin to the folds, continuing across
    classes, so every fold holds each class's share to within one example and folds differ in size by
    at most one.
    """
    labels = torch.as_tensor(labels)
    generator = torch.Generator().manual_seed(seed)
    order = []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        order.append(members[torch.randperm(len(members), generator=generator)])
    order = torch.cat(order) if order else torch.zeros(0, dtype=torch.int64)
    if len(order) < num_folds:
        raise DataError(f"data.num_folds={num_folds} needs at least {num_folds} training examples (got {len(order)})")
    in_fold = torch.arange(len(order)) % num_folds == fold
    return order[~in_fold].sort().values, order[in_fold].sort().values
