"""The random generators travel in checkpoints: a resumed run draws what the saved one would have drawn next."""

from __future__ import annotations

import random

import numpy as np
import torch

from litvision.callbacks.rng_state import RandomStateCheckpoint


def _draws() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_the_first_training_batch_after_a_resume_draws_what_the_saved_run_drew_next():
    saved = RandomStateCheckpoint().state_dict()
    expected = _draws()
    for checkpoint in (
        {"callbacks": {"RandomStateCheckpoint": saved}},
        {"callbacks": {"Interruption": saved}},  # written before the generators had a callback of their own
    ):
        resumed = RandomStateCheckpoint()
        resumed.on_load_checkpoint(None, None, checkpoint)  # Lightning's order: this hook, then load_state_dict
        if "RandomStateCheckpoint" in checkpoint["callbacks"]:
            resumed.load_state_dict(checkpoint["callbacks"]["RandomStateCheckpoint"])
        _draws()  # what happens between loading and training (validation, building the loaders) may draw
        resumed.on_train_batch_start(None, None, None, 0)
        assert _draws() == expected
        resumed.on_train_batch_start(None, None, None, 1)  # put back once, not at every batch
        assert _draws() != expected
