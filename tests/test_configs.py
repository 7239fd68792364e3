"""Every option of every config group composes; every model instantiates on every dataset."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF_DIR, compose_train
from litvision.instantiate import build

GROUPS = ["data", "model", "trainer", "callbacks", "logger", "debug", "experiment", "paths", "hydra"]
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose_train([f"{group}={option}"], tmp_path)
    assert cfg.model.net._target_
    for section in ("data", "model", "trainer"):
        assert cfg[section] is not None
    # Every interpolation resolves (paths, data -> model sizes, optimizer -> scheduler lr).
    from omegaconf import OmegaConf

    OmegaConf.resolve(cfg)


def test_eval_config_composes(tmp_path):
    cfg = compose_train(["ckpt_path=some.ckpt"], tmp_path, config_name="eval")
    assert cfg.ckpt_path == "some.ckpt" and "model" not in cfg


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_instantiates_on_every_dataset(model, dataset, tmp_path):
    cfg = compose_train([f"model={model}", f"data={dataset}"], tmp_path)
    classifier = build(cfg.model, "model")
    datamodule = build(cfg.data, "data")
    shape = (2, datamodule.in_channels, datamodule.image_size, datamodule.image_size)
    assert tuple(classifier.example_input_array.shape[1:]) == shape[1:]
    classifier.eval()
    with torch.no_grad():
        logits = classifier(torch.randn(shape))
    assert logits.shape == (2, datamodule.num_classes)
    assert len(datamodule.class_names) == datamodule.num_classes


def test_data_configs_expose_the_shape_keys(tmp_path):
    for dataset in DATASETS:
        cfg = compose_train([f"data={dataset}"], tmp_path)
        for key in ("data_dir", "batch_size", "num_classes", "in_channels", "image_size", "class_names"):
            assert cfg.data[key] is not None, (dataset, key)
        assert cfg.model.net.in_channels == cfg.data.in_channels
        assert cfg.model.net.num_classes == cfg.data.num_classes


def test_callbacks_default_has_checkpoint_on_val_acc_and_no_early_stopping(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
    assert cfg.callbacks.model_checkpoint.save_last is True
    assert "early_stopping" not in cfg.callbacks
    cfg = compose_train(["callbacks=[default,early_stopping]"], tmp_path)
    stopper = instantiate(cfg.callbacks.early_stopping)
    assert stopper.monitor == "val/acc"
