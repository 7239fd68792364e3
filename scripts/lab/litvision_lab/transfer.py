"""Transfer learning measured with weights of our own (ImageNet weights cannot be fetched offline).

1. Pretrain a torchvision ``resnet18`` on Fashion-MNIST with ``scripts/train.py`` (shortened: a few hundred
   batches), and save its backbone (every tensor but the head) as a state-dict file.
2. Fine-tune it through ``model=torchvision model.net.weights=<file> model.freeze_epochs=1`` on MNIST with
   1,000 training images, and train the same network from scratch on the same images; one run per seed
   each. The images are drawn from ``../shared/data/mnist-17k`` (seeded, stratified: as many of every
   digit), 100 more for validation, and the test images a stratified subset of the official test split.
3. Images/s of a ``resnet18`` training step at 64 px through the template and through a plain PyTorch loop
   on the same tensors (the lab's benchmark, ``ways=[trainer,plain]``), one run.

The figures go into the transfer section of docs/results.md, between its markers, with the command,
commit, CPU, date and load. Run it under the timing lock: ``flock /tmp/litvision-timing.lock nice -n 10
python scripts/lab/transfer.py``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from litvision_lab.machine_info import cpu
from litvision_lab.paths import MNIST_17K, ROOT

START, END = "<!-- transfer:start -->", "<!-- transfer:end -->"
PAGE = ROOT / "docs" / "results.md"
FASHION = Path("/usr/share/datasets/fashion-mnist")
QUIET = ["logger=none", "callbacks.progress_bar=null", "callbacks.rich_model_summary=null"]
COMMON = ["model=torchvision", "model.net.name=resnet18", *QUIET]


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array: (N,) labels or (N, rows, cols) images."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array).tobytes())


def stratified(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` indices, the same number per class (count / classes), drawn with ``seed``, in drawn order."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = count // len(classes)
    chosen = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in classes]
    return rng.permutation(np.concatenate(chosen))


def write_mnist_subset(folder: Path, train: int, val: int, test: int, seed: int) -> Path:
    """MNIST in torchvision's layout with ``train + val`` training images and ``test`` test images."""
    raw = folder / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train + val), ("t10k", test)):
        images = read_idx(MNIST_17K / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(MNIST_17K / f"{split}-labels-idx1-ubyte.gz")
        keep = stratified(labels, count, seed)
        write_idx(raw / f"{split}-images-idx3-ubyte", images[keep])
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels[keep])
    return folder


def train_run(run_dir: Path, overrides: list[str]) -> dict:
    """``python scripts/train.py <overrides>`` in ``run_dir``; its metrics.json plus the wall time."""
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(command)}\n{result.stderr[-3000:]}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    return {"acc": float(metrics.get("test/acc", metrics["val/acc_best"])), "wall_s": wall}


def save_backbone(checkpoint: Path, out: Path) -> Path:
    """The torchvision net's tensors of a litvision checkpoint, without the head, as a plain state-dict file."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    prefix = "net.model."
    backbone = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix) and ".fc." not in f".{k}"}
    torch.save(backbone, out)
    return out


def throughput(work: Path, data_dir: Path, epochs: int) -> str:
    """The lab benchmark's table: resnet18 at 64 px, the template's Trainer.fit against a plain loop."""
    command = [sys.executable, str(ROOT / "scripts" / "lab" / "benchmark.py"), *COMMON, "data=mnist"]
    command += [f"data.data_dir={data_dir}", "data.download=false", "data.image_size=64", "data.val_size=20"]
    command += ["data.batch_size=64", f"epochs={epochs}", "ways=[trainer,plain]", f"hydra.run.dir={work}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {shlex.join(command)}\n{result.stderr[-3000:]}")
    return (work / "benchmark.md").read_text().strip()


def section(args, command: str, pretrain: dict, runs: dict[str, list[dict]], speed: str, loads: list[str]) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    lines = [
        START,
        "## Transfer: a pretrained backbone against scratch on 1,000 MNIST images",
        "",
        f"Written by `{command}` on {date.today().isoformat()}, commit {commit.stdout.strip() or 'unknown'}, "
        f"{cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}; load average (1/5/15 min) "
        f"before and after: {loads[0]} / {loads[-1]} (above about 2, other work shared the 2 cores and the "
        "wall times are upper bounds).",
        "",
        f"- **Pretraining**: torchvision `resnet18` (`model=torchvision`, ImageNet stem, random init) on "
        f"Fashion-MNIST for one epoch of at most {args.pretrain_batches} batches of 128 (`--pretrain-batches`; "
        f"the whole 59,000-image training split is 461): validation accuracy {pretrain['acc']:.2%} (1,000 images), "
        f"{pretrain['wall_s']:.0f} s. Its backbone "
        "(all but `fc`) is saved as a plain state-dict file.",
        f"- **Target**: MNIST, {args.train_images} training images drawn from `../shared/data/mnist-17k` "
        f"(stratified, seed {args.subset_seed}) plus {args.val_images} for validation; test accuracy on "
        f"{args.test_images} images of the official test split (stratified, same seed). {args.epochs} epochs, "
        "batch 64, AdamW + one-cycle (model=torchvision's defaults), the best validation epoch tested.",
        "- **pretrained**: `model.net.weights=<file> model.freeze_epochs=1` (head only in epoch 0, BatchNorm "
        "statistics held); **scratch**: the same network and recipe from random init.",
        "",
        "| start | seeds | test acc (%) | wall per run (s) |",
        "| --- | --- | --- | --- |",
    ]
    for start, results in runs.items():
        accs = [100 * r["acc"] for r in results]
        walls = [r["wall_s"] for r in results]
        spread = f" ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else ""
        seeds = ",".join(map(str, args.seeds))
        lines.append(f"| {start} | {seeds} | {statistics.mean(accs):.2f}{spread} | {statistics.mean(walls):.0f} |")
    lines += [
        "",
        "Mean ± sample standard deviation over the seeds. Training speed of the same network at 64 px "
        f"(the lab's benchmark, on {args.speed_images} of those MNIST training images resized to 64 px, batch 64, "
        f"{args.speed_epochs} epochs per way taking turns, the first left out):",
        "",
        speed,
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(page: Path, text: str) -> None:
    """Replace the transfer section of ``page`` (or append it); the rest of the page is left as it was."""
    old = page.read_text(encoding="utf-8") if page.exists() else ""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END) + "\n?", flags=re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    page.write_text(new, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    parser.add_argument("--train-images", type=int, default=1000)
    parser.add_argument("--val-images", type=int, default=100)
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--subset-seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--pretrain-batches", type=int, default=461)  # one whole epoch
    parser.add_argument("--speed-epochs", type=int, default=2)
    parser.add_argument("--speed-images", type=int, default=320)
    parser.add_argument("--work", type=Path, default=ROOT / "logs" / "transfer")
    parser.add_argument("--page", type=Path, default=PAGE)
    args = parser.parse_args(argv)
    command = "python scripts/lab/transfer.py" + (" " + shlex.join(argv if argv is not None else sys.argv[1:]))
    loads = [Path("/proc/loadavg").read_text().split()[:3]]
    work = args.work.resolve()
    mnist = write_mnist_subset(
        work / "mnist-subset", args.train_images, args.val_images, args.test_images, args.subset_seed
    )

    fashion = [*COMMON, "data=fashion_mnist", f"data.data_dir={work / 'data'}", "data.val_size=1000"]
    fashion += ["data.batch_size=128", "trainer.max_epochs=1", f"trainer.limit_train_batches={args.pretrain_batches}"]
    pretrain = train_run(work / "pretrain", [*fashion, "test=false", "seed=0"])
    weights = save_backbone(work / "pretrain" / "checkpoints" / "last.ckpt", work / "resnet18_fashion_mnist.pt")

    target = [*COMMON, "data=mnist", f"data.data_dir={mnist}", "data.download=false"]
    target += [f"data.val_size={args.val_images}", "data.batch_size=64", f"trainer.max_epochs={args.epochs}"]
    starts = {"pretrained": [f"model.net.weights={weights}", "model.freeze_epochs=1"], "scratch": []}
    runs: dict[str, list[dict]] = {start: [] for start in starts}
    for seed in args.seeds:
        for start, extra in starts.items():
            runs[start].append(train_run(work / start / f"seed{seed}", [*target, *extra, f"seed={seed}"]))
            print(start, seed, runs[start][-1], flush=True)
    speed_data = write_mnist_subset(work / "speed-subset", args.speed_images, 20, 20, args.subset_seed)
    speed = throughput(work / "speed", speed_data, args.speed_epochs)
    loads.append(Path("/proc/loadavg").read_text().split()[:3])
    text = section(args, command.strip(), pretrain, runs, speed, [" ".join(load) for load in loads])
    write_section(args.page, text)
    print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
