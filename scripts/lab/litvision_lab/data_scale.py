"""Issue 26's measurements: decoding a large image folder, memory on the mapped path, epochs by data home.

``python scripts/lab/data_scale.py --images 20000 --size 224`` generates a folder of RGB JPEGs (noise
with a class colour), then measures, each with the load average beside it:

- decode throughput (images/s) of :func:`litvision.data.folder_files.decode_into` with 1 and 2 worker
  processes (more with ``--workers``);
- the peak anonymous memory (``RssAnon``, which pages of a mapped file do not count in) of a first run
  (decoding) and of a cached run of ``scripts/train.py data=folder data.in_memory=false``, and of a
  first run under ``trainer=ddp_cpu``; sampled every 50 ms over the run's processes;
- one data-only epoch from memory against one from the mapped cache (DataLoader workers);
- ``scripts/stream_convert.py`` on the folder and a data-only epoch of ``data=streaming`` against the
  mapped cache.

It writes the ``data_scale`` section of docs/performance.md (``--record``). Heavy: run it alone, under
``flock /tmp/litvision-timing.lock nice -n 10``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from litvision_lab.machine_info import cpu
from litvision_lab.paths import ROOT
from litvision_lab.recipes import load, write_section

CLASSES = 10
QUIET = ["callbacks.progress_bar=null", "callbacks.rich_model_summary=null", "trainer.enable_progress_bar=false"]


def generate(folder: Path, images: int, size: int) -> None:
    """``images`` RGB JPEGs of ``size`` px in ``CLASSES`` class folders (skipped when already there)."""
    if (folder / "DONE").exists():
        return
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (CLASSES, 3))
    for label in range(CLASSES):
        (folder / f"class{label}").mkdir(parents=True, exist_ok=True)
    for i in range(images):
        label = i % CLASSES
        pixels = np.clip(colours[label] + rng.integers(-60, 61, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"class{label}" / f"{i:06d}.jpg", quality=90)
    (folder / "DONE").write_text("generated\n")


def remove_caches(folder: Path) -> None:
    for cache in folder.glob(".litvision-cache-*"):
        cache.unlink()


def proc_field(path: str, field: str) -> int:
    """A ``kB`` field of a /proc file, in bytes (0 when the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def peak_memory(command: list[str]) -> tuple[int, int, float, str]:
    """Run ``command``; (peak RssAnon of its first process, peak of its processes' summed Pss_Anon, seconds, output).

    Pss_Anon shares a page between the processes that map it, so forked workers' copy-on-write pages
    count once in the sum.
    """
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = [0, 0]

    def sample() -> None:
        while process.poll() is None:
            pids = descendants(process.pid)
            first = proc_field(f"/proc/{pids[0]}/status", "RssAnon:")
            total = sum(proc_field(f"/proc/{pid}/smaps_rollup", "Pss_Anon:") for pid in pids)
            peaks[0], peaks[1] = max(peaks[0], first), max(peaks[1], total)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {shlex.join(command)}\n{output[-3000:]}")
    return peaks[0], peaks[1], time.perf_counter() - started, output


def decode_rates(folder: Path, size: int, workers: list[int]) -> dict[int, float]:
    from litvision.data.folder_classes import folder_class_names
    from litvision.data.folder_files import decode_into, scan_folder

    paths = scan_folder(folder, folder_class_names(folder)).paths
    rates = {}
    for count in workers:
        target = folder.parent / f"decode-{count}.npy"
        started = time.perf_counter()
        decode_into(target, paths, 3, size, "crop", count)
        rates[count] = len(paths) / (time.perf_counter() - started)
        target.unlink()
    return rates


def epoch_seconds(loader) -> float:
    started = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - started


def data_epochs(folder: Path, stream: Path, size: int, batch: int) -> dict[str, float]:
    """Seconds of one data-only training epoch: in memory, mapped (2 workers), streamed (2 workers)."""
    from litvision.data import FolderDataModule
    from litvision.data.streaming import StreamingDataModule

    options = dict(data_dir=str(folder), image_size=size, batch_size=batch, audit=False, num_workers=2)
    seconds = {}
    for name, in_memory in (("mapped", False), ("memory", True)):
        data = FolderDataModule(in_memory=in_memory, **options)
        data.setup("fit")
        loader = data._loader("train", train=True)
        epoch_seconds(loader)  # a warm page cache and started workers' code paths
        seconds[name] = epoch_seconds(loader)
        del data, loader
    streamed = StreamingDataModule(data_dir=str(stream), batch_size=batch, num_workers=2)
    loader = streamed._loader("train", train=True)
    epoch_seconds(loader)
    seconds["streaming"] = epoch_seconds(loader)
    return seconds


def train_command(folder: Path, size: int, run_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "scripts/train.py",
        "data=folder",
        f"data.data_dir={folder}",
        "model=small_cnn",
        "logger=none",
        "test=false",
        f"data.image_size={size}",
        "data.batch_size=16",
        "data.eval_batch_size=16",  # the default 1024 would measure the model's activations, not the data
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=40",
        "trainer.limit_val_batches=5",
        f"hydra.run.dir={run_dir}",
        *QUIET,
        *extra,
    ]


def seconds_or_dash(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def train_ratio(epoch_s: dict[str, float], name: str) -> str:
    return f"{epoch_s[name] / epoch_s['cached run, data.in_memory=true']:.2f}"


def gb(size: float) -> str:
    return f"{size / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workers", default="1,2", help="decode worker counts to time")
    parser.add_argument("--work", type=Path, default=ROOT / "logs" / "data_scale")
    parser.add_argument("--record", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args(argv)
    command = "python scripts/lab/data_scale.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    folder = args.work / f"jpeg-{args.images}-{args.size}"
    loads = {}

    started = time.perf_counter()
    generate(folder, args.images, args.size)
    print(f"folder ready in {time.perf_counter() - started:.0f} s", flush=True)
    decoded = args.images * 3 * args.size**2
    loads["decode"] = load()
    rates = decode_rates(folder, args.size, [int(w) for w in args.workers.split(",")])
    print("decode rates", rates, flush=True)

    memory = {}
    remove_caches(folder)
    epoch_s = {}
    for name, extra in (
        ("first run", ["data.in_memory=false", "data.num_workers=0"]),
        ("cached run", ["data.in_memory=false", "data.num_workers=0"]),
        ("cached run, 2 loader workers", ["data.in_memory=false", "data.num_workers=2"]),
        ("cached run, data.in_memory=true", ["data.in_memory=true"]),
    ):
        loads[name] = load()
        run_dir = args.work / "runs" / "".join(c if c.isalnum() else "-" for c in name)
        memory[name] = peak_memory(train_command(folder, args.size, run_dir, *extra))
        epoch_s[name] = json.loads((run_dir / "metrics.json").read_text())["metrics"]["time/epoch_s"]
        print(name, memory[name][:3], epoch_s[name], flush=True)
    remove_caches(folder)
    loads["first run, trainer=ddp_cpu"] = load()
    ddp = ["trainer=ddp_cpu", "data.in_memory=false", "data.num_workers=0"]
    memory["first run, trainer=ddp_cpu"] = peak_memory(
        train_command(folder, args.size, args.work / "runs" / "ddp", *ddp)
    )
    ddp_metrics = json.loads((args.work / "runs" / "ddp" / "metrics.json").read_text())["metrics"]
    epoch_s["first run, trainer=ddp_cpu"] = ddp_metrics["time/epoch_s"]
    print("ddp", memory["first run, trainer=ddp_cpu"][:3], flush=True)

    stream = args.work / f"stream-{args.images}-{args.size}"
    if not (stream / "litvision.json").exists():
        convert = [sys.executable, "scripts/stream_convert.py", "data=folder", f"data.data_dir={folder}"]
        convert += [f"data.image_size={args.size}", "data.audit=false", f"output={stream}"]
        convert += [f"hydra.run.dir={args.work / 'runs' / 'convert'}"]
        loads["stream_convert.py"] = load()
        memory["stream_convert.py"] = peak_memory(convert)
    loads["epochs"] = load()
    epochs = data_epochs(folder, stream, args.size, 256)
    print("epochs", epochs, flush=True)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    rows = "\n".join(
        f"| {name} | {gb(first)} | {gb(total)} | {seconds:.0f} s | {seconds_or_dash(epoch_s.get(name))} | {loads[name]} |"
        for name, (first, total, seconds, _) in memory.items()
    )
    body = f"""## Data at any scale

`{command}` (scripts/lab/litvision_lab/data_scale.py), commit {commit.strip()}, {date.today()}, {cpu()},
{os.cpu_count()} cores shared with other people's tests and runs (the load average, 1/5/15 min, is beside
each figure), torch {torch.__version__}. A generated folder of {args.images:,} RGB JPEGs of {args.size} px,
{CLASSES} classes: {gb(decoded)} decoded.

Decoding into the mapped cache (`decode_into`, every file, load {loads["decode"]}):
{", ".join(f"{count} worker process(es): {rate:,.0f} images/s" for count, rate in rates.items())}.

Peak anonymous memory (`RssAnon`; pages of the mapped cache are file pages and do not count) of
`scripts/train.py data=folder model=small_cnn data.batch_size=16 data.eval_batch_size=16` with 40 training and 5 validation
batches: `RssAnon` of the run's first process, and the summed `Pss_Anon` of all its processes (decoding
workers, DataLoader workers and the second DDP rank; Pss counts a page shared by forked processes
once). Torch, Lightning and the model alone take most of it. "epoch" is the run's `time/epoch_s` (40
training and 5 validation batches, model included):

| run | first process | all processes | wall | epoch | load |
| --- | --- | --- | --- | --- | --- |
{rows}

Training epoch from the mapped cache against in memory (the rows above, warm page cache): with 2
DataLoader workers {train_ratio(epoch_s, "cached run, 2 loader workers")}, gathering in the training
process {train_ratio(epoch_s, "cached run")}.

One data-only training epoch (batches of 256, uint8, no model; the second of two epochs, so the page
cache is warm; load {loads["epochs"]}): in memory {epochs["memory"]:.1f} s, from the mapped cache with 2
DataLoader workers {epochs["mapped"]:.1f} s (ratio {epochs["mapped"] / epochs["memory"]:.2f}), streamed by
LitData with 2 workers {epochs["streaming"]:.1f} s (against the mapped cache:
{epochs["streaming"] / epochs["mapped"]:.2f}).
"""
    write_section(args.record, "data_scale", body)
    print(body)
    return 0
