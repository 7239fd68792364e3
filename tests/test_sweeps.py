"""Sweeps and scale-out: grids that survive failures, Optuna searches that resume and prune, summaries, DDP on CPU."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import CONF_DIR, QUIET, ROOT, compose_train, run_main, run_script, tiny_mlp_args
from litvision.support.checkpoint import read_checkpoint
from litvision.sweeps.search_space import SearchSpaceError, parse_search_space
from litvision.tasks.train import train

HPARAMS_SEARCH = "hparams_search"  # a group in conf/train.yaml's defaults, so no "+" is needed


def statuses(run_dirs: list[Path]) -> dict[str, str]:
    return {d.name: json.loads((d / "status.json").read_text())["status"] for d in run_dirs}


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def only_sweep_dir(root: Path) -> Path:
    sweeps = list((root / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


@pytest.mark.slow
def test_grid_records_failed_runs_and_finishes_the_others(tiny_data_dir, tmp_path):
    # 2x2 grid: a bad learning rate fails two runs; the other two still run, each run says how it ended.
    result = run_script(
        "train.py",
        "-m",
        "model.optimizer.lr=0.003,fast",
        "seed=1,2",
        "debug=fdr",
        *tiny_mlp_args(tiny_data_dir, tmp_path),
        check=False,
    )
    assert result.returncode == 1
    assert "error: 4 runs: 2 ok, 2 failed" in result.stderr and "invalid model.optimizer options" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "HYDRA_FULL_ERROR" not in result.stderr
    sweep = only_sweep_dir(tmp_path)
    assert statuses(job_dirs(sweep)) == {"0": "ok", "1": "ok", "2": "failed", "3": "failed"}
    assert "test/acc" in json.loads((sweep / "0" / "metrics.json").read_text())["metrics"]

    summary = run_main("summarize.py", str(sweep))
    table = summary.stdout
    assert "| run | model.optimizer.lr | seed | val/acc_best | test/acc | epochs | wall | status |" in table
    assert table.count("| failed: LitvisionError") == 2
    assert re.search(r"\| 0\.003 \| 1,2 \| \d\.\d{4} ± \d\.\d{4} \|", table), table  # mean ± std over the seeds
    rows = (sweep / "summary.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("run,model.optimizer.lr,seed,val/acc_best,test/acc")


@pytest.mark.slow
def test_optuna_search_resumes_after_being_killed(tiny_data_dir, tmp_path):
    args = [
        str(ROOT / "scripts" / "train.py"),
        "-m",
        f"{HPARAMS_SEARCH}=fashion_mnist_optuna",
        f"paths.root_dir={tmp_path}",
        f"data.data_dir={tiny_data_dir}",
        "data.val_size=100",
        *QUIET,
        "hydra.sweeper.n_trials=3",
        "trainer.max_epochs=1",
        "model.net.widths=choice([8,16],[16,32])",
    ]
    study_dir = tmp_path / "logs" / "train" / "optuna" / "fashion_mnist_small_cnn"
    database = study_dir / "study.db"
    first_log = tmp_path / "first.log"  # a file, not a pipe: nobody reads the pipe while the search runs
    with first_log.open("w") as log_file:
        first = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    second_job_started = study_dir / "1" / ".hydra" / "overrides.yaml"
    try:  # kill it once the first trial has finished and the second one's job has started
        _wait_for(lambda: _finished_trials(database) >= 1 and second_job_started.is_file(), first, first_log)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # no clean-up: as when a machine or a session dies
        first.wait()
    assert _finished_trials(database) < 3, first_log.read_text()[-3000:]

    resumed = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "trials already finished" in resumed.stdout + resumed.stderr
    study = optuna.load_study(study_name="fashion_mnist_small_cnn", storage=f"sqlite:///{database}")
    states = [trial.state.name for trial in study.trials]
    assert len(states) == 3 and "RUNNING" not in states and states.count("COMPLETE") >= 2, states
    # Wherever the kill landed, a trial it cut short is recorded as failed (interrupted), never left running.
    for trial in study.trials:
        status = json.loads((study_dir / str(trial.number) / "status.json").read_text())
        assert status["status"] == {"COMPLETE": "ok", "FAIL": "failed"}[trial.state.name]
        if trial.state.name == "FAIL":
            assert "interrupted" in status["error"]
    best = study.best_trial
    assert (
        best.value == json.loads((study_dir / str(best.number) / "metrics.json").read_text())["metrics"]["val/acc_best"]
    )

    summary = run_main("summarize.py", str(study_dir))
    assert "3 runs, best val/acc_best first" in summary.stdout
    assert re.search(rf"^\| {best.number} \| .*\| ok \|$", summary.stdout, re.M)


@pytest.mark.slow
def test_optuna_study_goes_on_past_failed_and_pruned_trials(tiny_data_dir, tmp_path):
    # Every value once (brute force): a good rate, one that raises, and 0 (chance accuracy: pruned).
    result = run_script(
        "train.py",
        "-m",
        "hydra/sweeper=litvision_optuna",
        "+optimized_metric=val/acc_best",
        f"hydra.sweeper.storage={tmp_path / 'study.db'}",
        "hydra.sweeper.study_name=lr",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler._target_=optuna.samplers.BruteForceSampler",
        "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:0.3,n_warmup_steps:1}",
        "model.optimizer.lr=choice(0.01,fast,0.0)",
        "trainer.max_epochs=2",
        *tiny_mlp_args(tiny_data_dir, tmp_path),
    )
    study = optuna.load_study(study_name="lr", storage=f"sqlite:///{tmp_path / 'study.db'}")
    by_lr = {trial.params["model.optimizer.lr"]: trial for trial in study.trials}
    assert {lr: trial.state.name for lr, trial in by_lr.items()} == {0.01: "COMPLETE", "fast": "FAIL", 0.0: "PRUNED"}
    assert by_lr[0.01].value > 0.5
    assert len(by_lr[0.0].intermediate_values) == 2  # reported every epoch, stopped at the first allowed one
    sweep = only_sweep_dir(tmp_path)
    assert statuses(job_dirs(sweep)) == {
        str(t.number): {"COMPLETE": "ok", "FAIL": "failed", "PRUNED": "pruned"}[t.state.name] for t in study.trials
    }
    assert "3 runs: 1 ok, 1 pruned, 1 failed" in result.stdout + result.stderr

    table = run_main("summarize.py", str(sweep)).stdout
    lines = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[1] for line in lines] == ["0.01", "0.0", "fast"]  # best first, failed last
    assert f"pruned: TrialPruned: trial {by_lr[0.0].number} pruned after epoch 1" in lines[1]


@pytest.mark.slow
def test_ddp_cpu_matches_one_process_and_batch_size_is_per_device(tiny_data_dir, tmp_path):
    # 2 processes x 32 images see exactly the batches of 1 process x 64 (rank r takes every 2nd example).
    single = train(
        compose_train(
            [
                f"data.data_dir={tiny_data_dir}",
                "data=mnist",
                "data.val_size=100",
                "model=mlp",
                "trainer.max_epochs=1",
                "data.batch_size=64",
                "logger=csv",
                *QUIET,
            ],
            tmp_path / "single",
        )
    )
    ddp_dir = tmp_path / "ddp"
    run_script(
        "train.py",
        *tiny_mlp_args(
            tiny_data_dir,
            tmp_path,
            "trainer=ddp_cpu",
            "trainer.max_epochs=1",
            "data.batch_size=32",
            "logger=csv",
            f"hydra.run.dir={ddp_dir}",
        ),
    )
    ddp = json.loads((ddp_dir / "metrics.json").read_text())["metrics"]
    assert abs(ddp["val/acc"] - single["val/acc"]) <= 0.02
    # data.batch_size is per device: each of the 2 ranks takes ceil(250 / 32) = 8 steps over its 250 images.
    assert read_checkpoint(ddp_dir / "checkpoints" / "last.ckpt")["global_step"] == math.ceil(250 / 32)
    assert json.loads((ddp_dir / "status.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_multirun_with_ddp_cpu_runs_each_job_once(tiny_data_dir, tmp_path):
    # Lightning's DDP relaunches sys.argv: under -m that would rerun the whole sweep in every child.
    run_script(
        "train.py",
        "-m",
        "seed=1,2",
        *tiny_mlp_args(tiny_data_dir, tmp_path, "trainer=ddp_cpu", "trainer.max_epochs=1", "logger=csv"),
    )
    assert [p.name for p in (tmp_path / "logs" / "train").iterdir()] == ["multiruns"]  # no stray run dirs
    sweep = only_sweep_dir(tmp_path)
    jobs = job_dirs(sweep)
    assert [p.name for p in jobs] == ["0", "1"] and statuses(jobs) == {"0": "ok", "1": "ok"}
    for job in jobs:
        assert json.loads((job / "metrics.json").read_text())["epochs"] == 1
        assert (job / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize(
    "entry,message",
    [
        ("interval(5,1)", "low <= high"),
        ("tag(log, interval(0,1))", "low > 0"),
        ("tag(exp, interval(1,2))", "unknown tag"),
        ("interval(1,x)", "does not parse"),
        ("range(5,1)", "the range is empty"),
    ],
)
def test_bad_search_space_entries_are_named(entry, message):
    with pytest.raises(SearchSpaceError, match=re.escape(message)) as caught:
        parse_search_space({"model.optimizer.lr": entry}, [])
    assert "model.optimizer.lr" in str(caught.value)


@pytest.mark.parametrize(
    "override,message",
    [
        ("hydra.sweeper.n_trial=3", "Key 'n_trial' not in 'OptunaSweeperConf'"),
        ("hydra.sweeper.direction=up", "Invalid value 'up', expected one of [maximize, minimize]"),
    ],
)
def test_bad_sweeper_options_are_refused_when_composing(override, message):
    # Hydra prints these composition errors as they are, without a traceback.
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with pytest.raises(ConfigCompositionException) as caught:
            compose("train", overrides=["hydra/sweeper=litvision_optuna", override], return_hydra_config=True)
    assert message in str(caught.value) + str(caught.value.__cause__)


def test_slurm_launcher_takes_nodes_from_the_trainer_and_one_task_per_gpu():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.num_nodes=2", "hydra.launcher.gpus_per_node=4"],
            return_hydra_config=True,
        )
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    assert (cfg.hydra.launcher.nodes, cfg.hydra.launcher.tasks_per_node) == (2, 4)
    raw = OmegaConf.to_container(cfg.hydra, resolve=False)
    assert "%f}" in raw["run"]["dir"] and "%f}" in raw["sweep"]["dir"]  # microseconds: no clash within a second


def _finished_trials(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(
                "SELECT count(*) FROM trials WHERE state IN ('COMPLETE','PRUNED','FAIL')"
            ).fetchone()[0]
    except sqlite3.OperationalError:  # the tables are being created
        return 0


def _wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the search ended too early:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("the search made no progress in time")
        time.sleep(0.1)
