"""What the pretrained backbones (``model=torchvision``, ``model=timm``) share: weights files and preprocessing.

Weights are looked up where torch and Hugging Face cache them before anything is downloaded, and a
download is tried only when ``model.net.download`` is true: offline, a missing file is one line naming
the file, the folder it goes in and ``model.net.weights=<path>``, at once rather than after a network
timeout. Files are read weights-only. The weights' own preprocessing (mean/std and input size) becomes
the data config's before the data module is built (:func:`apply_weights_preprocessing`), so it is saved
in the checkpoint's data config and evaluation, prediction and export apply it as training did.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict
from torch import nn

from litvision.support.errors import LitvisionError, first_line

log = logging.getLogger(__name__)

PREPROCESSING_KEYS = ("mean", "std", "image_size")  # what model.net.preprocessing may take from the weights
WEIGHTS_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

_CHECKPOINT_WEIGHTS_FOLLOW = contextvars.ContextVar("checkpoint_weights_follow", default=False)


class WeightsError(LitvisionError):
    """Pretrained weights that cannot be found, read or loaded into the network."""


@contextlib.contextmanager
def checkpoint_weights_follow() -> Iterator[None]:
    """Backbones built inside skip loading their pretrained weights: a checkpoint's own weights replace them.

    Evaluation and prediction rebuild a trained model from its checkpoint's config: the architecture is
    the same, the pretrained file is not needed (and may not be on that machine).
    """
    token = _CHECKPOINT_WEIGHTS_FOLLOW.set(True)
    try:
        yield
    finally:
        _CHECKPOINT_WEIGHTS_FOLLOW.reset(token)


def weights_are_loaded() -> bool:
    """False inside :func:`checkpoint_weights_follow`."""
    return not _CHECKPOINT_WEIGHTS_FOLLOW.get()


def closest(name: str, choices: Sequence[str], what: str) -> str:
    """``unknown <what> 'x'; closest: a, b, c`` for an error line."""
    near = difflib.get_close_matches(name, choices, n=5, cutoff=0.5)
    return f"unknown {what} {name!r}; closest: {', '.join(near)}" if near else f"unknown {what} {name!r}"


def names_a_file(weights: str) -> bool:
    """Whether ``weights`` is a path (an existing file, or a name with a folder or a weights suffix) rather
    than weights by name (``DEFAULT``, a weights enum member, a tag)."""
    path = Path(weights).expanduser()
    return path.is_file() or "/" in weights or "\\" in weights or path.suffix.lower() in WEIGHTS_SUFFIXES


def weights_file(weights: str) -> Path | None:
    """The file ``weights`` names, or None when it is a name; a missing file is an error."""
    if not names_a_file(weights):
        return None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"model.net.weights={weights}: no such file")
    return path


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file (weights-only), unwrapped from
    ``{"state_dict": ...}`` or ``{"model": ...}``; anything else is one :class:`WeightsError`."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"model.net.weights={path} is not a readable weights file ({first_line(err)})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"model.net.weights={path} holds no state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}  # a DDP-wrapped net's names


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first convolution's RGB kernel for ``in_channels``: summed over RGB for one channel (a grey image
    then gives the response its RGB copy would), else repeated and scaled by 3 / in_channels (timm's rule)."""
    if weight.shape[1] == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // weight.shape[1])
    return weight.repeat(1, repeats, 1, 1)[:, :in_channels] * (weight.shape[1] / in_channels)


def load_backbone_state(
    net: nn.Module, state: Mapping[str, torch.Tensor], source: str, head: str, first_conv: str | None
) -> None:
    """Load ``state`` into ``net`` except the head (``head``'s tensors: a new layer for the run's classes).

    Every other tensor of ``net`` must be in the file with its shape (the first convolution's kernel is
    adapted to the input channels); a file with missing, extra or differently shaped tensors is for another
    architecture: one :class:`WeightsError` saying which.
    """
    own = net.state_dict()
    in_head = lambda name: name.startswith(f"{head}.")  # noqa: E731
    state = dict(state)
    conv_key = f"{first_conv}.weight" if first_conv else None
    if conv_key in state and conv_key in own and state[conv_key].ndim == 4:
        state[conv_key] = adapt_input_channels(state[conv_key], own[conv_key].shape[1])
    missing = [k for k in own if not in_head(k) and k not in state]
    other = [k for k in own if not in_head(k) and k in state and state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own and not in_head(k)]
    if missing or other or extra:
        problems = [
            f"{len(names)} {what} (e.g. {names[0]})"
            for names, what in ((missing, "missing"), (other, "of another shape"), (extra, "unknown to it"))
            if names
        ]
        raise WeightsError(
            f"{source} does not fit this network: tensors {', '.join(problems)}; weights of another architecture?"
        )
    net.load_state_dict({k: v for k, v in state.items() if not in_head(k)}, strict=False)
    log.info("loaded %s (%d tensors; the head %s is new)", source, len(state), head)


def channel_stats(values: Sequence[float], in_channels: int) -> list[float]:
    """RGB mean or std for ``in_channels``: their mean for one channel (the kernel was summed over RGB)."""
    values = [float(v) for v in values]
    if in_channels == len(values):
        return values
    return [sum(values) / len(values)] * in_channels


class Backbone(nn.Module):
    """What the torchvision and timm backbones share: the library's network as ``self.model``, and the
    preprocessing record their ``weights_preprocessing`` classmethods return."""

    model: nn.Module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    @staticmethod
    def preprocessing(mean: Sequence[float], std: Sequence[float], image_size: int, in_channels: int) -> dict:
        """The weights' mean, std (for ``in_channels``, :func:`channel_stats`) and input size for the data config."""
        return {
            "mean": channel_stats(mean, in_channels),
            "std": channel_stats(std, in_channels),
            "image_size": int(image_size),
        }


def apply_weights_preprocessing(cfg: DictConfig) -> None:
    """Put the preprocessing of ``cfg.model.net``'s weights into ``cfg.data``, for the keys
    ``model.net.preprocessing`` lists (mean, std, image_size). Nets without a ``weights_preprocessing``
    classmethod, and weights with no known preprocessing (random init, a file), leave the data config as is.
    """
    net = cfg.get("model", {}).get("net") if isinstance(cfg.get("model"), Mapping) else None
    if not net or "_target_" not in net or "preprocessing" not in net:
        return
    try:
        preprocess = get_class(net._target_).weights_preprocessing
    except Exception:  # not a backbone: its own build reports a bad _target_
        return
    keys = list(net.preprocessing or [])
    unknown = [key for key in keys if key not in PREPROCESSING_KEYS]
    if unknown:
        raise LitvisionError(f"model.net.preprocessing takes {list(PREPROCESSING_KEYS)}, got {unknown}")
    values = preprocess(net.name, net.weights, int(cfg.data.in_channels)) if keys else None
    if not values:
        return
    chosen = {key: values[key] for key in keys}
    with open_dict(cfg):
        for key, value in chosen.items():
            cfg.data[key] = value
    log.info("data %s from the weights of %s (model.net.preprocessing)", chosen, net.name)
