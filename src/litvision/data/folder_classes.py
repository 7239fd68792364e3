"""The class folders of an image folder, and the resolvers that give the data configs their number and names
(and a streamed dataset's facts, from the ``litvision.json`` that scripts/stream_convert.py writes).

Kept free of torch: Hydra imports it at every start (``hydra_plugins/litvision_resolvers``), before the
config is composed, so ``${litvision.folder_classes:${data.data_dir}}`` resolves in every script.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import ListConfig, OmegaConf

from litvision.support.errors import DataError
from litvision.support.file_config import escape_interpolation


def visible_dirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def class_root(data_dir: str | Path) -> Path:
    """The folder holding the class folders: ``<data_dir>/train`` in the split layout, else ``data_dir``."""
    data_dir = Path(data_dir).expanduser()
    return data_dir / "train" if (data_dir / "train").is_dir() else data_dir


def folder_class_names(data_dir: str | Path) -> list[str]:
    """Sorted class-folder names (hidden folders skipped); raises :class:`DataError` when there are none."""
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
        raise DataError(
            f"data.data_dir={data_dir} is not a folder; data=folder needs a folder with one subfolder of images "
            f"per class (or train/, val/, test/ holding such subfolders)"
        )
    names = [p.name for p in visible_dirs(class_root(data_dir))]
    if not names:
        raise DataError(f"{class_root(data_dir)} has no class folders: put each class's images in a subfolder")
    return names


def _resolve_or_none(function, data_dir):
    # A resolver must not raise (OmegaConf wraps it in a multi-line error): None here, and the data module
    # reports the problem in one line when it is built.
    try:
        return function(data_dir) if data_dir not in (None, "", "???") else None
    except (DataError, OSError):
        return None


def stream_info(data_dir, key: str):
    """``key`` of ``<data_dir>/litvision.json`` (a converted dataset), or None (a URL, a missing file)."""
    if data_dir in (None, "", "???") or "://" in str(data_dir):
        return None
    try:
        value = json.loads((Path(data_dir).expanduser() / "litvision.json").read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    value = escape_interpolation(value)  # the file's strings stay literal in the config
    return ListConfig(value) if isinstance(value, list) else value


def register_resolvers() -> None:
    """``${litvision.folder_classes:<dir>}`` and ``${litvision.folder_class_names:<dir>}`` for the data configs.

    Registered when Hydra scans its plugins (``hydra_plugins/litvision_resolvers``) and when this module is
    imported, so ``data.num_classes`` is known when the model config interpolates it.
    """
    resolvers = {
        "litvision.folder_classes": lambda data_dir: _resolve_or_none(lambda d: len(folder_class_names(d)), data_dir),
        # A ListConfig, not a list: OmegaConf.resolve (``--cfg job --resolve``) refuses a plain list in a value.
        # Folder names are escaped: a folder named ${oc.env:TOKEN} is a class of that name, not the variable.
        "litvision.folder_class_names": lambda data_dir: _resolve_or_none(
            lambda d: ListConfig(escape_interpolation(folder_class_names(d))), data_dir
        ),
    }
    resolvers["litvision.stream_info"] = stream_info  # ${litvision.stream_info:${data.data_dir},num_classes}
    for name, resolver in resolvers.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


register_resolvers()  # also when imported without Hydra (a notebook composing configs with OmegaConf)
