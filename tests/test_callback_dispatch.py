"""The lean callback dispatch calls exactly the hooks Lightning's would, and skips only Callback's empty ones."""

from __future__ import annotations

import ast
import inspect
import textwrap

import pytest
import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.trainer import call as lightning_call
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from litvision.callback_dispatch import LIGHTNING_DISPATCH, lean_call_callback_hooks, use_lean_callback_dispatch
from litvision.errors import LitvisionError
from litvision.runtime import apply_runtime

HOOKS = [name for name, member in vars(Callback).items() if name.startswith(("on_", "setup", "teardown"))
         and callable(member)]


@pytest.fixture
def lightning_dispatch_after():
    yield
    lightning_call._call_callback_hooks = LIGHTNING_DISPATCH


def test_every_hook_the_dispatch_skips_is_empty_in_this_lightning():
    """What makes skipping safe: each of Callback's hook methods is a docstring and nothing else."""
    assert len(HOOKS) > 25
    for name in HOOKS:
        body = ast.parse(textwrap.dedent(inspect.getsource(getattr(Callback, name)))).body[0].body
        statements = [node for node in body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        assert all(isinstance(node, ast.Pass) for node in statements), f"Callback.{name} does something"


class Recorder(Callback):
    """Records (name, hook, fx name seen by the module, argument types) for the hooks it defines."""

    def __init__(self, name: str, journal: list):
        self.name, self.journal = name, journal

    def _note(self, hook, trainer, pl_module, *args):
        self.journal.append((self.name, hook, pl_module._current_fx_name, tuple(type(a).__name__ for a in args)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._note("on_train_batch_start", trainer, pl_module, batch, batch_idx)

    def on_before_backward(self, trainer, pl_module, loss):
        self._note("on_before_backward", trainer, pl_module, loss)

    def on_validation_epoch_end(self, trainer, pl_module):
        self._note("on_validation_epoch_end", trainer, pl_module)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._note("on_test_batch_end", trainer, pl_module, batch, batch_idx)


class Tiny(LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
        self.log("train_loss", loss, on_step=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1]))

    def test_step(self, batch, batch_idx):
        self.validation_step(batch, batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _journal_of_a_run(dispatch, tmp_path) -> list:
    lightning_call._call_callback_hooks = dispatch
    journal: list = []
    instance_hooked = Callback()  # an override set on the instance, not the class, is still called
    instance_hooked.on_train_epoch_end = lambda trainer, pl_module: journal.append(
        ("instance", "on_train_epoch_end", pl_module._current_fx_name, ()))

    class Stopping(EarlyStopping):  # the monitoring callbacks, which Lightning calls apart at epoch ends
        def on_train_epoch_end(self, trainer, pl_module):
            journal.append(("stopping", "on_train_epoch_end", pl_module._current_fx_name, ()))
            super().on_train_epoch_end(trainer, pl_module)

    class Checkpoint(ModelCheckpoint):
        def on_validation_end(self, trainer, pl_module):
            journal.append(("checkpoint", "on_validation_end", pl_module._current_fx_name, ()))
            super().on_validation_end(trainer, pl_module)

    callbacks = [Recorder("first", journal), Callback(), Stopping(monitor="val_loss", patience=5), instance_hooked,
                 Checkpoint(dirpath=tmp_path, monitor="val_loss"), Recorder("last", journal)]
    data = TensorDataset(torch.randn(24, 4), torch.randint(0, 2, (24,)))
    trainer = Trainer(max_epochs=2, callbacks=callbacks, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=1)
    torch.manual_seed(0)
    model = Tiny()
    trainer.fit(model, DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    trainer.test(model, DataLoader(data, batch_size=8), verbose=False)
    return journal


def test_lean_dispatch_calls_the_same_hooks_in_the_same_order_as_lightnings(tmp_path, lightning_dispatch_after):
    lightning = _journal_of_a_run(LIGHTNING_DISPATCH, tmp_path / "lightning")
    lean = _journal_of_a_run(lean_call_callback_hooks, tmp_path / "lean")
    assert len(lightning) > 20
    epoch_end = [entry[0] for entry in lightning if entry[1] == "on_train_epoch_end"]
    assert epoch_end == ["instance", "stopping"] * 2, "Lightning calls monitoring callbacks after the others"
    assert lean == lightning
    # The monitoring callbacks ran in both: each checkpoint dir got the best and only checkpoint.
    assert len(list((tmp_path / "lean").glob("*.ckpt"))) == len(list((tmp_path / "lightning").glob("*.ckpt"))) == 1


def test_runtime_installs_the_lean_dispatch_and_false_gives_lightnings_back(lightning_dispatch_after):
    apply_runtime(OmegaConf.create({"lean_callback_dispatch": True}))
    assert lightning_call._call_callback_hooks is lean_call_callback_hooks
    apply_runtime(OmegaConf.create({"lean_callback_dispatch": False}))
    assert lightning_call._call_callback_hooks is LIGHTNING_DISPATCH
    with pytest.raises(LitvisionError, match="runtime.lean_callback_dispatch must be true or false"):
        apply_runtime(OmegaConf.create({"lean_callback_dispatch": "yes"}))


def test_a_lightning_whose_dispatch_takes_other_arguments_keeps_its_own(monkeypatch, lightning_dispatch_after):
    def other_dispatch(trainer, hook_name, *args, **kwargs):
        pass

    monkeypatch.setattr("litvision.callback_dispatch.LIGHTNING_DISPATCH", other_dispatch)
    lightning_call._call_callback_hooks = other_dispatch
    assert use_lean_callback_dispatch(True) is False
    assert lightning_call._call_callback_hooks is other_dispatch
