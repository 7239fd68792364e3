"""Reading litvision checkpoints safely (``weights_only``) and checking they fit the run."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import get_class

from litvision.support.errors import CheckpointError, first_line
from litvision.support.file_config import check_targets

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
    if not isinstance(hparams[DATA_CONFIG_KEY], dict) or not all(isinstance(key, str) for key in hparams):
        raise CheckpointError(f"{path} is not a litvision checkpoint (its model/data config is not a mapping)")
    # Before anything the file names is imported or called: every _target_ in it must be on the allowlist.
    check_targets(hparams, "hyper_parameters", str(path))
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
    check_data_facts(data_config)
    return hparams, data_config


def check_data_facts(data_config: dict) -> None:
    """What prediction and export read from a saved data config, checked as untrusted values."""
    facts = {key: data_config.get(key) for key in ("class_names", "in_channels", "image_size", "mean", "std")}
    names, channels, size = facts["class_names"], facts["in_channels"], facts["image_size"]
    problems = []
    if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
        problems.append("class_names is not a list of names")
    if not _is_int(channels) or not 1 <= channels <= 4:
        problems.append(f"in_channels={_short(channels)} is not 1 to 4")
    if not _is_int(size) or not 1 <= size <= 8192:
        problems.append(f"image_size={_short(size)} is not 1 to 8192")
    for key in ("mean", "std"):
        values = facts[key]
        numbers = isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        )
        if not numbers or (_is_int(channels) and len(values) != channels) or (key == "std" and min(values) <= 0):
            problems.append(
                f"{key}={_short(values)} is not one {'positive ' if key == 'std' else ''}number per channel"
            )
    if problems:
        raise CheckpointError(f"the checkpoint's data config is invalid: {'; '.join(problems)}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


# What a resume must keep: other values mean other data, and the run's val/acc_best, early-stopping and
# checkpoint scores (restored with it) would then compare numbers measured on different images.
_DATA_IDENTITY = ("_target_", "num_classes", "class_names", "in_channels", "image_size")


def check_same_data(checkpoint: dict, path: str | Path, data_config: dict) -> None:
    """Resuming onto other data would continue the run's best scores on another dataset: refuse it."""
    saved = saved_configs(checkpoint)[1]
    differ = [
        f"{'dataset' if key == '_target_' else key} {_short(saved[key])} -> {_short(data_config[key])}"
        for key in _DATA_IDENTITY
        if saved.get(key) is not None and data_config.get(key) is not None and saved[key] != data_config[key]
    ]
    if differ:
        raise CheckpointError(
            f"{path} was trained on other data ({'; '.join(differ)}): a resume continues that run on its own "
            f"data; to start a new run from its weights pass model.init_from={path} instead of ckpt_path"
        )


def check_training_left(checkpoint: dict, path: str | Path, max_epochs: int | None, max_steps: int | None) -> None:
    """A resume whose checkpoint already reached ``max_epochs`` (or ``max_steps``) would train nothing: say so.

    An error rather than a warning: the run would still test and write a new run folder whose
    metrics.json repeats the old run's scores as if this command had produced them.
    """
    progress = checkpoint.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    epochs = progress.get("processed")  # epochs whose training batches all ran (mid-epoch: that epoch is not)
    steps = checkpoint.get("global_step")
    if isinstance(epochs, int) and max_epochs is not None and 0 <= max_epochs <= epochs:
        key, reached, unit = "max_epochs", epochs, "epochs"
    elif isinstance(steps, int) and max_steps is not None and 0 <= max_steps <= steps:
        key, reached, unit = "max_steps", steps, "steps"
    else:
        return
    limit = max_epochs if key == "max_epochs" else max_steps
    raise CheckpointError(
        f"{path} has already trained {reached} {unit} (trainer.{key}={limit}): nothing left to train; "
        f"pass trainer.{key}=<more than {reached}> to train on, or test it: python scripts/eval.py ckpt_path={path}"
    )


def _short(value: object) -> str:
    if isinstance(value, (list, tuple)) and len(value) > 4:
        return "[" + ", ".join(map(str, value[:3])) + f", ... {len(value)} in all]"
    if isinstance(value, str) and "." in value:  # a class path: its name says enough
        return value.rsplit(".", 1)[-1]
    return str(value)


def _brief(net: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (net or {}).items() if k != "_target_")
