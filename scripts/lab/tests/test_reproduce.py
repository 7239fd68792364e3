"""scripts/lab/reproduce.py: runs the experiments over seeds, tabulates them, reuses finished runs, writes the verdicts."""

from __future__ import annotations

import pytest
import torch

from litvision_lab import reproduce_page, reproduce_runs, tutorial_loops
from litvision_lab.paths import ROOT
from litvision_lab.reproduce import SETS
from litvision_lab.reproduce_runs import Plan

from .helpers import QUIET, run_lab


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
    result = run_lab("reproduce.py", *args)
    for seed in (0, 1):
        assert (tmp_path / "runs" / "seed000_fashion_cnn" / f"seed{seed}" / "metrics.json").is_file(), result.stdout
    cells = _table_row(output.read_text(), "seed000_fashion_cnn")
    assert cells[2:5] == ["`fashion_cnn`", "53,858", "90.18"], cells
    assert " ± " in cells[6] and cells[7] == "2", cells
    assert cells[-1] == "2 of 2 seeds ok", cells
    assert "torch " in output.read_text() and "commit " in output.read_text()

    # A second call reuses both finished runs instead of training again.
    again = run_lab("reproduce.py", *args)
    assert again.stdout.count("reusing the finished run") == 2, again.stdout

    # --table-only writes the page from finished runs alone: seed 5 never ran, so it is counted as not run.
    table = tmp_path / "table.md"
    seeds, overrides = args.index("0,1"), args.index("--")
    only_args = [*args[:seeds], "0,1,5", *args[seeds + 1 : overrides], "--table-only", *args[overrides:]]
    only = run_lab("reproduce.py", *[str(table) if a == str(output) else a for a in only_args])
    cells = _table_row(table.read_text(), "seed000_fashion_cnn")
    assert cells[-1] == "2 of 3 seeds ok; 1 not run" and cells[7] == "2", (cells, only.stdout)
    assert not (tmp_path / "runs" / "seed000_fashion_cnn" / "seed5").exists()


def test_reproduce_lists_missing_cifar10_and_gpu_as_skipped(tmp_path):
    output = tmp_path / "results.md"
    args = ["--experiments", "seed002_residual_cnn,cifar10_speedrun", "--seeds", "0", "--output", str(output)]
    args += ["--root", str(tmp_path / "runs"), "--", f"data.data_dir={tmp_path / 'empty'}"]
    run_lab("reproduce.py", *args)
    page = output.read_text()
    assert _table_row(page, "seed002_residual_cnn")[-1] == "skipped: no CIFAR-10 files"
    status = _table_row(page, "cifar10_speedrun")[-1]
    assert "no CIFAR-10 files" in status
    assert ("needs a GPU" in status) != torch.cuda.is_available()
    assert not (tmp_path / "runs").exists(), "a skipped experiment starts no run"


def test_results_page_is_the_script_s(tmp_path):
    """docs/results.md is the script's page: it names the command and holds a row per experiment of --set all."""
    page = (ROOT / "docs" / "results.md").read_text()
    assert "python scripts/lab/reproduce.py" in page
    for experiment in SETS["all"]:
        _table_row(page, experiment)


def test_a_recipe_s_digest_follows_its_settings_not_its_comments(tmp_path, monkeypatch):
    """A finished run is reused while its recipe sets the same values; a comment edit keeps it, a value edit not."""
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

    # The tutorial's own loop, as scripts/lab/tutorial_loops.py records it; a later run cut short is not taken.
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


def test_a_row_with_no_runs_here_keeps_its_earlier_row_and_says_where_it_came_from(tmp_path):
    """Rerunning one experiment on a machine without the others' run folders rewrites only that row."""
    page = tmp_path / "results.md"
    fresh = Plan("fashion_mnist_best", dataset="Fashion-MNIST", network="small_cnn", params=1)
    fresh.runs = {seed: {"status": "ok", "acc": 95.1, "wall_s": 1500.0, "epochs": 40} for seed in (0, 1, 2)}
    older = Plan("mnist_best", dataset="MNIST", network="small_cnn", params=1)
    older.runs = {seed: {"status": "ok", "acc": 99.4, "wall_s": 300.0, "epochs": 15} for seed in (0, 1, 2)}
    reproduce_page.write_page(page, [fresh, older], [0, 1, 2], [], plan_only=False)
    page.write_text(page.read_text().replace("Measured 20", "Measured in the past, 20"))  # an earlier page's line
    first = page.read_text()
    older_row = _table_row(first, "mnist_best")
    measured_first = next(line for line in first.splitlines() if line.startswith("Measured "))

    rerun = Plan("fashion_mnist_best", dataset="Fashion-MNIST", network="small_cnn", params=1)
    not_here = Plan("mnist_best", dataset="MNIST", network="small_cnn", params=1)
    reproduce_page.write_page(page, [rerun, not_here], [0, 1, 2], [], plan_only=False)  # before its first run
    assert page.read_text() == first
    rerun.runs = {seed: {"status": "ok", "acc": 94.0, "wall_s": 1500.0, "epochs": 40} for seed in (0, 1, 2)}
    reproduce_page.write_page(page, [rerun, not_here], [0, 1, 2], [], plan_only=False)  # after its runs
    second = page.read_text()
    assert _table_row(second, "mnist_best") == older_row
    assert "94.00 ± 0.00" in _table_row(second, "fashion_mnist_best")
    measured = next(line for line in second.splitlines() if line.startswith("Measured "))
    assert "(all runs done)" in measured
    assert f"Rows kept from earlier pages: {measured_first} (not run here: `mnist_best`)" in measured

    # A third page keeps naming the same source, once.
    reproduce_page.write_page(
        page, [rerun, Plan("mnist_best", dataset="MNIST", network="small_cnn")], [0, 1, 2], [], False
    )
    third = next(line for line in page.read_text().splitlines() if line.startswith("Measured "))
    assert third.count("Measured in the past") == 1 and f"{measured_first} (not run here: `mnist_best`)" in third
    assert _table_row(page.read_text(), "mnist_best") == older_row

    # Nothing run here at all (--table-only on a fresh machine): the page stays as it was measured.
    before = page.read_text()
    nothing = [Plan("fashion_mnist_best", dataset="Fashion-MNIST", network="small_cnn"), not_here]
    reproduce_page.write_page(page, nothing, [0, 1, 2], [], plan_only=False)
    assert page.read_text() == before
