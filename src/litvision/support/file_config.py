"""Configs that come from a file (a checkpoint's saved model and data configs): data, never code.

A checkpoint's hyperparameters name the classes that rebuild its model (``_target_`` keys). Before any
of them is imported or called, :func:`check_targets` holds every ``_target_`` at any depth against an
allowlist: litvision's own classes of the kinds a checkpoint holds (networks, data modules, schedules),
the network, optimizer, scheduler and metric classes of torch, torchvision, timm and torchmetrics, and a
few named factories. Anything else (``builtins.open``, ``torch.load``, ``os.system``, a class of another
kind) is one :class:`UntrustedConfigError` naming the key and the target, with nothing called.

:func:`build_literal` builds a plain (already resolved) config without OmegaConf: its strings are kept
as they are, so a class name like ``${oc.env:TOKEN}`` stays that text instead of being interpolated.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from litvision.support.errors import CheckpointError, LitvisionError, first_line


class UntrustedConfigError(CheckpointError):
    """A config read from a file names something a file may not build."""


# Packages a saved _target_ may come from; the object found must also be defined in one of them.
ALLOWED_PACKAGES = ("litvision", "torch.nn", "torch.optim", "torchvision.models", "timm", "torchmetrics")
# Functions a saved config may call (every other allowed target is a class of an allowed kind).
ALLOWED_FUNCTIONS = frozenset({"litvision.schedules.warmup_cosine", "timm.create_model"})
# Hydra's reserved keys that a saved config may carry; any other _key_ is refused.
RESERVED_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})


_INTERPOLATION = re.compile(r"(\\*)\$\{")


def escape_interpolation(value: Any) -> Any:
    """``value`` (a string, or lists/dicts of them) escaped so that OmegaConf reads it back literally.

    For strings from files that go into a config (class folder names, a converted dataset's facts):
    ``${oc.env:TOKEN}`` stays that text, and ``x${y`` is no grammar error. OmegaConf reads ``\\${`` as a
    literal ``${``, and the backslashes before it in pairs.
    """
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda match: match.group(1) * 2 + "\\${", value)
    if isinstance(value, (list, tuple)):
        return [escape_interpolation(item) for item in value]
    if isinstance(value, Mapping):
        return {key: escape_interpolation(item) for key, item in value.items()}
    return value


def _allowed_bases() -> tuple[type, ...]:
    """The kinds of class a checkpoint rebuilds: networks, optimizers, schedulers, metrics, data modules."""
    from lightning import LightningDataModule
    from torch import nn, optim
    from torchmetrics import Metric

    return (nn.Module, optim.Optimizer, optim.lr_scheduler.LRScheduler, optim.lr_scheduler.ReduceLROnPlateau, Metric,
            LightningDataModule)  # fmt: skip


def _in_packages(name: str) -> bool:
    return any(name == package or name.startswith(package + ".") for package in ALLOWED_PACKAGES)


def locate_allowed(target: Any, key: str, source: str) -> Any:
    """The object ``target`` names, if a file may build it; else :class:`UntrustedConfigError`, nothing imported."""
    refuse = UntrustedConfigError(
        f"{source}: {key}._target_={str(target)[:120]!r} is not something a saved file may build "
        f"(allowed: {', '.join(ALLOWED_PACKAGES)} networks, optimizers, schedulers, metrics and data modules; "
        f"see docs/security.md)"
    )
    if (
        not isinstance(target, str)
        or not target.replace(".", "").replace("_", "").isalnum()
        or not _in_packages(target)
    ):
        raise refuse
    parts = target.split(".")
    module, index = None, len(parts)
    while index > 0:  # the longest importable module prefix, inside the allowed packages by the check above
        try:
            module = importlib.import_module(".".join(parts[:index]))
            break
        except ImportError:
            index -= 1
    if module is None:
        raise refuse
    found: Any = module
    for attribute in parts[index:]:
        if attribute.startswith("_"):
            raise refuse
        found = getattr(found, attribute, None)
        if found is None:
            raise UntrustedConfigError(f"{source}: {key}._target_={target!r} does not exist in this installation")
    if isinstance(found, type):
        allowed = issubclass(found, _allowed_bases()) and _in_packages(found.__module__)
    else:
        allowed = target in ALLOWED_FUNCTIONS and _in_packages(getattr(found, "__module__", "") or "")
    if not allowed:
        raise refuse
    return found


def _targets(node: Any, key: str) -> Iterator[tuple[str, Mapping]]:
    if isinstance(node, Mapping):
        if "_target_" in node:
            yield key, node
        for name, value in node.items():
            yield from _targets(value, f"{key}.{name}")
    elif isinstance(node, (list, tuple)):
        for position, value in enumerate(node):
            yield from _targets(value, f"{key}[{position}]")


def check_targets(config: Any, key: str, source: str) -> None:
    """Refuse ``config`` (read from ``source``) if any ``_target_`` in it, at any depth, is not allowed."""
    for where, node in _targets(config, key):
        unknown = sorted(name for name in node if isinstance(name, str) and name.startswith("_") and
                         name.endswith("_") and name not in RESERVED_KEYS)  # fmt: skip
        if unknown:
            raise UntrustedConfigError(f"{source}: {where} holds {unknown[0]!r}, which a saved config may not use")
        locate_allowed(node["_target_"], where, source)


def build_literal(config: Mapping, what: str, **kwargs: Any) -> Any:
    """Build a plain config as Hydra's ``instantiate`` does (nested targets, ``_partial_``, ``_args_``,
    ``_recursive_``), but with every string kept literally; errors are one :class:`LitvisionError` line."""
    try:
        return _build({**config, **kwargs})
    except LitvisionError:
        raise
    except _Unimportable as err:
        raise LitvisionError(f"invalid {what} config: {err}") from None
    except Exception as err:
        raise LitvisionError(f"invalid {what} config: {first_line(err, limit=None, typed=True)}") from None


class _Unimportable(Exception):
    pass


def _import(target: str) -> Any:
    """The object a (trusted) config names: any importable object, as Hydra's ``_target_``."""
    from hydra.utils import get_object

    try:
        return get_object(target)
    except Exception as err:
        raise _Unimportable(f"cannot import _target_ {target!r} ({first_line(err)})") from None


def _build(node: Any) -> Any:
    if isinstance(node, (list, tuple)):
        return [_build(value) for value in node]
    if not isinstance(node, Mapping):
        return node
    if "_target_" not in node:
        return {name: _build(value) for name, value in node.items()}
    target = node["_target_"]
    if isinstance(target, str):
        target = _import(target)
    recursive = node.get("_recursive_", True)
    args = list(node.get("_args_", ()))
    kwargs = {name: value for name, value in node.items() if name not in RESERVED_KEYS}
    if recursive:
        args, kwargs = [_build(value) for value in args], {name: _build(value) for name, value in kwargs.items()}
    if node.get("_partial_", False):
        return functools.partial(target, *args, **kwargs)
    return target(*args, **kwargs)
