"""Time this template against a bare loop and the tutorial DataLoader: python scripts/benchmark.py (conf/benchmark.yaml).

The three ways and their turn-taking live in benchmark_ways.py, the memory and random-stream meters in
benchmark_meters.py. ``record_to=docs/performance.md`` appends the run (command, commit, machine, date
and the table) to that page.
"""

from __future__ import annotations

import datetime
import logging
import platform
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, open_dict

from benchmark_ways import Result, device_of, run_ways
from litvision.data.datasets import DATASETS
from litvision.data.synthetic import is_synthetic
from litvision.support.cli import check_group_overrides, run_task
from machine_info import machine

log = logging.getLogger(__name__)


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
    seconds = {name: r.seconds_per_epoch for name, r in results.items()}
    if {"trainer", "plain"} <= seconds.keys():
        rows.append(f"\n(a)/(b) = {seconds['trainer'] / seconds['plain']:.3f} (template overhead over a bare loop)")
        pairs = _epoch_ratios(results["trainer"], results["plain"])
        if pairs:
            rows.append(
                f"(a)/(b) epoch by epoch (epochs 2+, each (a) epoch over the (b) epoch that took turns with it): "
                f"median {statistics.median(pairs):.3f}, range {min(pairs):.3f}-{max(pairs):.3f}"
            )
    if {"trainer", "dataloader"} <= seconds.keys():
        rows.append(f"(c)/(a) = {seconds['dataloader'] / seconds['trainer']:.2f} (tutorial pipeline vs template)")
    return "\n".join(rows)


def _epoch_ratios(numerator: Result, denominator: Result) -> list[float]:
    """Per-epoch ratios after the first epoch: a slow spell longer than one pair of epochs cancels out."""
    return [a / b for a, b in zip(numerator.epoch_seconds[1:], denominator.epoch_seconds[1:]) if b > 0]


def benchmark(cfg: DictConfig) -> dict[str, float]:
    """Run the configured ways side by side; print and save the table; return seconds per epoch."""
    with open_dict(cfg):
        cfg.trainer.max_epochs = cfg.epochs
    device = device_of(cfg)
    results = run_ways(cfg, device)
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    data = cfg.data._target_.rsplit(".", 1)[-1]
    dataset = getattr(get_class(cfg.data._target_), "dataset", None)  # None for a data module of one's own
    if dataset in DATASETS and is_synthetic(dataset, cfg.data.data_dir):
        data += " (SYNTHETIC files from scripts/synthetic_data.py: the real dataset's shape, not its images)"
    header = (
        f"model={cfg.model.net._target_.rsplit('.', 1)[-1]} data={data} "
        f"batch={cfg.data.batch_size} epochs={cfg.epochs} precision={cfg.trainer.precision} device={machine} "
        f"torch={torch.__version__}; the ways take turns every {cfg.turn_batches} training batches"
    )
    table = f"{header}\n\n{markdown_table(results)}\n"
    print(table)
    out = Path(cfg.paths.output_dir) / "benchmark.md"
    out.write_text(table)
    log.info("table saved to %s", out)
    if cfg.get("record_to"):
        record(Path(cfg.record_to), table)
    return {f"{name}/seconds_per_epoch": r.seconds_per_epoch for name, r in results.items()}


def record(page: Path, table: str) -> None:
    """Append this run to ``page``: the command that made it, the commit, the machine, the date, the table."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    # The page itself does not count: three runs in a row each append to it.
    changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){page.resolve()}")
    if changed:
        commit += " (with uncommitted changes)"
    command = "python scripts/benchmark.py " + " ".join(shlex.quote(arg) for arg in sys.argv[1:])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    entry = (
        f"\n### {when}, commit {commit}\n\n`{command}`\n\nMachine: {machine()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}.\n\n{table}"
    )
    with page.open("a", encoding="utf-8") as handle:
        handle.write(entry)
    log.info("run appended to %s", page)


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    run_task(benchmark, cfg)


if __name__ == "__main__":
    check_group_overrides(Path(__file__).resolve().parents[1] / "conf")
    main()
