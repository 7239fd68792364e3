"""Fine-tuning: model.init_from loads the matching weights of another run, model.freeze_epochs holds them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from lightning import Callback, Trainer

from conftest import QUIET, compose_train
from litvision.callbacks.finetuning import load_matching_weights
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
    with caplog.at_level(logging.INFO, logger="litvision.callbacks.finetuning"):
        loaded = load_matching_weights(model.net, mnist_ckpt)
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
        load_matching_weights(model.net, mnist_ckpt)
    with pytest.raises(LitvisionError, match="freezes pretrained weights: set model.init_from=<ckpt>"):
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
        callbacks=[snapshots, build(cfg.callbacks.finetuning, "callbacks.finetuning")],
    )
    trainer.fit(model, datamodule=build({**plain(cfg.data), "val_size": 100}, "data"))
    start, after_frozen, after_unfrozen = snapshots.taken
    saved = _saved_net(mnist_ckpt)
    fresh = {name for name in start if name not in saved or saved[name].shape != start[name].shape}
    output_layer = [name for name, module in model.net.named_modules() if module._parameters][-1]
    trains = fresh | {name for name in start if name.startswith(f"{output_layer}.")}  # the head always trains
    frozen = set(start) - trains
    assert frozen and fresh - trains == set()
    for name in set(start) - fresh:
        torch.testing.assert_close(start[name], saved[name], rtol=0, atol=0)
    for name in frozen:
        assert torch.equal(after_frozen[name], start[name]), f"{name} changed while frozen"
    assert all(not torch.equal(after_frozen[name], start[name]) for name in trains), "the new layers and the head train"
    assert any(not torch.equal(after_unfrozen[name], after_frozen[name]) for name in frozen), "unfrozen in epoch 1"
    assert snapshots.trainable == [trains, set(start)]


def test_fine_tune_run_on_another_dataset_loads_every_weight(mnist_ckpt, tiny_data_dir, tmp_path, caplog):
    # MNIST -> Fashion-MNIST, same shapes and classes: every tensor loads; the new checkpoint names its start.
    overrides = ["data=fashion_mnist", f"data.data_dir={tiny_data_dir}", f"model.init_from={mnist_ckpt}"]
    extra = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
    with caplog.at_level(logging.INFO, logger="litvision.callbacks.finetuning"):
        train(compose_train([*overrides, *extra, *TINY], tmp_path))
    total = len(_saved_net(mnist_ckpt))
    assert f"{total} of {total} net tensors loaded" in caplog.text
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert saved["init_from"] == str(mnist_ckpt) and saved["freeze_epochs"] == 0


def _buffers(module) -> dict[str, torch.Tensor]:
    return {n: b.detach().clone() for n, b in module.net.named_buffers() if "running" in n}


class _BufferSnapshots(Callback):
    """The net's BatchNorm running statistics when training starts and after each epoch."""

    def __init__(self):
        self.taken: list[dict[str, torch.Tensor]] = []

    def on_train_start(self, trainer, module) -> None:
        self.taken.append(_buffers(module))

    def on_train_epoch_end(self, trainer, module) -> None:
        self.taken.append(_buffers(module))


@pytest.mark.parametrize("freeze_batchnorm", [True, False])
def test_frozen_batchnorm_statistics_hold_unless_switched_off(freeze_batchnorm, mnist_ckpt, tiny_data_dir, tmp_path):
    overrides = ["data=fashion_mnist", f"data.data_dir={tiny_data_dir}", f"model.init_from={mnist_ckpt}"]
    model, cfg = _model([*overrides, "model.freeze_epochs=1", f"model.freeze_batchnorm={freeze_batchnorm}"], tmp_path)
    snapshots = _BufferSnapshots()
    trainer = Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[snapshots, build(cfg.callbacks.finetuning, "callbacks.finetuning")],
    )
    trainer.fit(model, datamodule=build({**plain(cfg.data), "val_size": 100}, "data"))
    start, after_frozen, after_unfrozen = snapshots.taken
    assert start, "small_cnn has BatchNorm layers"
    held = all(torch.equal(after_frozen[name], start[name]) for name in start)
    assert held == freeze_batchnorm
    assert any(not torch.equal(after_unfrozen[name], after_frozen[name]) for name in start), "they adapt once unfrozen"


def test_a_resumed_fit_freezes_the_same_weights_without_reading_init_from(mnist_ckpt, tiny_data_dir, tmp_path):
    # Two epochs frozen; the run stops after the first and resumes with the init_from file gone.
    start = tmp_path / "start.ckpt"
    start.write_bytes(mnist_ckpt.read_bytes())
    overrides = ["data=fashion_mnist", f"data.data_dir={tiny_data_dir}", f"model.init_from={start}"]
    short = ["model.freeze_epochs=2", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", *TINY]
    first = tmp_path / "first"
    train(compose_train([*overrides, *short, "trainer.max_epochs=1"], first))
    after_first = _saved_net(first / "checkpoints" / "last.ckpt")
    start.unlink()
    resumed = tmp_path / "resumed"
    ckpt = first / "checkpoints" / "last.ckpt"
    train(compose_train([*overrides, *short, "trainer.max_epochs=2", f"ckpt_path={ckpt}"], resumed))
    after_second = _saved_net(resumed / "checkpoints" / "last.ckpt")
    saved, net = _saved_net(mnist_ckpt), _model(overrides, tmp_path)[0].net
    output_layer = [name for name, module in net.named_modules() if module._parameters][-1]
    frozen = [name for name, _ in net.named_parameters() if not name.startswith(f"{output_layer}.")]
    assert frozen and all(torch.equal(after_first[name], saved[name]) for name in frozen)
    assert all(torch.equal(after_second[name], saved[name]) for name in frozen), "still frozen in epoch 1"
    assert not torch.equal(after_second[f"{output_layer}.weight"], saved[f"{output_layer}.weight"]), "the head trains"


class _LearningRates(Callback):
    """The optimizer groups' learning rates at every training step."""

    def __init__(self):
        self.seen: list[list[float]] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.seen.append([group["lr"] for group in trainer.optimizers[0].param_groups])


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine"])
def test_backbone_lr_scale_trains_all_but_the_head_at_its_share_of_the_rate(
    scheduler, mnist_ckpt, tiny_data_dir, tmp_path
):
    overrides = ["data=fashion_mnist", f"data.data_dir={tiny_data_dir}", f"model.init_from={mnist_ckpt}"]
    model, cfg = _model([*overrides, "model.backbone_lr_scale=0.1", f"model/scheduler={scheduler}"], tmp_path)
    rates = _LearningRates()
    trainer = Trainer(
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[rates, build(cfg.callbacks.finetuning, "callbacks.finetuning")],
    )
    trainer.fit(model, datamodule=build({**plain(cfg.data), "val_size": 100}, "data"))
    head, backbone = trainer.optimizers[0].param_groups
    output_layer = [module for module in model.net.modules() if module._parameters][-1]
    assert {id(p) for p in head["params"]} == {id(p) for p in output_layer.parameters()}
    assert len(head["params"]) + len(backbone["params"]) == len(list(model.net.parameters()))
    assert len({tuple(step) for step in rates.seen}) > 1, "the schedule moves both groups"
    for head_lr, backbone_lr in rates.seen:  # the ratio holds at every step of the schedule
        assert backbone_lr == pytest.approx(0.1 * head_lr, rel=1e-6)


def test_backbone_lr_scale_needs_pretrained_weights(tmp_path):
    with pytest.raises(LitvisionError, match="backbone_lr_scale scales pretrained weights"):
        _model(["data=mnist", "model.backbone_lr_scale=0.1"], tmp_path)
    with pytest.raises(LitvisionError, match=r"must be a number in \(0, 1\]"):
        _model(["data=mnist", "model.backbone_lr_scale=0"], tmp_path)


def test_fine_tuning_options_without_the_finetuning_callback_stop_in_one_line(mnist_ckpt, tiny_data_dir, tmp_path):
    from conftest import run_main, tiny_mlp_args

    args = tiny_mlp_args(tiny_data_dir, tmp_path, f"model.init_from={mnist_ckpt}", "callbacks.finetuning=null")
    result = run_main("train.py", *[a for a in args if a != "model=mlp"], check=False)
    assert result.returncode == 2 and "leave callbacks.finetuning in" in result.stderr
