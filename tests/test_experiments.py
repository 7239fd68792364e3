"""conf/experiment/: every experiment composes and runs one batch per stage; the tutorial recipes are as written."""

from __future__ import annotations

import math

import pytest

from conftest import CONF_DIR, DEBIAN_FASHION_MNIST, QUIET, compose_train, require_real_data
from litvision.tasks.train import train

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
# CPU, 32-bit and small batches whatever the recipe asks for (GPU, bf16, batch 512): the wiring is under
# test here, not the speed.
SMALL = ["trainer=cpu", "trainer.precision=32-true", "model.compile=false", "data.batch_size=16"]
SMALL += ["data.eval_batch_size=64", "data.val_size=100", "logger=none", "debug=fdr", *QUIET]


def test_the_issue_s_experiments_exist():
    tutorials = ["seed000_fashion_cnn", "seed001_simple_cnn", "seed002_lenet", "seed002_residual_cnn"]
    tutorials += ["seed003_keras_cnn", "seed004_mlp"]
    expected = tutorials + [f"{name}_better" for name in tutorials]
    expected += ["fashion_mnist_speedrun", "fashion_mnist_best", "mnist_best", "cifar10_speedrun", "cifar10_resnet18"]
    assert set(expected) <= set(EXPERIMENTS), sorted(set(expected) - set(EXPERIMENTS))


# Recipes that need more than the tiny dataset files run in their own tests: finetune_folder needs a folder of
# images and pretrained weights (tests/test_backbones.py makes a weights file and runs it).
RUN_ELSEWHERE = {"finetune_folder"}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", [name for name in EXPERIMENTS if name not in RUN_ELSEWHERE])
def test_experiment_runs_one_batch_per_stage(experiment, tiny_data_dir, tmp_path):
    cfg = compose_train([f"experiment={experiment}", f"data.data_dir={tiny_data_dir}", *SMALL], tmp_path)
    metrics = train(cfg)
    # Every stage ran its batch and logged finite numbers (a recipe whose lr or schedule breaks gives NaN).
    for key in ("train/loss", "val/loss", "test/loss", "test/acc"):
        assert math.isfinite(metrics[key]), (key, metrics)


def test_tutorial_recipes_are_as_written(tmp_path):
    """The numbers the tutorials state, checked in the composed configs (../shared/SEEDS.md)."""
    # The run's length: epochs, or optimizer steps where the recipe runs on a smaller MNIST than the tutorial's
    # 60,000 images (16 x 600 and 10 x 938 steps), so the subset trains as long as the whole set did.
    expected = {
        # experiment: (optimizer, lr, batch size, (max_epochs, max_steps), mean)
        "seed000_fashion_cnn": ("torch.optim.Adam", 0.005, 256, (9, -1), [0.0]),
        "seed002_lenet": ("torch.optim.SGD", 0.5, 100, (-1, 16 * 600), [0.0]),
        "seed002_residual_cnn": ("torch.optim.SGD", 0.9, 100, (10, -1), [0.5, 0.5, 0.5]),
        "seed003_keras_cnn": ("torch.optim.Adam", 0.001, 32, (5, -1), [0.0]),
        "seed004_mlp": ("torch.optim.SGD", 0.01, 64, (-1, 10 * 938), [0.1307]),
    }
    for experiment, (optimizer, lr, batch_size, length, mean) in expected.items():
        cfg = compose_train([f"experiment={experiment}"], tmp_path)
        got = (cfg.model.optimizer._target_, cfg.model.optimizer.lr, cfg.data.batch_size)
        assert got == (optimizer, lr, batch_size), experiment
        assert (cfg.trainer.max_epochs, cfg.trainer.get("max_steps", -1)) == length, experiment
        assert list(cfg.data.mean) == mean, experiment
        assert not cfg.model.scheduler, f"{experiment}: the tutorial has no schedule"
        assert cfg.callbacks.model_checkpoint.monitor is None, f"{experiment}: tests the last epoch"
    assert compose_train(["experiment=seed003_keras_cnn"], tmp_path).model.optimizer.eps == 1e-7
    assert compose_train(["experiment=seed004_mlp"], tmp_path).model.optimizer.momentum == 0.5


def test_better_recipes_keep_the_network(tmp_path):
    for better in [name for name in EXPERIMENTS if name.endswith("_better")]:
        plain = better.removesuffix("_better")
        nets = [compose_train([f"experiment={name}"], tmp_path).model.net for name in (plain, better)]
        assert nets[0]._target_ == nets[1]._target_, better
        assert {k: v for k, v in nets[0].items() if k != "dropout"} == {
            k: v for k, v in nets[1].items() if k != "dropout"
        }, f"{better}: the layers must stay those of {plain} (only parameter-free dropout may change)"


@pytest.mark.slow
def test_seed000_recipe_trains_to_its_measured_accuracy(tmp_path):
    require_real_data(DEBIAN_FASHION_MNIST, "apt-get install dataset-fashion-mnist")
    cfg = compose_train(["experiment=seed000_fashion_cnn", f"data.data_dir={tmp_path / 'data'}", *QUIET], tmp_path)
    metrics = train(cfg)
    # docs/results.md has 89.25 ± 0.13% over seeds 0-2, and the tutorial's own loop in plain PyTorch gives
    # 89.23 ± 0.07 on the same files (docs/tutorial_loops.md). The tutorial's 90.18% holds for neither, so
    # asserting it would pass only by luck; 88.5% is 5-6 std below the mean and still fails a recipe that
    # trains wrongly (a wrong lr, ...).
    assert metrics["test/acc"] >= 0.885, metrics
