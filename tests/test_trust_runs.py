"""Run folders, predict's options and Optuna studies shared by several workers, treated as untrusted input.

A sweep folder can come from anyone: its files are read as data (no YAML tags, no interpolation), a run
whose files are not litvision's is listed as unreadable with its path, and names become text and
relative links. Predict checks every option before it reads anything. Two searches on one study run
each trial once and never fail each other's running trials.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from lightning import Callback
from PIL import Image

from conftest import ROOT, run_main, tiny_mlp_args
from litvision.sweeps import results_table
from litvision.sweeps.workers import (
    SURPLUS_ATTR,
    WORKER_ATTR,
    budget_trials,
    parse_reclaim,
    stale_trials,
    this_worker,
    within_budget,
    worker_gone,
)

SENTINEL = "ran.txt"  # what a hostile file would create if it were executed
SECRET = "not-for-the-page-3141"


def assert_one_error_line(result, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_run(sweep: Path, name: str, overrides: list[str] | bytes, lr_acc: float = 0.5, **files: object) -> Path:
    """A job folder as a sweep leaves it; ``files`` replace metrics.json/status.json/report_data.json (bytes: as is)."""
    run = sweep / name
    (run / ".hydra").mkdir(parents=True)
    saved = overrides if isinstance(overrides, bytes) else yaml.safe_dump(overrides).encode()
    (run / ".hydra" / "overrides.yaml").write_bytes(saved)
    contents = {
        "metrics.json": {"metrics": {"val/acc_best": lr_acc}, "epochs": 2},
        "status.json": {"status": "ok", "wall_s": 3.0},
        "report_data.json": {"curves": {"val/acc": [[1, 2], [lr_acc - 0.1, lr_acc]]}},
        **{f"{key.removesuffix('_json')}.json": value for key, value in files.items()},
    }
    for file, content in contents.items():
        (run / file).write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    (run / "report.html").write_text("<html></html>")
    return run


@pytest.fixture
def hostile_sweep(tmp_path, monkeypatch) -> Path:
    """Two good runs (one with an interpolation as a value), and runs whose files are hostile or broken."""
    monkeypatch.setenv("LITVISION_SECRET", SECRET)  # what resolving the interpolation would print
    sweep = tmp_path / "sweep"
    write_run(sweep, "0", ["model.optimizer.lr=${oc.env:LITVISION_SECRET}", "seed=1"], 0.6)
    write_run(sweep, "1", ["model.optimizer.lr=$\\frac{1}{0}|x", "seed=2"], 0.7)
    tag = f'!!python/object/apply:os.system ["touch {tmp_path / SENTINEL}"]'.encode()
    write_run(sweep, "2", tag)
    write_run(sweep, "3", b"\xff\xfe not text")
    write_run(sweep, "4", b"{model: resnet}")  # YAML, but not a list of overrides
    write_run(sweep, "5", ["seed=5"], metrics_json={"metrics": {"val/acc_best": "high"}})
    write_run(sweep, "6", ["seed=6"], status_json={"status": "ok", "wall_s": [1]})
    write_run(sweep, "7", ["seed=7"], metrics_json=b"[" * 100_000)  # nested past the parser's recursion limit
    write_run(sweep, "8", ["seed=8"], report_data_json={"curves": {"val/acc": "not numbers"}})
    (write_run(sweep, "9", ["seed=9"]) / "status.json").unlink()
    os.mkfifo(sweep / "9" / "status.json")  # opening it to read would wait for a writer forever
    (sweep / "multirun.yaml").write_text("hydra: [sweeper]\noptimized_metric: {not: a name}\n")
    return sweep


UNREADABLE = {
    "2": ".hydra/overrides.yaml: not valid YAML",
    "3": ".hydra/overrides.yaml: not UTF-8 text",
    "4": ".hydra/overrides.yaml: not a list of overrides (key=value strings)",
    "5": "metrics.json: 'metrics' is not a mapping of names to numbers",
    "6": "status.json: 'wall_s' is not a number of seconds",
    "7": "metrics.json: not valid JSON",
    "9": "status.json: not a regular file",
}


def test_summarize_lists_hostile_runs_as_unreadable_and_summarises_the_rest(hostile_sweep, tmp_path):
    result = run_main("summarize.py", str(hostile_sweep))
    rows = {
        line.split(" | ")[0].removeprefix("| "): line for line in result.stdout.splitlines() if line.startswith("| ")
    }
    assert "10 runs, best val/acc_best first" in result.stdout
    for name, why in UNREADABLE.items():
        assert rows[name].endswith(f"| unreadable: {hostile_sweep / name / why} |"), rows[name]
    assert rows["1"].startswith("| 1 | $\\frac{1}{0}\\|x | 2 | 0.7000 |")  # best first, the | kept as text
    assert "| 0 | ${oc.env:LITVISION_SECRET} | 1 | 0.6000 |" in rows["0"]  # literal: never resolved
    assert SECRET not in result.stdout
    assert "| ok |" in rows["8"]  # its curve file is the sweep page's business
    assert not (tmp_path / SENTINEL).exists()
    with (hostile_sweep / "summary.csv").open(encoding="utf-8") as stream:
        table = {row["run"]: row for row in csv.DictReader(stream)}
    assert table["0"]["model.optimizer.lr"] == "${oc.env:LITVISION_SECRET}" and table["2"]["status"] == "unreadable"
    assert table["3"]["error"] == f"{hostile_sweep / '3' / '.hydra/overrides.yaml'}: not UTF-8 text"
    assert not list(hostile_sweep.glob(".*.tmp"))


def test_the_sweep_page_shows_hostile_runs_as_text(hostile_sweep, tmp_path):
    for name in ('javascript:alert("x")', "a'<b>x", "\x1b[31mred"):
        write_run(hostile_sweep, name, ["seed=10"], 0.4)
    result = run_main("report.py", str(hostile_sweep))
    assert result.stdout.startswith("wrote ") and not (tmp_path / SENTINEL).exists()
    page = (hostile_sweep / "report.html").read_text()
    links = [link.split('"')[0] for link in page.split('href="')[1:]]
    assert links and all(link.startswith(("./", "#")) for link in links), links
    assert "./javascript%3Aalert%28%22x%22%29/report.html" in links and "./a%27%3Cb%3Ex/report.html" in links
    assert "<b>" not in page and "a&#x27;&lt;b&gt;x" in page and "\x1b" not in page and "\\x1b[31mred" in page
    assert "${oc.env:LITVISION_SECRET}" in page and SECRET not in page
    for name, why in UNREADABLE.items():
        assert f"unreadable: {hostile_sweep / name / why}".replace("'", "&#x27;") in page, name
    assert "curves left out, report_data.json unreadable: 8" in page
    assert not list(hostile_sweep.glob(".*.tmp"))


def test_a_summary_that_fails_midway_leaves_the_old_csv_whole(tmp_path, monkeypatch):
    write_run(tmp_path, "0", ["seed=1"])
    runs = results_table.read_runs(tmp_path)
    results_table.write_csv(tmp_path / "summary.csv", runs, ["val/acc_best"], "val/acc_best", False)
    before = (tmp_path / "summary.csv").read_text()

    def failing_writer(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results_table.csv, "writer", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        results_table.write_csv(tmp_path / "summary.csv", runs, ["val/acc_best"], "val/acc_best", False)
    assert (tmp_path / "summary.csv").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "summary.csv"]


# -- predict's options ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("top_k=abc", "top_k must be a whole number >= 1 (got 'abc')"),
        ("top_k=true", "top_k must be a whole number >= 1 (got True)"),
        ("batch_size=0", "batch_size must be a whole number >= 1 (got 0)"),
        ("batch_size=2.5", "batch_size must be a whole number >= 1 (got 2.5)"),
        ("show=-1", "show must be a whole number >= 0 (got -1)"),
        ("device=meta", "device must be cpu, cuda, cuda:<n> or auto (got 'meta')"),
        ("device=gpu", "device must be cpu, cuda, cuda:<n> or auto (got 'gpu')"),
        ("resize=bogus", "resize must be crop, pad or null (got 'bogus')"),
        ("progress_bar=maybe", "progress_bar must be true or false (got 'maybe')"),
        ("inputs={a:1}", "inputs must be a file, a folder or a glob, or a list of them"),
    ],
)
def test_a_wrong_predict_option_is_one_line_before_anything_is_read(option, message, tmp_path):
    # The checkpoint does not exist: the option is checked first, so its line is what the user sees.
    out = tmp_path / "out"
    args = [f"ckpt_path={tmp_path / 'missing.ckpt'}", "inputs=x.png", option, f"hydra.run.dir={out}"]
    assert_one_error_line(run_main("predict.py", *args, check=False), message)
    assert not (out / "predictions.csv").exists()


@pytest.mark.slow
def test_predict_shows_file_names_as_text_and_writes_the_csv_whole(tiny_data_dir, tmp_path):
    run_main("train.py", *tiny_mlp_args(tiny_data_dir, tmp_path / "train", "trainer.max_epochs=1", "test=false"))
    (checkpoint,) = (tmp_path / "train").rglob("last.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["[red]x.png", "[link=javascript:x]a.png", "\x1b[2Jclear.png"]
    for name in names:
        Image.new("L", (28, 28), 128).save(photos / name, format="png")
    out = tmp_path / "out"
    # From the folder itself, so the printed paths are short enough for the table not to fold them.
    result = run_main("predict.py", f"ckpt_path={checkpoint}", "inputs=.", f"hydra.run.dir={out}", cwd=photos)
    assert "[red]x.png" in result.stdout and "[link=javascript:x]a.png" in result.stdout
    assert "\x1b[2J" not in result.stdout
    with (out / "predictions.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted(Path(row["path"]).name for row in rows) == sorted(names)
    assert all(row["error"] == "" and row["class_1"] for row in rows)
    assert not list(out.glob(".*.tmp"))


# -- several workers on one Optuna study -----------------------------------------------------------
def _dead_worker() -> dict:
    """The identity of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return {**this_worker(), "pid": child.pid, "started": None}


def _study_with_running(path: Path, workers: list[dict | None]) -> optuna.Study:
    study = optuna.create_study(study_name="shared", storage=f"sqlite:///{path}", direction="maximize")
    for worker in workers:
        trial = study.ask()
        if worker is not None:
            trial.set_user_attr(WORKER_ATTR, worker)
    return study


def test_only_a_gone_workers_trials_are_taken_unless_the_user_names_them(tmp_path):
    elsewhere = {**this_worker(), "host": "other-" + socket.gethostname()}
    reused_pid = {**this_worker(), "started": -1}  # this pid, but another process's start time
    study = _study_with_running(tmp_path / "s.db", [this_worker(), _dead_worker(), elsewhere, None, reused_pid])
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    taken, left = stale_trials(running, parse_reclaim(None))
    assert [t.number for t in taken] == [1, 4]
    assert [(t.number, why.split(";")[0]) for t, why in left] == [
        (0, f"runs in worker {socket.gethostname()}:{os.getpid()}"),
        (2, f"worker other-{socket.gethostname()}:{os.getpid()}, not on this host"),
        (3, "no worker recorded"),
    ]
    assert "hydra.sweeper.reclaim=[2]" in left[1][1]
    assert [t.number for t in stale_trials(running, parse_reclaim([2, 3]))[0]] == [1, 2, 3, 4]
    assert [t.number for t in stale_trials(running, parse_reclaim("all"))[0]] == [1, 2, 3, 4]  # never a live one


def test_a_killed_worker_not_yet_reaped_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        worker = {**this_worker(), "pid": child.pid}
        worker["started"] = None
        assert worker_gone(worker) is False
        child.kill()
        while open(f"/proc/{child.pid}/stat").read().rpartition(")")[2].split()[0] != "Z":
            time.sleep(0.01)
        assert worker_gone(worker) is True  # a zombie: exited, only its parent has not reaped it yet
    finally:
        child.kill()
        child.wait()


def test_the_study_budget_is_its_lowest_numbered_trials(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}")
    trials = [study.ask() for _ in range(3)]  # three workers asked at once
    assert [within_budget(study, trial.number, n_trials=2) for trial in trials] == [True, True, False]
    trials[2].set_user_attr(SURPLUS_ATTR, True)  # as the sweeper marks it
    study.tell(trials[2], state=optuna.trial.TrialState.FAIL)
    assert [t.number for t in budget_trials(study)] == [0, 1]  # a surplus trial counts toward nothing


@pytest.mark.parametrize("value", ["some", [1, "x"], [-1], True])
def test_a_bad_reclaim_is_one_line(value):
    with pytest.raises(Exception, match="hydra.sweeper.reclaim takes a list of trial numbers or all"):
        parse_reclaim(value)


def _search(database: Path, sweep: Path, n_trials: int, *extra: str) -> list[str]:
    return [
        "-m",
        "hydra/sweeper=litvision_optuna",
        "+optimized_metric=val/acc_best",
        f"hydra.sweeper.storage={database}",
        "hydra.sweeper.study_name=shared",
        f"hydra.sweeper.n_trials={n_trials}",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweeper.sampler._target_=optuna.samplers.RandomSampler",
        "model.optimizer.lr=interval(0.001,0.01)",
        *extra,
    ]


def test_a_second_search_leaves_a_live_workers_trial_running(tiny_data_dir, tmp_path):
    # Trial 0 runs in a live worker (this process) and fills n_trials=1: the second search runs nothing, fails nothing.
    database = tmp_path / "study.db"
    _study_with_running(database, [this_worker()])
    result = run_main("train.py", *_search(database, tmp_path / "sweep", 1), *tiny_mlp_args(tiny_data_dir, tmp_path))
    assert f"trial 0 is running (runs in worker {socket.gethostname()}:{os.getpid()}): left to it" in result.stdout
    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{database}").trials
    assert [t.state.name for t in trials] == ["RUNNING"]
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 0, "pruned": 0, "fail": 0, "running": 1}


@pytest.mark.parametrize("gone", ["killed on this host", "named by the user"])
def test_a_gone_workers_trial_is_marked_failed_and_counts_toward_n_trials(gone, tiny_data_dir, tmp_path):
    database = tmp_path / "study.db"
    if gone == "killed on this host":
        worker, reclaim = _dead_worker(), []
    else:
        worker, reclaim = {**this_worker(), "host": "other-" + socket.gethostname()}, ["hydra.sweeper.reclaim=[0]"]
    _study_with_running(database, [worker])
    (tmp_path / "sweep" / "0").mkdir(parents=True)
    search = _search(database, tmp_path / "sweep", 1, *reclaim)
    run_main("train.py", *search, *tiny_mlp_args(tiny_data_dir, tmp_path))
    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{database}").trials
    assert [t.state.name for t in trials] == ["FAIL"]
    assert "interrupted" in json.loads((tmp_path / "sweep" / "0" / "status.json").read_text())["error"]


class WaitForFile(Callback):
    """Holds a trial at its start until ``path`` exists: two workers then have a trial running at once."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_start(self, trainer, pl_module):
        while not self.path.exists():
            time.sleep(0.05)


@pytest.mark.slow
def test_two_workers_on_one_sqlite_study_run_every_trial_once(tiny_data_dir, tmp_path):
    database, sweep, release = tmp_path / "study.db", tmp_path / "sweep", tmp_path / "release"
    args = [
        str(ROOT / "scripts" / "train.py"),
        *_search(database, sweep, 4),
        *tiny_mlp_args(tiny_data_dir, tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=2", "test=false"),
        "logger=none",
        f"+callbacks.hold={{_target_: test_trust_runs.WaitForFile, path: '{release}'}}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    workers = []
    try:  # both at once: they also create the SQLite file together
        for log in logs:
            with log.open("w") as stream:
                workers.append(
                    subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=stream, stderr=stream)
                )
        _wait_until(lambda: _running_trials(database) == 2, workers, logs)  # each holds its first trial
        release.touch()
        codes = [worker.wait(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert codes == [0, 0], "\n".join(log.read_text()[-3000:] for log in logs)
    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{database}").trials
    assert [(t.number, t.state.name) for t in trials] == [(n, "COMPLETE") for n in range(4)]
    owners = {t.user_attrs[WORKER_ATTR]["pid"] for t in trials}
    assert owners == {worker.pid for worker in workers}  # both ran trials, each trial once
    for trial in trials:
        assert json.loads((sweep / str(trial.number) / "status.json").read_text())["status"] == "ok"
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert results["trials"] == {"complete": 4, "pruned": 0, "fail": 0, "running": 0}


def _running_trials(database: Path) -> int:
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    except sqlite3.OperationalError:  # the tables are being created
        return 0


def _wait_until(condition, workers: list[subprocess.Popen], logs: list[Path], timeout: float = 400) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if any(worker.poll() is not None for worker in workers):
            raise AssertionError("a worker ended early:\n" + "\n".join(log.read_text()[-3000:] for log in logs))
        if time.monotonic() > deadline:
            raise AssertionError("the workers made no progress in time")
        time.sleep(0.1)
