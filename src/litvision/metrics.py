"""The metrics a run logs per stage: a torchmetrics ``MetricCollection`` built from ``model.metrics``.

``model.metrics`` maps a name to a torchmetrics config (``conf/model/metrics/``); each is logged as
``<stage>/<name>`` (``val/acc``, ``test/f1_macro``). ``acc`` is required: ``val/acc`` picks the best
checkpoint and feeds ``val/acc_best``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torchmetrics import Metric, MetricCollection

from litvision.support.errors import LitvisionError, first_line
from litvision.support.instantiate import build

REQUIRED = "acc"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")  # a key of the logged name <stage>/<name>: no dots or slashes


def accuracy_only(num_classes: int) -> dict:
    """The metrics config of ``conf/model/metrics/default.yaml``, for a model built without one."""
    return {
        REQUIRED: {
            "_target_": "torchmetrics.classification.MulticlassAccuracy",
            "num_classes": num_classes,
            "average": "micro",
            "validate_args": False,
        }
    }


def build_metrics(configs: Mapping[str, Mapping | None] | None, num_classes: int) -> MetricCollection:
    """One collection from ``{name: config}``; an entry set to null is left out. Bad entries fail in one line.

    Each metric takes one throwaway batch of ``num_classes`` logits first: options that only fail on
    data (top-5 of three classes) fail here, not after the data has loaded.
    """
    configs = {name: config for name, config in (configs or {}).items() if config}
    if REQUIRED not in configs:
        raise LitvisionError(
            f"model.metrics must hold {REQUIRED} (val/{REQUIRED} picks the best checkpoint); got {sorted(configs)}"
        )
    metrics = {}
    for name, config in configs.items():
        if not _NAME.fullmatch(name):
            raise LitvisionError(
                f"model.metrics.{name}: a metric name is letters, digits and _ (it is logged as val/<name>)"
            )
        metric = build(config, f"model.metrics.{name}")
        if not isinstance(metric, Metric):
            raise LitvisionError(f"model.metrics.{name} builds a {type(metric).__name__}, not a torchmetrics Metric")
        try:
            metric.clone().update(torch.zeros(2, num_classes), torch.zeros(2, dtype=torch.long))
        except Exception as err:
            raise LitvisionError(
                f"invalid model.metrics.{name} config for {num_classes} classes: {first_line(err)}"
            ) from None
        metrics[name] = metric
    # No compute groups: each metric keeps its own states, so checkpoints save and restore them one by one.
    return MetricCollection(metrics, compute_groups=False)
