"""Checkpoints are written whole or not at all, whichever trainer config a run uses."""

from __future__ import annotations

import pytest
import torch

from conftest import compose_train
from litvision.support.checkpoint_io import AtomicCheckpointIO
from litvision.support.instantiate import build


@pytest.mark.parametrize("trainer", ["default", "cpu", "ddp_cpu"])
def test_every_trainer_config_installs_the_atomic_writer(trainer, tmp_path):
    cfg = compose_train([f"trainer={trainer}"], tmp_path)
    built = build(cfg.trainer, "trainer", logger=False)
    assert isinstance(built.strategy.checkpoint_io, AtomicCheckpointIO)  # DDP's strategy takes the plugin too


class _Killed(BaseException):
    """Stands for SIGKILL arriving while the bytes are written."""


def test_a_write_that_dies_half_way_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    target = tmp_path / "checkpoints" / "last.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"epoch": 0, "weights": torch.ones(1000)}, target)
    real_save = torch.save

    def dying_save(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)  # half of the new bytes reached the disk
        raise _Killed

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(_Killed):
        writer.save_checkpoint({"epoch": 1, "weights": torch.zeros(1000)}, target)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(target, weights_only=True)["epoch"] == 0
    assert [path.name for path in target.parent.iterdir()] == ["last.ckpt"]  # no partial file left behind
