"""The model_summary task: the Keras-style summary (litvision.models.profile) of a configured net, from config alone."""

from __future__ import annotations

from omegaconf import DictConfig

from litvision.models.profile import format_summary, profile, totals
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build


def summarize(cfg: DictConfig) -> dict[str, float]:
    """Print the summary of ``cfg.model.net`` for one ``cfg.data`` image; built from config alone, no data files."""
    missing = [key for key in ("num_classes", "in_channels", "image_size") if cfg.data.get(key) is None]
    if missing:  # data=folder reads them from its folder: without data.data_dir there is none
        raise LitvisionError(
            f"the data config gives no {', '.join(missing)}: set data.data_dir (data=folder) or data.<key>"
        )
    net = build(cfg.model.net, "model.net")
    input_shape = (int(cfg.data.in_channels), int(cfg.data.image_size), int(cfg.data.image_size))
    calls = profile(net, input_shape)
    total = totals(net, calls)
    title = f'Model: "{type(net).__name__}" ({cfg.model.net._target_}), input {"x".join(map(str, input_shape))}'
    print(format_summary(title, calls, total))
    return {"params": float(total.params), "trainable_params": float(total.trainable_params), "macs": float(total.macs)}
