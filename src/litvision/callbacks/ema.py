"""An exponential moving average of the weights: Lightning's EMAWeightAveraging, restored only when fitting.

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

from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """``EMAWeightAveraging`` whose checkpoint restore is left out outside ``fit``.

    By hand because Lightning's restores ``current_model_state`` into the module whenever its average
    exists: ``trainer.test(ckpt_path="best")`` after the fit (train.py's test) would test the weights
    being trained rather than the average the checkpoint's ``state_dict`` holds, which eval.py tests.
    """

    def setup(self, trainer, pl_module, stage: str) -> None:
        with warnings.catch_warnings():
            # ImageClassifier's configure_model only compiles the forward (model.compile): no layers to shard.
            warnings.filterwarnings("ignore", message="You're using the WeightAveraging callback with a model that")
            super().setup(trainer, pl_module, stage)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
