"""Fine-tuning: start from pretrained weights and keep them fixed for ``model.freeze_epochs`` epochs.

The pretrained weights are another run's (``model.init_from``) or a backbone's own
(``model.net.weights`` of ``model=torchvision`` / ``model=timm``). :class:`FineTuning` is Lightning's
:class:`~lightning.pytorch.callbacks.BaseFinetuning` with litvision's rule for what is frozen: the
pretrained part of the net, never its head (:func:`~litvision.models.heads.head_of`). It is the
``finetuning`` entry of the default callbacks (``conf/callbacks/finetuning.yaml``), which reads its options
from the model config; while they are unset it does nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

from litvision.models.heads import head_of
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import CheckpointError, LitvisionError

log = logging.getLogger(__name__)


def load_matching_weights(net: nn.Module, path: str | Path) -> list[str]:
    """Copy every tensor of the checkpoint's net whose name and shape match into ``net``; return their names.

    Raises :class:`CheckpointError` for a checkpoint of another network class, or one that has no
    matching tensor at all. The tensors left freshly initialised (say an output layer for another
    number of classes) are logged.
    """
    checkpoint = read_checkpoint(path)
    saved_target = checkpoint["hyper_parameters"]["net"].get("_target_")
    if not _same_class(saved_target, type(net)):
        raise CheckpointError(
            f"model.init_from={path} holds a {saved_target} network; this run builds "
            f"{type(net).__module__}.{type(net).__qualname__}: fine-tune with the same model=..."
        )
    saved = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    own = net.state_dict()
    kept = {name: saved[name] for name, t in own.items() if name in saved and saved[name].shape == t.shape}
    if not any(name in kept for name, _ in net.named_parameters()):
        raise CheckpointError(f"model.init_from={path}: no weight of its network fits this one (names or shapes)")
    net.load_state_dict(kept, strict=False)
    fresh = [f"{n} ({_shape(saved.get(n))} -> {_shape(t)})" for n, t in own.items() if n not in kept]
    log.info("model.init_from=%s: %d of %d net tensors loaded", path, len(kept), len(own))
    if fresh:
        log.info("freshly initialised (no tensor of that name and shape in the checkpoint): %s", ", ".join(fresh))
    return list(kept)


class FineTuning(BaseFinetuning):
    """Load ``init_from``'s matching weights when a fit starts afresh; freeze the pretrained part for ``freeze_epochs``.

    The pretrained part is what came from ``init_from`` (every tensor whose name and shape match), or,
    without it, the whole net of a backbone that loaded pretrained weights; the head (:func:`~litvision.models.heads.head_of`)
    trains throughout. A resumed fit keeps its own weights (the checkpoint's) and freezes the same
    tensors: their names are this callback's checkpoint state. Frozen means ``requires_grad`` off and,
    unless ``train_bn``, BatchNorm statistics held (``track_running_stats`` off while training). The
    frozen parameters stay in the optimizer from the start, with the schedule planned over both phases:
    they have no gradient, so they do not move until they are unfrozen at epoch ``freeze_epochs``.
    """

    def __init__(self, init_from: str | None = None, freeze_epochs: int = 0, freeze_batchnorm: bool = True):
        super().__init__()
        self.init_from, self.freeze_epochs, self.train_bn = init_from, freeze_epochs, not freeze_batchnorm
        self.loaded: list[str] | None = None  # the net's tensors from init_from; None: all (a pretrained backbone)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "loaded": self.loaded}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.loaded = state_dict.get("loaded")

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit" and self.freeze_epochs and trainer.world_size > 1:
            # torch's DDP registers gradient hooks only for the parameters that need gradients when it wraps
            # the net: ones frozen then would never be averaged across ranks after they are unfrozen.
            raise LitvisionError("model.freeze_epochs runs in one process only (not under DDP); set it to 0 there")
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module) -> None:
        """Nothing yet: what is frozen is known once the weights are loaded or restored (:meth:`on_train_start`)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)
        # After the trainer restored a resumed fit (trainer.ckpt_path): its weights win, init_from is not read.
        if self.init_from and not trainer.ckpt_path:
            self.loaded = load_matching_weights(pl_module.net, self.init_from)

    def on_train_start(self, trainer, pl_module) -> None:
        # After the loops were restored, so current_epoch is the resumed epoch's.
        if trainer.current_epoch < self.freeze_epochs:
            for module in self._pretrained_modules(pl_module.net):
                if not (self.train_bn and isinstance(module, nn.modules.batchnorm._BatchNorm)):
                    self.freeze_module(module)  # one module, not its children: a new layer inside stays trainable
            trainable = sum(p.numel() for p in pl_module.net.parameters() if p.requires_grad)
            log.info(
                "epochs 0-%d: the pretrained weights are frozen, %d parameters train", self.freeze_epochs - 1, trainable
            )

    def finetune_function(self, pl_module, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        if self.freeze_epochs and epoch == self.freeze_epochs:
            self.make_trainable(self._pretrained_modules(pl_module.net))
            trainable = sum(p.numel() for p in pl_module.net.parameters() if p.requires_grad)
            log.info("epoch %d: the pretrained weights are unfrozen (%d parameters train)", epoch, trainable)

    def _pretrained_modules(self, net: nn.Module) -> list[nn.Module]:
        """The net's modules outside its head whose own parameters are all pretrained."""
        in_head = {id(module) for module in head_of(net).modules()}
        loaded = None if self.loaded is None else set(self.loaded)
        modules = []
        for prefix, module in net.named_modules():
            own = [f"{prefix}.{name}" if prefix else name for name, _ in module.named_parameters(recurse=False)]
            if own and id(module) not in in_head and (loaded is None or all(name in loaded for name in own)):
                modules.append(module)
        return modules


def _same_class(target: str | None, cls: type) -> bool:
    """Whether the ``_target_`` of a saved net config names ``cls`` (also through a re-export)."""
    try:
        return get_class(target) is cls
    except Exception:  # an unknown or moved class: not this one
        return False


def _shape(tensor: torch.Tensor | None) -> str:
    return "none" if tensor is None else "x".join(map(str, tensor.shape)) or "scalar"
