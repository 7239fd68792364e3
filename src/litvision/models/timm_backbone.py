"""Any timm network by name, from scratch or pretrained (``model=timm``; the ``timm`` extra).

``timm.create_model(name, pretrained=..., num_classes=..., in_chans=...)``, timm's own loading rules
included (checkpoint filters, the first convolution adapted to ``in_chans``: summed over RGB for one
channel). ``weights`` is ``DEFAULT`` (timm's pretrained weights for the name, a ``name.tag`` picking
others), the path of a weights file (given to timm as ``pretrained_cfg_overlay=dict(file=...)``), or null.
``DEFAULT`` is read from the Hugging Face cache (``$HF_HOME/hub``) and downloaded only when ``download``
is true. The head is always new (``reset_classifier``), so a file for any number of classes fits.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from litvision.models.common import feature_shape
from litvision.models.pretrained import (
    Backbone,
    WeightsError,
    closest,
    names_a_file,
    weights_are_loaded,
    weights_file,
)
from litvision.support.errors import LitvisionError, first_line

HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm reads from a Hugging Face repository, in order


def _timm():
    try:
        import timm
    except ImportError:
        raise LitvisionError('model=timm needs timm: pip install -e ".[timm]"') from None
    return timm


def _check_name(name: str) -> None:
    timm = _timm()
    if not timm.is_model(name):
        raise LitvisionError(closest(name.split(".")[0], timm.list_models(), "timm model") + " (model.net.name)")


def pretrained_config(name: str) -> dict:
    """timm's pretrained config for ``name`` (its default tag unless ``name`` has one); an error if it has none."""
    cfg = _timm().models.get_pretrained_cfg(name)
    if cfg is None:
        raise WeightsError(f"timm has no pretrained weights for {name} (model.net.weights=null trains it from scratch)")
    return cfg.to_dict()


def cached_hub_file(name: str) -> tuple[Path | None, str]:
    """(the cached file of ``name``'s DEFAULT weights or None, a description of where it is expected)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_CACHE

    repo = pretrained_config(name).get("hf_hub_id")
    if not repo:
        raise WeightsError(f"timm's weights for {name} are not on the Hugging Face hub: give model.net.weights=<path>")
    for filename in HUB_FILES:
        found = try_to_load_from_cache(repo_id=repo, filename=filename)
        if isinstance(found, str):
            return Path(found), repo
    folder = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / "<revision>"
    return None, f"{HUB_FILES[0]} of {repo} is not in {folder} (the Hugging Face cache, HF_HOME moves it)"


def _check_fits(model: nn.Module, path: Path, name: str) -> None:
    """timm loads a file non-strictly once it drops the file's head for another class count: a file for
    another network would leave every tensor as initialised. Each parameter outside the head must be in it."""
    saved = _timm().models.load_state_dict(str(path))  # weights-only
    head = {id(p) for p in model.get_classifier().parameters()}
    missing = [n for n, p in model.named_parameters() if id(p) not in head and n not in saved]
    if missing:
        raise WeightsError(
            f"{name}: {path} does not fit this network: {len(missing)} of its tensors are not in the file "
            f"(e.g. {missing[0]}); weights of another architecture?"
        )


class TimmBackbone(Backbone):
    """``timm.create_model(name)`` with a new ``num_classes`` head and ``in_channels`` input.

    ``pretrained`` is whether it starts from weights (fine-tuning freezes all but :meth:`head`);
    ``preprocessing`` lists which of the pretrained config's mean, std and input size the data config takes.
    """

    def __init__(
        self,
        name: str = "resnet10t",
        weights: str | None = None,
        in_channels: int = 3,
        image_size: int = 224,
        num_classes: int = 10,
        download: bool = False,
        preprocessing: list[str] | None = None,
    ):
        super().__init__()
        _check_name(name)
        timm = _timm()
        self.name, self.pretrained = name, weights is not None
        kwargs = {"num_classes": num_classes, "in_chans": in_channels}
        known = timm.models.get_pretrained_cfg(name)
        if known is not None and known.fixed_input_size:
            kwargs["img_size"] = image_size  # a transformer's patch grid follows the data's size
        load = self.pretrained and weights_are_loaded()
        if load:
            path = weights_file(str(weights))
            if path is None:
                if str(weights) != "DEFAULT":
                    raise LitvisionError(f"model.net.weights for timm takes DEFAULT, a file or null (got {weights!r})")
                path, where = cached_hub_file(name)
                if path is None and not download:
                    raise WeightsError(
                        f"{name} weights: {where}: put them there, or give model.net.weights=<path> of a weights "
                        "file, or model.net.download=true"
                    )
            if path is not None:
                kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
        try:
            self.model = timm.create_model(name, pretrained=load, **kwargs)
        except Exception as err:
            reason = first_line(err)
            if "loading state_dict" in reason:  # load_state_dict's first line only names the class
                reason = "its tensors' names or shapes differ from the network's"
            raise WeightsError(
                f"{name}: {weights} does not load ({reason}); weights of another architecture?"
            ) from None
        if load and "pretrained_cfg_overlay" in kwargs:
            _check_fits(self.model, Path(kwargs["pretrained_cfg_overlay"]["file"]), name)
        self.model.reset_classifier(num_classes)  # a new head for the run's classes, whatever the weights had
        feature_shape(self.model, in_channels, image_size, name)

    def head(self) -> nn.Module:
        """The output layer for the run's classes: trained from the start, never frozen."""
        return self.model.get_classifier()

    @classmethod
    def weights_preprocessing(cls, name: str, weights: str | None, in_channels: int) -> dict | None:
        """Mean, std and input size of timm's pretrained config for DEFAULT weights; None otherwise."""
        if weights is None or names_a_file(str(weights)):
            return None
        _check_name(name)
        data = _timm().data.resolve_data_config(pretrained_cfg=pretrained_config(name))
        return cls.preprocessing(data["mean"], data["std"], data["input_size"][-1], in_channels)
