"""Reading litvision checkpoints safely (``weights_only``) and checking they fit the run."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import get_class

from litvision.support.errors import CheckpointError, first_line

# ImageClassifier saves its constructor arguments (the model config) and the data config under this key.
DATA_CONFIG_KEY = "data_config"


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint on the CPU with weights-only unpickling, or raise one :class:`CheckpointError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        # mmap: only the configs are read here; the trainer reads the weights itself afterwards.
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line(err)})") from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, dict) or not isinstance(hparams.get("net"), dict) or not hparams.get(DATA_CONFIG_KEY):
        raise CheckpointError(f"{path} is not a litvision checkpoint (no model/data config inside)")
    return checkpoint


def saved_configs(checkpoint: dict) -> tuple[dict, dict]:
    """(model config, data config) of a checkpoint from :func:`read_checkpoint`.

    The data config is the run's, with the data module's saved state filling the options it holds (a
    folder run's mean/std, computed from its training split), so every reader gets the values training used.
    """
    hparams = dict(checkpoint["hyper_parameters"])
    data_config = dict(hparams.pop(DATA_CONFIG_KEY))
    state = datamodule_state(checkpoint, data_config)
    data_config.update({key: value for key, value in state.items() if key in data_config})
    return hparams, data_config


def datamodule_state(checkpoint: dict, data_config: dict) -> dict:
    """The data module's ``state_dict()``, which Lightning saves under the class's ``__qualname__`` ({} if none)."""
    target = str(data_config.get("_target_", ""))
    try:
        name = get_class(target).__qualname__
    except Exception:  # not importable here: a top-level class's qualname is its name
        name = target.rsplit(".", 1)[-1]
    state = checkpoint.get(name) if name else None
    return dict(state) if isinstance(state, dict) else {}


def check_resumable(checkpoint: dict, path: str | Path, net_config: dict) -> None:
    """Resuming with another architecture would fail deep in ``load_state_dict``: say so up front."""
    saved = checkpoint["hyper_parameters"]["net"]
    if saved != net_config:
        raise CheckpointError(
            f"{path} holds a different network ({saved.get('_target_')} {_brief(saved)}) than this run's "
            f"model config ({_brief(net_config)}); pass the same model=... options used to train it"
        )


def _brief(net: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (net or {}).items() if k != "_target_")
