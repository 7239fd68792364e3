"""The random generators in every checkpoint, put back when a run resumes from it.

With them, a run resumed mid-epoch (after Ctrl-C, SIGTERM or a crash) draws the same dropout masks and
augmentations an uninterrupted run would have drawn, so it ends with the same weights. The data order
needs no generator state: the training sampler derives each epoch's order from its seed and the epoch.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from lightning import Callback

_LEGACY_OWNER = "Interruption"  # checkpoints written before this callback kept the states in that one's


class RandomStateCheckpoint(Callback):
    """Saves torch (CPU and CUDA), numpy and Python generator states; restores them at the first training batch.

    Not when the checkpoint is loaded: between loading and training Lightning builds the loaders and may
    run validation, which can draw; at the first batch the generators are where the saved run's were.
    """

    def __init__(self):
        self._to_restore: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._to_restore = state_dict.get("rng")

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Called before load_state_dict, which replaces this when the checkpoint has this callback's own entry.
        owners = checkpoint.get("callbacks", {})
        legacy = (state for key, state in owners.items() if key.split("{")[0] == _LEGACY_OWNER)
        self._to_restore = next((state["rng"] for state in legacy if isinstance(state, dict) and "rng" in state), None)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._to_restore is not None:
            _set_rng_state(self._to_restore)
            self._to_restore = None


def _rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python generator states, as types a weights-only load accepts."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(position), int(has_gauss), cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
