"""model.metrics: the metrics each stage logs come from config; model/metrics=extended adds top-5 accuracy and macro F1."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import QUIET, compose_train
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build, plain
from litvision.tasks.train import train

TINY = ["data.val_size=100", "logger=none", "trainer.max_epochs=1", *QUIET]


def _macro_f1(predictions: torch.Tensor, labels: torch.Tensor, classes: int) -> float:
    """The mean over the classes of 2 TP / (2 TP + FP + FN), counted here without torchmetrics."""
    scores = []
    for k in range(classes):
        tp = int(((predictions == k) & (labels == k)).sum())
        fp = int(((predictions == k) & (labels != k)).sum())
        fn = int(((predictions != k) & (labels == k)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / classes


def test_extended_metrics_log_top5_and_macro_f1_for_val_and_test(tiny_data_dir, tmp_path):
    cfg = compose_train(["data=mnist", f"data.data_dir={tiny_data_dir}", "model/metrics=extended", *TINY], tmp_path)
    metrics = train(cfg)
    names = ["val/acc_top5", "val/f1_macro", "test/acc_top5", "test/f1_macro", "train/acc_top5", "train/f1_macro"]
    saved = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    for name in names:
        assert name in metrics and saved[name] == pytest.approx(metrics[name])
    assert metrics["test/acc_top5"] >= metrics["test/acc"]

    # test/* were measured on the best checkpoint: counted again here from its predictions.
    model = build(cfg.model, "model", data_config=plain(cfg.data))
    best = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)  # one epoch: best is last
    model.load_state_dict(best["state_dict"])
    datamodule = build(cfg.data, "data")
    datamodule.setup("test")
    images, labels = datamodule.splits["test"]
    with torch.no_grad():
        logits = model.eval()(datamodule.prepare_batch(images, augment=False))
    top5 = (logits.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    assert metrics["test/acc_top5"] == pytest.approx(top5, abs=1e-6)
    assert metrics["test/f1_macro"] == pytest.approx(_macro_f1(logits.argmax(1), labels, 10), abs=1e-5)


def test_a_metric_is_one_command_line_entry(tiny_data_dir, tmp_path):
    extra = "+model.metrics.acc_macro={_target_: torchmetrics.classification.MulticlassAccuracy, num_classes: 10}"
    metrics = train(compose_train(["data=mnist", f"data.data_dir={tiny_data_dir}", extra, *TINY], tmp_path))
    assert 0.0 <= metrics["val/acc_macro"] <= 1.0 and "test/acc_macro" in metrics


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.metrics.acc=null", "model.metrics must hold acc"),
        ("+model.metrics.bad={_target_: torchmetrics.NoSuchMetric}", "invalid model.metrics.bad config"),
        ("+model.metrics.big={_target_: torch.nn.Linear, in_features: 1, out_features: 1}", "not a torchmetrics"),
        ("data.num_classes=3", "invalid model.metrics.acc_top5 config"),  # top-5 of three classes
    ],
)
def test_a_bad_metrics_config_is_one_line(override, message, tmp_path):
    overrides = ["data=mnist", "model/metrics=extended", override]
    if override.startswith("data.num_classes"):
        overrides.append("data.class_names=[a,b,c]")
    cfg = compose_train(overrides, tmp_path)
    with pytest.raises(LitvisionError, match=message) as caught:
        build(cfg.model, "model", data_config=plain(cfg.data))
    assert "\n" not in str(caught.value)
