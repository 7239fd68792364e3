"""Fine-tuning: model.init_from loads the matching weights of another run, model.freeze_epochs holds them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer

from conftest import QUIET, compose_train
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import CheckpointError, LitvisionError
from litvision.support.instantiate import build, plain
from litvision.tasks.train import train

TINY = ["data.val_size=100", "test=false", "logger=none", *QUIET]


@pytest.fixture(scope="module")
def mnist_ckpt(tiny_data_dir, tmp_path_factory) -> Path:
    """last.ckpt of one epoch of the default model (small_cnn) on the tiny MNIST files."""
    run_dir = tmp_path_factory.mktemp("mnist-run")
    train(compose_train(["data=mnist", f"data.data_dir={tiny_data_dir}", "trainer.max_epochs=1", *TINY], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


def _saved_net(ckpt: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(ckpt)["state_dict"]
    return {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}


def _model(overrides: list[str], tmp_path: Path):
    cfg = compose_train(overrides, tmp_path)
    return build(cfg.model, "model", data_config=plain(cfg.data)), cfg


def test_a_new_head_for_another_number_of_classes(mnist_ckpt, tmp_path, caplog):
    names = "[a,b,c,d,e]"
    model, _ = _model(
        ["data=mnist", "data.num_classes=5", f"data.class_names={names}", f"model.init_from={mnist_ckpt}"], tmp_path
    )
    with caplog.at_level(logging.INFO, logger="litvision.classifier"):
        loaded = model.load_init_weights()
    saved, own = _saved_net(mnist_ckpt), model.net.state_dict()
    head = [name for name, tensor in own.items() if tensor.shape != saved[name].shape]
    assert head and all(own[name].shape[0] == 5 for name in head)  # the output layer: 5 classes, not 10
    assert set(loaded) == set(own) - set(head)
    for name in loaded:
        torch.testing.assert_close(own[name], saved[name], rtol=0, atol=0)
    assert all(name in caplog.text for name in head), "the fresh tensors are logged"
    assert model.hparams.init_from == str(mnist_ckpt)  # saved with the run's hyperparameters


def test_another_architecture_is_one_clear_error(mnist_ckpt, tmp_path):
    model, _ = _model(["data=mnist", "model=mlp", f"model.init_from={mnist_ckpt}"], tmp_path)
    with pytest.raises(CheckpointError, match="holds a litvision.models.small_cnn.SmallCNN network"):
        model.load_init_weights()
    with pytest.raises(LitvisionError, match="set model.init_from too"):
        _model(["data=mnist", "model.freeze_epochs=1"], tmp_path)


class _Snapshots(Callback):
    """The net's parameters when training starts (after init_from was loaded) and after each epoch."""

    def __init__(self):
        self.taken: list[dict[str, torch.Tensor]] = []
        self.trainable: list[set[str]] = []

    def _take(self, module) -> None:
        self.taken.append({n: p.detach().clone() for n, p in module.net.named_parameters()})

    def on_train_start(self, trainer, module) -> None:
        self._take(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if batch_idx == 0:
            self.trainable.append({n for n, p in module.net.named_parameters() if p.requires_grad})

    def on_train_epoch_end(self, trainer, module) -> None:
        self._take(module)


def test_freeze_epochs_holds_the_loaded_weights_then_trains_them(mnist_ckpt, tiny_data_dir, tmp_path):
    # MNIST -> CIFAR-10: the first conv (3 channels, not 1) and the head (32 px, not 28) are new, the rest loads.
    model, cfg = _model(
        ["data=cifar10", f"data.data_dir={tiny_data_dir}", f"model.init_from={mnist_ckpt}", "model.freeze_epochs=1"],
        tmp_path,
    )
    snapshots = _Snapshots()
    trainer = Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[snapshots],
    )
    trainer.fit(model, datamodule=build({**plain(cfg.data), "val_size": 100}, "data"))
    start, after_frozen, after_unfrozen = snapshots.taken
    saved = _saved_net(mnist_ckpt)
    loaded = set(model._init_loaded) & set(start)
    fresh = set(start) - loaded
    assert loaded and fresh
    for name in loaded:
        torch.testing.assert_close(start[name], saved[name], rtol=0, atol=0)
        assert torch.equal(after_frozen[name], start[name]), f"{name} changed while frozen"
    assert any(not torch.equal(after_frozen[name], start[name]) for name in fresh), "the new layers train"
    assert any(not torch.equal(after_unfrozen[name], after_frozen[name]) for name in loaded), "unfrozen in epoch 1"
    assert snapshots.trainable == [fresh, set(start)]


def test_fine_tune_run_on_another_dataset_loads_every_weight(mnist_ckpt, tiny_data_dir, tmp_path, caplog):
    # MNIST -> Fashion-MNIST, same shapes and classes: every tensor loads; the new checkpoint names its start.
    overrides = ["data=fashion_mnist", f"data.data_dir={tiny_data_dir}", f"model.init_from={mnist_ckpt}"]
    extra = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    with caplog.at_level(logging.INFO, logger="litvision.classifier"):
        train(compose_train([*overrides, *extra, *TINY], tmp_path))
    total = len(_saved_net(mnist_ckpt))
    assert f"{total} of {total} net tensors loaded" in caplog.text
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert saved["init_from"] == str(mnist_ckpt) and saved["freeze_epochs"] == 0
