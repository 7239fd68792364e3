"""The learning-rate finder: Lightning's ``Tuner.lr_find`` on the composed model and data, its curve as a PNG.

The range test trains ``num_training`` steps from a copy of the run's starting weights, the learning rate
rising from ``min_lr`` to ``max_lr``, and records the (smoothed) loss at each. The suggestion is the learning
rate where that loss falls fastest along the plotted, logarithmic axis. The model's own schedule is left out: Lightning replaces it
with its ramp during the test anyway, and the one-cycle schedule would read the run's length first.
For the one-cycle default, ``model.optimizer.lr`` is the schedule's peak: the suggestion, where the loss
still falls fastest, is a peak that trains stably; the lowest loss's learning rate is already too high.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.tuner import Tuner
from omegaconf import DictConfig, open_dict

from litvision.support import atomic
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build, build_each, plain
from litvision.support.precision import resolve_trainer_precision
from litvision.support.render import save_png

log = logging.getLogger(__name__)

SKIP_BEGIN, SKIP_END = 10, 1  # Lightning's defaults: the smoothed loss's first points are not yet an average


def lr_find(cfg: DictConfig) -> dict[str, float]:
    """Run the range test; write ``lr_find.png`` and ``lr_find.json`` to the run dir; return the suggestion."""
    options = cfg.lr_find
    if not 0 < options.min_lr < options.max_lr:
        raise LitvisionError(f"lr_find needs 0 < min_lr < max_lr (got {options.min_lr} and {options.max_lr})")
    L.seed_everything(cfg.seed, workers=True)
    with open_dict(cfg):
        cfg.model.scheduler = None  # the finder sets each step's lr itself
    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model", data_config=plain(cfg.data), seed=cfg.seed)
    resolve_trainer_precision(cfg.trainer)
    # Only the fine-tuning callback: the range test of a fine-tuning run starts from its pretrained weights.
    finetuning = {"finetuning": cfg.callbacks.get("finetuning")} if cfg.get("callbacks") else {}
    callbacks = build_each(finetuning, "callbacks")
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=False, enable_checkpointing=False)
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=options.min_lr,
        max_lr=options.max_lr,
        num_training=options.num_training,
        mode=options.mode,
        early_stop_threshold=options.early_stop_threshold,
        update_attr=False,
    )
    if finder is None:  # Lightning skips the test under fast_dev_run
        raise LitvisionError("lr_find does not run with debug=fdr (trainer.fast_dev_run): leave it out")
    suggestion = steepest_descent(finder.results["lr"], finder.results["loss"], options.mode)
    if suggestion is None:
        raise LitvisionError(
            "the learning-rate finder found no suggestion (too few steps, or the loss never fell): "
            "raise lr_find.num_training or widen lr_find.min_lr/max_lr"
        )
    lrs, losses = finder.results["lr"], finder.results["loss"]
    lowest = lrs[min(range(SKIP_BEGIN, len(losses) - SKIP_END), key=losses.__getitem__)]
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=False, show=False)
    axes = figure.axes[0]
    axes.plot(suggestion, losses[lrs.index(suggestion)], "o", color="red", markersize=10, label="suggestion")
    axes.axvline(cfg.model.optimizer.lr, color="gray", linestyle="--", label="configured lr")
    shown = losses[SKIP_BEGIN:]  # the smoothed loss's first steps have not settled: out of view, as out of the pick
    axes.set_xlim(lrs[SKIP_BEGIN], lrs[-1])
    axes.set_ylim(min(shown) - 0.05 * (max(shown) - min(shown)), max(shown) + 0.05 * (max(shown) - min(shown)))
    axes.legend()
    axes.set_title(f"suggested lr {suggestion:.2g} (configured: {cfg.model.optimizer.lr:g})")
    figure.set_dpi(100)
    save_png(figure, out / "lr_find.png")
    results = {"suggestion": suggestion, "lowest_loss_lr": lowest, "configured_lr": cfg.model.optimizer.lr}
    results["lightning_suggestion"] = finder.suggestion(SKIP_BEGIN, SKIP_END)
    atomic.write_json(out / "lr_find.json", {**results, **finder.results}, indent=1, sort_keys=False)
    log.info("curve: %s", out / "lr_find.png")
    log.info(
        "suggested learning rate %.3g, where the loss falls fastest (lowest loss at %.3g; configured %g)",
        suggestion,
        lowest,
        cfg.model.optimizer.lr,
    )
    print(f"model.optimizer.lr={suggestion:.3g}")
    return {"lr_find/suggestion": suggestion, "lr_find/lowest_loss_lr": lowest}


def steepest_descent(lrs: list[float], losses: list[float], mode: str) -> float | None:
    """The learning rate where the loss falls fastest, per unit of log10(lr) in exponential mode.

    By hand because Lightning 2.6's ``suggestion()`` differentiates by the learning rate itself in
    exponential mode too (Lightning issue 21141), which favours the smallest, most closely spaced rates.
    """
    indices = [i for i in range(SKIP_BEGIN, len(losses) - SKIP_END) if math.isfinite(losses[i])]
    if len(indices) < 2:
        return None
    rates = torch.tensor([lrs[i] for i in indices], dtype=torch.float64)
    positions = rates.log10() if mode == "exponential" else rates
    slopes = torch.gradient(torch.tensor([losses[i] for i in indices], dtype=torch.float64), spacing=[positions])[0]
    return lrs[indices[int(slopes.argmin())]]
