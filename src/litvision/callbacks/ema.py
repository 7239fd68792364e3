"""An exponential moving average of the weights: Lightning's EMAWeightAveraging, with a decay warm-up,
restored only when fitting.

What Lightning's callback does (lightning/pytorch/callbacks/weight_averaging.py): at ``fit`` setup it
copies the module into a torch ``AveragedModel`` and updates the average after each optimizer step
(BatchNorm statistics too: ``use_buffers``); validation runs on the average (swapped in at the epoch's
start, out at its end); each checkpoint's ``state_dict`` holds the average, the weights being trained
going to ``current_model_state`` and the averaging count to ``averaging_state``; training ends with the
average copied into the module. So the best checkpoint, ``eval.py``, ``predict.py``, export and
``model.init_from`` read the averaged weights, and a resume restores both.
"""

from __future__ import annotations

import warnings

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.callbacks.weight_averaging import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn
from torch.optim.swa_utils import get_ema_avg_fn


def warmed_up_ema(decay: float):
    """torch's EMA update with the decay at ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates.

    By hand because torch's ``get_ema_avg_fn`` (what Lightning uses) applies ``decay`` from the first
    update, so the random starting weights keep a share ``decay ** steps`` of the average: with 0.999,
    two thirds after 400 steps. The warm-up (TensorFlow's ``num_updates``, timm's ``use_warmup``) lets
    the early average follow the weights. Tensor arithmetic: no device sync per step.
    """

    @torch.no_grad()
    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        updates = num_averaged.to(torch.float32)
        step_decay = ((1 + updates) / (10 + updates)).clamp(max=decay)
        return averaged * step_decay + current * (1 - step_decay)

    return update


class EMA(EMAWeightAveraging):
    """``EMAWeightAveraging`` with a decay warm-up (``warmup``) and its checkpoint restore left out outside ``fit``.

    The restore by hand because Lightning's restores ``current_model_state`` into the module whenever its
    average exists: ``trainer.test(ckpt_path="best")`` after the fit (train.py's test) would test the
    weights being trained rather than the average the checkpoint's ``state_dict`` holds, which eval.py tests.
    """

    def __init__(
        self,
        decay: float = 0.999,
        warmup: bool = True,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        update_starting_at_epoch: int | None = None,
        device=None,
        use_buffers: bool = True,
    ):
        get_ema_avg_fn(decay)  # torch's check of the decay's range
        # WeightAveraging's constructor with the warmed-up function; EMAWeightAveraging's own fixes torch's.
        WeightAveraging.__init__(
            self,
            device=device,
            use_buffers=use_buffers,
            avg_fn=warmed_up_ema(decay) if warmup else get_ema_avg_fn(decay),
        )
        self.update_every_n_steps = update_every_n_steps
        self.update_starting_at_step = update_starting_at_step
        self.update_starting_at_epoch = update_starting_at_epoch

    def setup(self, trainer, pl_module, stage: str) -> None:
        with warnings.catch_warnings():
            # ImageClassifier's configure_model only compiles the forward (model.compile): no layers to shard.
            warnings.filterwarnings("ignore", message="You're using the WeightAveraging callback with a model that")
            super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
