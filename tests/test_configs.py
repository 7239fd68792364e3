"""The configs: every option of every group composes (every model on every dataset: tests/test_models.py), the
bases, the local group, the missing extras, and a config printed without loading torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from conftest import CONF_DIR, ROOT, compose_train, data_overrides
from litvision.support.instantiate import build

# Every model and every dataset compose, build and run on each other in tests/test_models.py (and every
# dataset with the default model below): composing them here as well would only repeat it.
GROUPS = ["trainer", "callbacks", "logger", "debug", "experiment", "paths", "hydra"]
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
    OmegaConf.resolve(cfg)


def test_eval_config_composes(tmp_path):
    cfg = compose_train(["ckpt_path=some.ckpt"], tmp_path, config_name="eval")
    assert cfg.ckpt_path == "some.ckpt" and "model" not in cfg


@pytest.mark.parametrize("dataset", DATASETS)
def test_the_classifier_takes_its_sizes_from_the_data_config(dataset, tmp_path, image_folder):
    # Every model on every dataset: tests/test_models.py. Here: the module around the default net.
    cfg = compose_train([f"data={dataset}", *data_overrides(dataset, image_folder)], tmp_path)
    classifier = build(cfg.model, "model")
    datamodule = build(cfg.data, "data")
    shape = (2, datamodule.in_channels, datamodule.image_size, datamodule.image_size)
    assert tuple(classifier.example_input_array.shape[1:]) == shape[1:]
    classifier.eval()
    with torch.no_grad():
        logits = classifier(torch.randn(shape))
    assert logits.shape == (2, datamodule.num_classes)
    assert len(datamodule.class_names) == datamodule.num_classes


def test_data_configs_expose_the_shape_keys(tmp_path, image_folder):
    for dataset in DATASETS:
        cfg = compose_train([f"data={dataset}", *data_overrides(dataset, image_folder)], tmp_path)
        for key in ("data_dir", "batch_size", "num_classes", "in_channels", "image_size", "class_names"):
            assert cfg.data[key] is not None, (dataset, key)
        assert cfg.model.net.in_channels == cfg.data.in_channels
        assert cfg.model.net.num_classes == cfg.data.num_classes


def test_callbacks_default_has_checkpoint_on_val_acc_and_no_early_stopping(tmp_path):
    cfg = compose_train([], tmp_path)
    assert cfg.callbacks.model_checkpoint.monitor == "val/acc"
    assert cfg.callbacks.last_checkpoint.filename == "last" and cfg.callbacks.last_checkpoint.monitor is None
    assert "early_stopping" not in cfg.callbacks
    cfg = compose_train(["callbacks=[default,early_stopping]"], tmp_path)
    stopper = instantiate(cfg.callbacks.early_stopping)
    assert stopper.monitor == "val/acc"


# --- base configs: a dataset extends only conf/data/base, a model gets its sizes from conf/model/base --------


@pytest.mark.parametrize("dataset", DATASETS)
def test_data_configs_extend_only_the_base(dataset):
    own = OmegaConf.load(CONF_DIR / "data" / f"{dataset}.yaml")
    assert list(own.defaults) == [{"base@_here_": "image"}, "_self_"]
    for key in ("_target_", "num_classes", "in_channels", "image_size", "mean", "std", "class_names"):
        assert key in own, (dataset, key)  # the base leaves them ??? (mandatory)


@pytest.mark.parametrize("model", MODELS)
def test_model_configs_leave_the_sizes_to_the_base(model):
    # The composed sizes (the data config's, through the base) are checked for every model on every
    # dataset in tests/test_models.py.
    own = OmegaConf.load(CONF_DIR / "model" / f"{model}.yaml")
    assert not {"in_channels", "image_size", "num_classes"} & set(own.net), model


# --- the optional, git-ignored local group -----------------------------------------------------------------


def compose_in(conf_dir: Path, overrides: list[str], config_name: str = "train") -> DictConfig:
    """Compose from a copy of conf/ (the hydra node included), so a test can add conf/local/default.yaml."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture
def conf_copy(tmp_path) -> Path:
    """conf/ copied without a developer's own conf/local/default.yaml."""
    target = tmp_path / "conf"
    shutil.copytree(CONF_DIR, target, ignore=lambda folder, names: ["default.yaml"] if folder.endswith("local") else [])
    return target


LOCAL = """\
# @package _global_
defaults:
  - override /hydra/launcher: parallel
paths:
  data_dir: /datasets/here
data:
  batch_size: 64
trainer:
  max_epochs: 7
hydra:
  launcher:
    n_jobs: 3
"""


def test_local_config_is_optional_and_git_ignored(conf_copy):
    cfg = compose_in(conf_copy, [])
    assert OmegaConf.to_container(cfg.paths)["data_dir"] == "${paths.root_dir}/data" and cfg.data.batch_size == 256
    assert "BasicLauncher" in cfg.hydra.launcher._target_
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "conf/local/default.yaml" in ignored
    assert (CONF_DIR / "local" / ".gitkeep").exists()


def test_local_config_overrides_the_groups_and_experiment_but_not_debug_or_the_command_line(conf_copy):
    (conf_copy / "local" / "default.yaml").write_text(LOCAL)
    cfg = compose_in(conf_copy, [])
    assert cfg.paths.data_dir == "/datasets/here" and cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 7
    assert "JoblibLauncher" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.n_jobs == 3
    cfg = compose_in(conf_copy, ["experiment=cifar10_resnet18"])  # the experiment says batch 512, 30 epochs
    assert cfg.data._target_.endswith("CIFAR10DataModule") and cfg.data.batch_size == 64
    assert cfg.trainer.max_epochs == 7
    cfg = compose_in(conf_copy, ["debug=limit", "data.batch_size=32"])
    assert cfg.trainer.max_epochs == 2 and cfg.data.batch_size == 32
    cfg = compose_in(conf_copy, ["~local"])
    assert cfg.data.batch_size == 256 and "BasicLauncher" in cfg.hydra.launcher._target_
    cfg = compose_in(conf_copy, ["ckpt_path=x.ckpt"], config_name="eval")
    assert cfg.paths.data_dir == "/datasets/here" and cfg.data.batch_size == 64


def test_local_example_composes_uncommented(conf_copy):
    """conf/local/example.yaml with its settings uncommented is a valid local config for every script."""
    header, _, body = (CONF_DIR / "local" / "example.yaml").read_text().partition("\n\n")
    assert header.startswith("# @package _global_\n")
    body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
    (conf_copy / "local" / "default.yaml").write_text(f"{header}\n\n{body}\n")
    for name, overrides in (
        ("train", []),
        ("eval", ["ckpt_path=x.ckpt"]),
        ("predict", ["ckpt_path=x.ckpt"]),
        ("export", ["ckpt_path=x.ckpt"]),
    ):
        cfg = compose_in(conf_copy, overrides, config_name=name)
        assert "JoblibLauncher" in cfg.hydra.launcher._target_, f"conf/{name}.yaml lacks `- optional local: default`"
        assert cfg.hydra.runtime.choices.trainer == "gpu" and cfg.paths.data_dir == "/scratch/datasets", name


# --- extras: without one, the feature that needs it stops with one line naming the extra -------------------

# Runs scripts/train.py with some modules made unimportable (None in sys.modules, as for a missing package).
WITHOUT = """\
import runpy, sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def train_without(modules: list[str], options: list[str], overrides: list[str], log_dir: Path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    script = str(ROOT / "scripts" / "train.py")
    command = [
        sys.executable,
        "-c",
        WITHOUT,
        ",".join(modules),
        script,
        *options,
        *overrides,
        "~local",
        f"paths.log_dir={log_dir}",
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_printing_the_config_loads_neither_torch_nor_lightning(tmp_path, image_folder):
    """--cfg, --help and config errors answer in a second: the task is imported only when it runs (the
    folder resolvers count the classes without torch too)."""
    overrides = ["data=folder", f"data.data_dir={image_folder}"]
    result = train_without(["torch", "lightning"], ["--cfg", "job", "--resolve"], overrides, log_dir=tmp_path / "logs")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "FolderDataModule" in result.stdout and "num_classes: 10" in result.stdout, result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "modules,overrides,line",
    [
        (
            ["optuna"],
            ["hparams_search=fashion_mnist_optuna"],
            "error: hparams_search (hydra/sweeper=litvision_optuna) needs Optuna: pip install 'litvision[optuna]'",
        ),
        (
            ["hydra_plugins.hydra_joblib_launcher"],
            ["hydra/launcher=parallel", "seed=1,2"],
            "error: hydra/launcher=parallel needs hydra-joblib-launcher: pip install 'litvision[launchers]'",
        ),
        (
            ["hydra_plugins.hydra_submitit_launcher"],
            ["hydra/launcher=slurm", "seed=1,2"],
            "error: hydra/launcher=slurm needs hydra-submitit-launcher: pip install 'litvision[launchers]'",
        ),
    ],
    ids=["optuna", "parallel", "slurm"],
)
def test_a_missing_extra_is_one_line(modules, overrides, line, tmp_path):
    result = train_without(modules, ["-m"], overrides, log_dir=tmp_path / "logs")
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [line], result.stderr[-3000:]
    assert not (tmp_path / "logs").exists()  # it stopped before any sweep or job dir


@pytest.mark.slow
def test_a_missing_launcher_package_still_composes(tmp_path):
    """Without the launchers extra, a config that picks a launcher (say conf/local) still composes: a single
    run never creates the launcher."""
    missing = ["hydra_plugins.hydra_joblib_launcher", "hydra_plugins.hydra_submitit_launcher"]
    result = train_without(
        missing,
        ["--cfg", "hydra", "--package", "hydra.launcher"],
        ["hydra/launcher=parallel"],
        log_dir=tmp_path / "logs",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MissingLauncher" in result.stdout and "n_jobs: 2" in result.stdout
