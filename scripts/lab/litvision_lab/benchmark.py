"""Time this template against a bare loop and the tutorial DataLoader (scripts/lab/benchmark.py, conf/benchmark.yaml).

The three ways and their turn-taking live in benchmark_ways.py, the memory and random-stream meters in
benchmark_meters.py. ``record_to=docs/benchmark_history.jsonl`` appends the run to that file as one JSON
line: when, the commit, the command, the machine, and the table's numbers.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from litvision.support.precision import resolve_trainer_precision
from litvision_lab.benchmark_ways import Result, device_of, run_ways
from litvision_lab.machine_info import machine
from litvision_lab.paths import ROOT
from litvision_lab.runtime import apply_runtime
from litvision_lab.synthetic import dataset_name, is_synthetic

log = logging.getLogger(__name__)


def ratios(results: dict[str, Result]) -> dict[str, float | dict[str, float]]:
    """(a)/(b) from the medians and epoch by epoch (median, min, max), and (c)/(a), as far as the ways ran."""
    seconds = {name: r.seconds_per_epoch for name, r in results.items()}
    found: dict[str, float | dict[str, float]] = {}
    if {"trainer", "plain"} <= seconds.keys():
        found["a_over_b"] = seconds["trainer"] / seconds["plain"]
        pairs = _epoch_ratios(results["trainer"], results["plain"])
        if pairs:
            found["a_over_b_by_epoch"] = {"median": statistics.median(pairs), "min": min(pairs), "max": max(pairs)}
    if {"trainer", "dataloader"} <= seconds.keys():
        found["c_over_a"] = seconds["dataloader"] / seconds["trainer"]
    return found


def markdown_table(results: dict[str, Result]) -> str:
    rows = [
        "| way | s/epoch (median, epochs 2+) | images/s | peak memory | train/acc | val/acc | every epoch (s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results.values():
        rate = result.train_images / result.seconds_per_epoch
        rows.append(
            f"| {result.way} | {result.seconds_per_epoch:.2f} | {rate:,.0f} | "
            f"{result.peak_memory / 2**30:.2f} GiB | {result.train_acc:.4f} | {result.val_acc:.4f} | "
            f"{' '.join(f'{t:.2f}' for t in result.epoch_seconds)} |"
        )
    found = ratios(results)
    if "a_over_b" in found:
        rows.append(f"\n(a)/(b) = {found['a_over_b']:.3f} (template overhead over a bare loop)")
    if "a_over_b_by_epoch" in found:
        pairs = found["a_over_b_by_epoch"]
        rows.append(
            f"(a)/(b) epoch by epoch (epochs 2+, each (a) epoch over the (b) epoch that took turns with it): "
            f"median {pairs['median']:.3f}, range {pairs['min']:.3f}-{pairs['max']:.3f}"
        )
    if "c_over_a" in found:
        rows.append(f"(c)/(a) = {found['c_over_a']:.2f} (tutorial pipeline vs template)")
    return "\n".join(rows)


def _epoch_ratios(numerator: Result, denominator: Result) -> list[float]:
    """Per-epoch ratios after the first epoch: a slow spell longer than one pair of epochs cancels out."""
    return [a / b for a, b in zip(numerator.epoch_seconds[1:], denominator.epoch_seconds[1:]) if b > 0]


def benchmark(cfg: DictConfig) -> dict[str, float]:
    """Run the configured ways side by side; print and save the table; return seconds per epoch."""
    apply_runtime(cfg.get("runtime"))
    resolve_trainer_precision(cfg.trainer)  # an experiment's precision=auto, as train.py resolves it
    with open_dict(cfg):
        cfg.trainer.max_epochs = cfg.epochs
    device = device_of(cfg)
    results = run_ways(cfg, device)
    threads = f"CPU, {torch.get_num_threads()} threads"
    setup = {
        "model": cfg.model.net._target_.rsplit(".", 1)[-1],
        "data": cfg.data._target_.rsplit(".", 1)[-1],
        "synthetic": _synthetic(cfg),
        "batch": cfg.data.batch_size,
        "epochs": cfg.epochs,
        "precision": str(cfg.trainer.precision),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else threads,
        "torch": torch.__version__,
        "turn_batches": cfg.turn_batches,
    }
    data = setup["data"] + (" (SYNTHETIC files from scripts/lab/synthetic_data.py)" if setup["synthetic"] else "")
    header = (
        f"model={setup['model']} data={data} batch={setup['batch']} epochs={setup['epochs']} "
        f"precision={setup['precision']} device={setup['device']} torch={setup['torch']}; "
        f"the ways take turns every {setup['turn_batches']} training batches"
    )
    table = f"{header}\n\n{markdown_table(results)}\n"
    print(table)
    out = Path(cfg.paths.output_dir) / "benchmark.md"
    out.write_text(table)
    log.info("table saved to %s", out)
    if cfg.get("record_to"):
        record(Path(cfg.record_to), setup, results)
    return {f"{name}/seconds_per_epoch": r.seconds_per_epoch for name, r in results.items()}


def _synthetic(cfg: DictConfig) -> bool:
    """Whether the run read files written by scripts/lab/synthetic_data.py (its marker beside them)."""
    dataset = dataset_name(getattr(get_class(cfg.data._target_), "dataset_files", None))
    return dataset is not None and is_synthetic(dataset, cfg.data.data_dir)


def record(history: Path, setup: dict, results: dict[str, Result]) -> dict:
    """Append this run to ``history`` as one JSON line: when, commit, command, machine, setup and numbers."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    # The history file itself does not count: three runs in a row each append to it.
    pathspec = ["."] + ([f":(exclude){history.resolve()}"] if history.resolve().is_relative_to(ROOT) else [])
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", *pathspec)
    entry = {
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
        "commit": commit,
        "uncommitted_changes": bool(changed),
        "command": "python scripts/lab/benchmark.py " + " ".join(shlex.quote(arg) for arg in sys.argv[1:]),
        "machine": machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        **setup,
        "ways": {name: _numbers(result) for name, result in results.items()},
        **_rounded(ratios(results)),
    }
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
    log.info("run appended to %s", history)
    return entry


def _numbers(result: Result) -> dict:
    return {
        "label": result.way,
        "seconds_per_epoch": round(result.seconds_per_epoch, 3),
        "images_per_second": round(result.train_images / result.seconds_per_epoch),
        "peak_memory_gib": round(result.peak_memory / 2**30, 3),
        "train_acc": round(result.train_acc, 4),
        "val_acc": round(result.val_acc, 4),
        "epoch_seconds": [round(t, 3) for t in result.epoch_seconds],
    }


def _rounded(value):
    return {k: _rounded(v) for k, v in value.items()} if isinstance(value, dict) else round(value, 4)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
        return done.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
