"""conf/experiment/: every experiment composes and runs one batch per stage; scripts/reproduce.py tabulates seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from conftest import CONF_DIR, DEBIAN_FASHION_MNIST, QUIET, compose_train, require_real_data, run_main
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


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
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


def _table_row(page: str, experiment: str) -> list[str]:
    lines = [line for line in page.splitlines() if line.startswith(f"| `{experiment}`")]
    assert len(lines) == 1, page
    return [cell.strip() for cell in lines[0].strip("|").split("|")]


@pytest.mark.slow
def test_reproduce_runs_seeds_and_tabulates_mean_and_std(tiny_data_dir, tmp_path):
    output = tmp_path / "results.md"
    args = ["--experiments", "seed000_fashion_cnn", "--seeds", "0,1", "--root", str(tmp_path / "runs")]
    args += ["--output", str(output), "--", "debug=fdr", f"data.data_dir={tiny_data_dir}", "data.val_size=100"]
    args += ["logger=none", *QUIET]
    result = run_main("reproduce.py", *args)
    for seed in (0, 1):
        assert (tmp_path / "runs" / "seed000_fashion_cnn" / f"seed{seed}" / "metrics.json").is_file(), result.stdout
    cells = _table_row(output.read_text(), "seed000_fashion_cnn")
    assert cells[2:5] == ["`fashion_cnn`", "53,858", "90.18"], cells
    assert " ± " in cells[6] and cells[7] == "2", cells
    assert cells[-1] == "2 of 2 seeds ok", cells
    assert "torch " in output.read_text() and "commit " in output.read_text()

    # A second call reuses both finished runs instead of training again.
    again = run_main("reproduce.py", *args)
    assert again.stdout.count("reusing the finished run") == 2, again.stdout

    # --table-only writes the page from finished runs alone: seed 5 never ran, so it is counted as not run.
    table = tmp_path / "table.md"
    seeds, overrides = args.index("0,1"), args.index("--")
    only_args = [*args[:seeds], "0,1,5", *args[seeds + 1 : overrides], "--table-only", *args[overrides:]]
    only = run_main("reproduce.py", *[str(table) if a == str(output) else a for a in only_args])
    cells = _table_row(table.read_text(), "seed000_fashion_cnn")
    assert cells[-1] == "2 of 3 seeds ok; 1 not run" and cells[7] == "2", (cells, only.stdout)
    assert not (tmp_path / "runs" / "seed000_fashion_cnn" / "seed5").exists()


def test_reproduce_lists_missing_cifar10_and_gpu_as_skipped(tmp_path):
    output = tmp_path / "results.md"
    args = ["--experiments", "seed002_residual_cnn,cifar10_speedrun", "--seeds", "0", "--output", str(output)]
    args += ["--root", str(tmp_path / "runs"), "--", f"data.data_dir={tmp_path / 'empty'}"]
    run_main("reproduce.py", *args)
    page = output.read_text()
    assert _table_row(page, "seed002_residual_cnn")[-1] == "skipped: no CIFAR-10 files"
    status = _table_row(page, "cifar10_speedrun")[-1]
    assert "no CIFAR-10 files" in status
    import torch

    assert ("needs a GPU" in status) != torch.cuda.is_available()
    assert not (tmp_path / "runs").exists(), "a skipped experiment starts no run"


@pytest.mark.slow
def test_seed000_recipe_trains_to_its_measured_accuracy(tmp_path):
    require_real_data(DEBIAN_FASHION_MNIST, "apt-get install dataset-fashion-mnist")
    cfg = compose_train(["experiment=seed000_fashion_cnn", f"data.data_dir={tmp_path / 'data'}", *QUIET], tmp_path)
    metrics = train(cfg)
    # scripts/reproduce.py measured 89.20, 89.40 and 89.16% over seeds 0-2 (docs/results.md): mean 89.25,
    # std 0.13, where the tutorial's own loop, run here in plain PyTorch, gives 89.23 ± 0.07
    # (docs/tutorial_loops.md). The tutorial's 90.18% holds for neither, so asserting it would pass only by
    # luck; 88.5% is 5-6 std below the mean and still fails a recipe that trains wrongly (a wrong lr, ...).
    assert metrics["test/acc"] >= 0.885, metrics


def test_results_page_is_the_script_s(tmp_path):
    """docs/results.md is generated: it names the command and holds a row per experiment of --set all."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    assert "python scripts/reproduce.py" in page
    for experiment in [name for name in EXPERIMENTS if name != "cifar10_resnet18"]:
        _table_row(page, experiment)


def test_a_recipe_s_digest_follows_its_settings_not_its_comments(tmp_path, monkeypatch):
    """A finished run is reused while its recipe sets the same values; a comment edit keeps it, a value edit not."""
    import reproduce_runs

    monkeypatch.setattr(reproduce_runs, "CONF_DIR", tmp_path)
    recipe = tmp_path / "experiment" / "mine.yaml"
    recipe.parent.mkdir()
    recipe.write_text("# @package _global_\n# 5 epochs\ntrainer:\n  max_epochs: 5\nseed: 1\n")
    before = reproduce_runs.recipe_hash("mine")
    recipe.write_text("# @package _global_\n# five epochs, reworded\nseed: 1   # the seed\ntrainer: {max_epochs: 5}\n")
    assert reproduce_runs.recipe_hash("mine") == before
    recipe.write_text("# @package _global_\ntrainer:\n  max_epochs: 6\nseed: 1\n")
    assert reproduce_runs.recipe_hash("mine") != before


def test_verdicts_and_readme_rows_follow_the_measured_seeds(tmp_path, monkeypatch):
    import reproduce_page
    import tutorial_loops
    from reproduce_runs import Plan

    def plan(name: str, accs: list[float], wall: float = 60.0) -> Plan:
        made = Plan(name, dataset="Fashion-MNIST", network="fashion_cnn")
        made.runs = {seed: {"status": "ok", "acc": acc, "wall_s": wall} for seed, acc in enumerate(accs)}
        return made

    plans = [
        plan("seed000_fashion_cnn", [90.0, 90.3, 89.9]),
        plan("seed000_fashion_cnn_better", [91.0, 91.2, 91.1]),
        plan("seed004_mlp", [96.4, 96.7, 96.6]),
        plan("fashion_mnist_speedrun", [92.1, 92.3, 92.2], wall=95.0),
    ]
    means = {p.experiment: sum(r["acc"] for r in p.runs.values()) / 3 for p in plans}
    verdicts = [reproduce_page.verdict(p.experiment, [r["acc"] for r in p.runs.values()], [95.0], means) for p in plans]
    assert verdicts[0] == "reproduced: within one std of the tutorial"  # 90.07 + 0.21 >= 90.18
    assert verdicts[1] == "beats the tutorial by +0.92; +1.03 over its recipe here"
    assert verdicts[2] == "reproduced: at or above the tutorial"  # "97%" printed whole: 96.5 and up count
    assert verdicts[3] == "goal not met: 5 s over"

    # The tutorial's own loop, as scripts/tutorial_loops.py records it; a later run cut short is not taken.
    run = {"seed": 0, "train_images": 60000, "steps": 2115, "as_written": 89.2}
    loops = tutorial_loops.table({"seed000": [{**run, "eval": 89.2}, {**run, "seed": 1, "eval": 89.3}]})
    loops += tutorial_loops.table({"seed000": [{**run, "steps": 40, "eval": 12.0}]})
    monkeypatch.setattr(reproduce_page, "LOOPS_PAGE", tmp_path / "loops.md")
    reproduce_page.LOOPS_PAGE.write_text("\n".join(loops) + "\n")
    assert reproduce_page.own_loops() == {"seed000_fashion_cnn": "89.25 ± 0.07"}

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold rows\n<!-- results:end -->\nrest\n")
    reproduce_page.write_readme_rows(readme, plans, [0, 1, 2])
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:start -->\n") and text.endswith("<!-- results:end -->\nrest\n")
    assert "old rows" not in text
    assert "| `fashion_cnn` | Fashion-MNIST | 90.18 | 89.25 ± 0.07 | 90.07 ± 0.21 | 91.10 ± 0.10 |" in text
    assert "| `fashion_mnist_speedrun` | >= 92.0% in <= 90 s on a 2-core CPU | 92.20 ± 0.10, 95 s per run |" in text
