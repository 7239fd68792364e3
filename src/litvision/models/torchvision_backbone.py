"""Any classification network of torchvision.models by name, from scratch or pretrained (``model=torchvision``).

torchvision's public registry builds it (``list_models``, ``get_model``, ``get_model_weights``) with
``num_classes`` outputs; ``weights`` is ``DEFAULT``, the name of one of its weights (``IMAGENET1K_V1``),
the path of a state-dict file, or null (random init). Weights are read from torch's cache
(``$TORCH_HOME/hub/checkpoints/<the file name of the weights' url>``) or the file given, never
downloaded unless ``download`` is true. The head is always new (the net's last layer with parameters:
``fc``, ``classifier.1``, ``heads.head``, ...); every other tensor comes from the weights. For data with
fewer or more channels than RGB the first convolution is rebuilt and its pretrained kernel adapted:
summed over RGB for one channel (a grey image gets the response of its RGB copy).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision.models as tv_models
from torch import nn

from litvision.models.common import ModelConfigError, feature_shape
from litvision.models.pretrained import (
    Backbone,
    WeightsError,
    closest,
    load_backbone_state,
    names_a_file,
    read_state_dict,
    weights_are_loaded,
    weights_file,
)
from litvision.support.errors import first_line

# Keyword arguments some builders need: the auxiliary classifiers off (their pretrained tensors are
# skipped, as torchvision itself drops them), the transformers sized for the data.
_BUILD_KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": True},
    "inception_v3": {"aux_logits": False, "init_weights": True},
}
_AUXILIARY = ("aux1.", "aux2.", "AuxLogits.")
# These two re-normalize ImageNet-normalized input to mean = std = 0.5 inside (transform_input with
# pretrained weights); fed that normalization directly they need no transform.
_HALF_NORMALIZED = {"googlenet", "inception_v3"}


def _size_kwargs(name: str, image_size: int) -> dict:
    if name.startswith("vit_"):
        return {"image_size": image_size}
    if name.startswith("maxvit"):
        return {"input_size": (image_size, image_size)}
    return {}


def classification_models() -> list[str]:
    return tv_models.list_models(module=tv_models)


def _check_name(name: str) -> None:
    if name not in classification_models():
        raise ModelConfigError(closest(str(name), classification_models(), "torchvision model") + " (model.net.name)")


def weights_enum(name: str, weights: str):
    """The weights enum member ``weights`` names for ``name`` (``DEFAULT`` or a member name)."""
    _check_name(name)
    enum = tv_models.get_model_weights(name)
    if weights == "DEFAULT":
        return enum.DEFAULT
    if weights not in enum.__members__:
        raise ModelConfigError(closest(weights, list(enum.__members__), f"weights for {name}") + " (model.net.weights)")
    return enum[weights]


def cached_weights_path(enum_member) -> Path:
    """Where torch's hub cache keeps the file of a weights enum member (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(enum_member.url).path).name


class TorchvisionBackbone(Backbone):
    """``torchvision.models.get_model(name)`` with a ``num_classes`` head and ``in_channels`` input.

    ``pretrained`` is whether it starts from weights (fine-tuning freezes all but :meth:`head`);
    ``preprocessing`` lists which of the weights' mean, std and image size the data config takes
    (:func:`litvision.models.pretrained.apply_weights_preprocessing`).
    """

    def __init__(
        self,
        name: str = "resnet18",
        weights: str | None = None,
        in_channels: int = 3,
        image_size: int = 224,
        num_classes: int = 10,
        download: bool = False,
        preprocessing: list[str] | None = None,
    ):
        super().__init__()
        _check_name(name)
        self.name, self.pretrained = name, weights is not None
        kwargs = {**_BUILD_KWARGS.get(name, {}), **_size_kwargs(name, image_size)}
        enum = None if weights is None or names_a_file(str(weights)) else weights_enum(name, str(weights))
        if enum is not None and kwargs.keys() & {"image_size", "input_size"} and image_size != enum.meta["min_size"][0]:
            raise ModelConfigError(
                f"{name} with {enum} weights takes {enum.meta['min_size'][0]}x{enum.meta['min_size'][0]} images "
                f"only, got {image_size}x{image_size} (data.image_size)"
            )
        try:
            self.model = tv_models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
        except (ValueError, TypeError) as err:
            raise ModelConfigError(f"{name}: {first_line(err)}") from None
        self.head_name = next(reversed([n for n, _ in self.model.named_parameters()])).rsplit(".", 1)[0]
        self.first_conv = self._set_input_channels(in_channels)
        if self.pretrained and weights_are_loaded():
            self._load(str(weights), enum, download)
        feature_shape(self.model, in_channels, image_size, name)  # too small an image: one line, at construction

    def head(self) -> nn.Module:
        """The output layer for the run's classes: trained from the start, never frozen."""
        return self.model.get_submodule(self.head_name)

    @classmethod
    def weights_preprocessing(cls, name: str, weights: str | None, in_channels: int) -> dict | None:
        """Mean, std and image size of the weights' own transforms (``weights.transforms()``); None when unknown."""
        if weights is None or names_a_file(str(weights)):
            return None
        transforms = weights_enum(name, str(weights)).transforms()
        mean, std = (0.5,) * 3, (0.5,) * 3
        if name not in _HALF_NORMALIZED:
            mean, std = transforms.mean, transforms.std
        return cls.preprocessing(mean, std, transforms.crop_size[0], in_channels)

    def _set_input_channels(self, in_channels: int) -> str | None:
        """Rebuild the first convolution for ``in_channels``; return its name."""
        first = next(((n, m) for n, m in self.model.named_modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            return None
        conv_name, conv = first
        if conv.in_channels != in_channels:
            new = nn.Conv2d(
                in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                conv.bias is not None,
                conv.padding_mode,
            )
            parent, _, attr = conv_name.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, attr, new)
        return conv_name

    def _load(self, weights: str, enum, download: bool) -> None:
        path = weights_file(weights)
        if path is None:
            path = cached_weights_path(enum)
            if not path.is_file():
                if not download:
                    raise WeightsError(
                        f"{self.name} {enum} weights: {path.name} is not in {path.parent} (torch's cache, "
                        f"TORCH_HOME moves it): put it there (from {enum.url}), or give model.net.weights=<path> "
                        "of a state-dict file, or model.net.download=true"
                    )
                try:
                    torch.hub.load_state_dict_from_url(enum.url, progress=True, check_hash=True, weights_only=True)
                except Exception as err:
                    raise WeightsError(f"downloading {enum.url} failed ({first_line(err)})") from None
        state = {k: v for k, v in read_state_dict(path).items() if not k.startswith(_AUXILIARY)}
        load_backbone_state(self.model, state, str(path), self.head_name, self.first_conv)
