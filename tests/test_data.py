"""Data lookup, parsing, splits, the in-memory loader and batch augmentation."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest
import torch

from conftest import QUIET, compose_train
from datafiles import IDX_NAMES, write_cifar10, write_idx_dataset
from litvision.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from litvision.data.augment import augment_batch, cutout, random_crop, random_flip
from litvision.data.datamodule import kfold_indices
from litvision.data.datasets import FASHION_MNIST_FILES, MNIST_FILES, ensure_available
from litvision.data.loader import EpochSampler, TensorBatchLoader
from litvision.support.errors import DataError
from litvision.support.instantiate import build

MNIST_FACTS = dict(num_classes=10, class_names=[str(i) for i in range(10)], mean=[0.13], std=[0.31])
CIFAR_FACTS = dict(num_classes=10, class_names=[f"c{i}" for i in range(10)], mean=[0.5] * 3, std=[0.25] * 3)


def mnist(data_dir: Path, **kwargs) -> MNISTDataModule:
    return MNISTDataModule(data_dir=str(data_dir), val_size=100, download=False, **MNIST_FACTS, **kwargs)


def test_reads_torchvision_layout_and_splits_train_into_train_and_val(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw", train=600, test=200)
    datamodule = mnist(tmp_path)
    datamodule.prepare_data()
    datamodule.setup("fit")
    train_images, train_labels = datamodule.splits["train"]
    val_images, _ = datamodule.splits["val"]
    test_images, _ = datamodule.splits["test"]
    assert train_images.shape == (500, 1, 28, 28) and train_images.dtype == torch.uint8
    assert val_images.shape == (100, 1, 28, 28) and test_images.shape == (200, 1, 28, 28)
    assert train_labels.dtype == torch.int64
    # The same split_seed gives the same validation set in every run, whatever the global seed.
    torch.manual_seed(123)
    again = mnist(tmp_path)
    again.setup("fit")
    assert torch.equal(again.splits["val"][0], val_images)
    # No training image is also a validation image (the files hold no duplicates).
    train_set = {bytes(image.numpy()) for image in train_images}
    assert not any(bytes(image.numpy()) in train_set for image in val_images)


def test_system_copy_is_decompressed_into_data_dir(tmp_path):
    system_copy = write_idx_dataset(tmp_path / "system", gzipped=True)
    data_dir = tmp_path / "data"
    ensure_available(FASHION_MNIST_FILES, data_dir, search_dirs=[system_copy], download=False)
    for name in IDX_NAMES.values():
        target = data_dir / "FashionMNIST" / "raw" / name
        assert target.read_bytes() == gzip.decompress((system_copy / f"{name}.gz").read_bytes())
    assert not list((data_dir / "FashionMNIST" / "raw").glob(".*partial"))


def test_corrupt_system_copy_names_the_file_and_leaves_nothing_behind(tmp_path):
    system_copy = write_idx_dataset(tmp_path / "system", gzipped=True)
    broken = system_copy / "t10k-images-idx3-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:300])  # truncated download
    data_dir = tmp_path / "data"
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        ensure_available(MNIST_FILES, data_dir, search_dirs=[system_copy], download=False)
    raw = data_dir / "MNIST" / "raw"
    assert not (raw / "t10k-images-idx3-ubyte").exists()
    assert not list(raw.glob(".*partial"))
    # Once the file is good again, the next run completes the folder instead of failing differently.
    write_idx_dataset(tmp_path / "system", gzipped=True)
    ensure_available(MNIST_FILES, data_dir, search_dirs=[system_copy], download=False)
    assert (raw / "t10k-images-idx3-ubyte").is_file()


def test_truncated_idx_file_is_named(tmp_path):
    raw = write_idx_dataset(tmp_path / "MNIST" / "raw")
    labels = raw / "train-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-7])
    datamodule = mnist(tmp_path)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        datamodule.setup("fit")


def test_corrupt_cifar_batch_is_named(tmp_path):
    write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:1000])
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), val_size=100, download=False, **CIFAR_FACTS)
    with pytest.raises(DataError, match="data_batch_3"):
        datamodule.setup("fit")


def test_missing_dataset_lists_the_places_looked_at(tmp_path):
    with pytest.raises(DataError) as caught:
        ensure_available(FASHION_MNIST_FILES, tmp_path / "empty", search_dirs=[tmp_path / "nowhere"], download=False)
    message = str(caught.value)
    assert "Fashion-MNIST not found" in message
    assert str(tmp_path / "empty" / "FashionMNIST" / "raw") in message and str(tmp_path / "nowhere") in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_cifar10_pickle_batches_parse_to_nchw(tmp_path):
    write_cifar10(tmp_path, per_batch=40, test=30)
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), val_size=50, download=False, **CIFAR_FACTS)
    datamodule.setup("fit")
    assert datamodule.splits["train"][0].shape == (150, 3, 32, 32)
    assert datamodule.splits["test"][0].shape == (30, 3, 32, 32)


def test_loader_yields_every_example_once_per_epoch_in_a_seeded_order():
    labels = torch.arange(1000)
    images = torch.zeros(1000, 1, 2, 2, dtype=torch.uint8)
    loader = TensorBatchLoader(images, labels, 64, EpochSampler(1000, shuffle=True, seed=7))
    first = torch.cat([batch_labels for _, batch_labels in loader])
    assert sorted(first.tolist()) == list(range(1000)) and len(loader) == 16
    assert torch.equal(first, torch.cat([b for _, b in loader]))  # same epoch, same order
    loader.sampler.set_epoch(1)
    second = torch.cat([b for _, b in loader])
    assert not torch.equal(first, second) and sorted(second.tolist()) == list(range(1000))


def test_two_ranks_get_disjoint_evaluation_shares_that_cover_the_split():
    shards = [EpochSampler(1001, shuffle=False, rank=rank, world_size=2) for rank in (0, 1)]
    for shard in shards:
        shard.set_epoch(5)
    first, second = (set(shard.indices().tolist()) for shard in shards)
    assert not first & second and first | second == set(range(1001))


def test_normalization_and_augmentation_happen_per_batch_on_the_device(tmp_path):
    write_idx_dataset(tmp_path / "MNIST" / "raw")
    datamodule = mnist(tmp_path, augment={"crop_padding": 2, "flip": True})
    datamodule.setup("fit")
    images, labels = next(iter(datamodule.train_dataloader()))
    assert images.dtype == torch.uint8  # conversion waits for the device
    out, out_labels = datamodule.on_after_batch_transfer((images, labels), 0)  # no trainer: no augmentation
    expected = (images.float() / 255 - 0.13) / 0.31
    assert torch.allclose(out, expected) and torch.equal(out_labels, labels)


def test_augmentations_keep_shape_and_dtype_and_differ_between_samples():
    torch.manual_seed(0)
    same = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32).repeat(64, 3, 1, 1)
    for augmented in (
        random_crop(same, 4),
        random_flip(same),
        cutout(same, 8),
        augment_batch(same, crop_padding=4, flip=True, cutout_size=8),
    ):
        assert augmented.shape == same.shape and augmented.dtype == same.dtype
        distinct = {bytes(sample.numpy()) for sample in augmented}
        assert len(distinct) > 1, "one random draw was shared by the whole batch"
    # A crop is a shifted window of the padded image: the centre pixel of a 4-padded crop moves by <= 4.
    cropped = random_crop(same, 4)
    centre = cropped[:, 0, 16, 16]
    rows, cols = (centre // 32 - 16).abs(), (centre % 32 - 16).abs()
    assert rows.max() <= 4 and cols.max() <= 4


def test_bad_data_options_are_reported(tmp_path):
    with pytest.raises(DataError, match="channel"):
        FashionMNISTDataModule(data_dir=str(tmp_path), in_channels=3, **MNIST_FACTS)
    with pytest.raises(DataError, match="batch_size"):
        FashionMNISTDataModule(data_dir=str(tmp_path), batch_size=0, **MNIST_FACTS)
    write_idx_dataset(tmp_path / "MNIST" / "raw", train=50)
    with pytest.raises(DataError, match="val_size"):
        mnist(tmp_path).setup("fit")


def test_dataloader_path_yields_the_same_examples_as_the_tensor_path(tiny_data_dir, tmp_path):
    batches = {}
    for loader in ("tensor", "dataloader"):
        cfg = compose_train(
            ["data=cifar10", f"data.loader={loader}", f"data.data_dir={tiny_data_dir}", "data.val_size=100"], tmp_path
        )
        datamodule = build(cfg.data, "data")
        datamodule.setup("fit")
        val = list(datamodule.val_dataloader())
        test = list(datamodule.test_dataloader())
        batches[loader] = [torch.cat([images for images, _ in split]) for split in (val, test)]
        assert all(images.dtype == torch.uint8 for images, _ in val)
    for tensor_split, dataloader_split in zip(batches["tensor"], batches["dataloader"]):
        assert torch.equal(tensor_split, dataloader_split)


def test_lightning_sets_the_sampler_epoch_also_when_resuming(tiny_data_dir, tmp_path):
    from lightning.pytorch.callbacks import Callback

    class RecordEpochs(Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                self.seen.append((trainer.current_epoch, trainer.train_dataloader.sampler.epoch))

    def fit(max_epochs: int, ckpt_path=None) -> list:
        cfg = compose_train(
            [
                "data=mnist",
                f"data.data_dir={tiny_data_dir}",
                "data.val_size=100",
                "logger=csv",
                f"trainer.max_epochs={max_epochs}",
                "test=false",
                *QUIET,
            ],
            tmp_path / str(max_epochs),
        )
        datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
        recorder = RecordEpochs()
        trainer = build(cfg.trainer, "trainer", callbacks=[recorder], logger=False)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return recorder.seen, trainer

    seen, trainer = fit(2)
    assert seen == [(0, 0), (1, 1)]
    checkpoint = tmp_path / "two_epochs.ckpt"
    trainer.save_checkpoint(checkpoint)
    resumed, _ = fit(3, ckpt_path=str(checkpoint))
    assert resumed == [(2, 2)], "a resumed run must continue the per-epoch data order"


# -- k-fold cross-validation ------------------------------------------------------------------------
def test_k_folds_are_disjoint_stratified_and_cover_the_training_split():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 7)[torch.randperm(87, generator=torch.Generator().manual_seed(1))]
    folds = [kfold_indices(labels, 5, fold, seed=3) for fold in range(5)]
    vals = [val for _, val in folds]
    assert torch.equal(torch.cat(vals).sort().values, torch.arange(87))  # disjoint and covering
    for train, val in folds:
        assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(87))
        counts = torch.bincount(labels[val], minlength=3)
        assert (counts - torch.tensor([10, 6, 7 / 5])).abs().max() <= 1  # each class's share, to within one
    assert max(len(v) for v in vals) - min(len(v) for v in vals) <= 1
    assert all(torch.equal(a[1], b[1]) for a, b in zip(folds, [kfold_indices(labels, 5, f, 3) for f in range(5)]))
    assert not torch.equal(kfold_indices(labels, 5, 0, seed=4)[1], vals[0])  # split_seed draws other folds


@pytest.mark.parametrize(
    "num_folds,fold,message",
    [
        (1, 0, "data.num_folds must be null or an integer >= 2"),
        (5, 5, "data.fold must be an integer in [0, 5)"),
        (None, 1, "data.fold=1 needs data.num_folds=<K>"),
    ],
)
def test_bad_fold_options_are_one_line(num_folds, fold, message, tmp_path):
    with pytest.raises(DataError, match=re.escape(message)):
        mnist(tmp_path, num_folds=num_folds, fold=fold)


def test_k_fold_replaces_the_validation_carve_out_on_both_loader_paths(tiny_data_dir, tmp_path):
    folds = []
    for fold in range(3):
        overrides = [f"data.data_dir={tiny_data_dir}", "data=mnist", "data.num_folds=3", f"data.fold={fold}"]
        datamodule = build(compose_train(overrides, tmp_path).data, "data")
        datamodule.setup("fit")
        train, val, test = (datamodule.splits[s] for s in ("train", "val", "test"))
        assert len(train[0]) + len(val[0]) == 600 and len(val[0]) == 200 and len(test[0]) == 200  # val_size unused
        folds.append({bytes(image.numpy()) for image in val[0]})
        loader = build(compose_train([*overrides, "data.loader=dataloader"], tmp_path).data, "data")
        loader.setup("fit")
        assert torch.equal(torch.cat([images for images, _ in loader.val_dataloader()]), val[0])
    assert not (folds[0] & folds[1]) and not (folds[1] & folds[2]) and not (folds[0] & folds[2])


def test_every_built_in_data_module_follows_the_documented_contract(tiny_data_dir, image_folder):
    """src/litvision/data/contract.py: what dashboards, reports, eval and predict read from a data module."""
    from litvision.data import CIFAR10DataModule, FolderDataModule, MNISTDataModule
    from litvision.data.contract import ImageData

    names = [str(label) for label in range(10)]
    modules = [
        MNISTDataModule(data_dir=str(tiny_data_dir), class_names=names, mean=[0.1], std=[0.3]),
        CIFAR10DataModule(data_dir=str(tiny_data_dir), class_names=names, mean=[0.5] * 3, std=[0.2] * 3),
        FolderDataModule(data_dir=str(image_folder), image_size=16),
    ]
    for module in modules:
        assert isinstance(module, ImageData), type(module).__name__
        assert len(module.class_names) == module.num_classes and module.mean.numel() == module.in_channels
    assert not isinstance(object(), ImageData)
