"""The tutorials' own training loops in plain PyTorch: the control for docs/results.md.

A tutorial recipe the template does not reproduce raises one question: is the template at fault, or does
the tutorial's number not hold on this machine and this data? This script answers it by running the
tutorial's loop as ``../shared/SEEDS.md`` describes it (its net, its data scaling, its optimizer, its
loss, its test pass; no Lightning and no litvision in the loop) on the same files the experiments read:

    python scripts/lab/tutorial_loops.py                               # seed000, seed002_lenet, seed004_mlp
    python scripts/lab/tutorial_loops.py --tutorials seed000 --seeds 420,0,1,2 --record docs/tutorial_loops.md

- ``seed000``: the Fashion-MNIST CNN, 9 epochs; its test pass as written (train mode, raw 0-255 pixels)
  and in eval mode on [0, 1] pixels, as the template tests.
- ``seed002_lenet`` and ``seed004_mlp``: MNIST; on the 17,435-image subset they run the tutorial's number
  of optimizer steps (its epochs times its batches per epoch on 60,000 images), as the experiments do.

``--fashion-dir`` and ``--mnist-dir`` name other copies of the files; ``--steps`` cuts each run short (a check
that the loops run, not a measurement).

``--record`` appends a table (command, commit, machine, date) to the page it names.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from litvision_lab.machine_info import machine
from litvision_lab.paths import MNIST_17K
from litvision_lab.reproduce_page import LOOP_OF, TUTORIAL_ACC, commit

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class InputError(Exception):
    """Missing or unreadable data files: one line for the user, exit status 2."""


def read_idx(folder: Path, name: str) -> torch.Tensor:
    """One idx file (gzip or not) as a uint8 tensor: images N x 1 x H x W, labels N."""
    path = next((p for p in (folder / f"{name}.gz", folder / name) if p.exists()), None)
    if path is None:
        raise InputError(f"{folder / name}(.gz) not found")
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            raw = handle.read()
        dims = raw[3]
        if raw[:3] != b"\0\0\x08" or dims not in (1, 3):
            raise ValueError("not an idx file of unsigned bytes")
        shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
        data = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).copy())
        return data.reshape(shape[0], 1, *shape[1:]) if dims == 3 else data.reshape(shape).long()
    except (OSError, EOFError, IndexError, ValueError, RuntimeError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: unreadable ({why})") from None


def load(folder: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        split: (read_idx(folder, f"{prefix}-images-idx3-ubyte"), read_idx(folder, f"{prefix}-labels-idx1-ubyte"))
        for split, prefix in (("train", "train"), ("test", "t10k"))
    }


class FashionNet(nn.Module):
    """Seed 000: input BatchNorm, conv 8 and 16 @3x3 with max-pool, fc 400 -> 128 -> 10 (no bias), log-softmax."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.conv1, self.conv2 = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 16, 3)
        self.fc1, self.fc2 = nn.Linear(400, 128), nn.Linear(128, 10, bias=False)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(self.bn(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(F.relu(x.flatten(1))))
        return F.log_softmax(self.fc2(x), dim=1)


def lenet() -> nn.Module:
    """Seed 002: LeNet-5 with sigmoids and average pooling, Xavier-uniform weights."""
    net = nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10),
    )  # fmt: skip
    for layer in net:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(layer.weight)
    return net


def mlp() -> nn.Module:
    """Seed 004: 784 -> 512 -> 256 -> 128 -> 64 -> 10 with ReLUs."""
    sizes = [784, 512, 256, 128, 64, 10]
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


@dataclass
class Tutorial:
    name: str
    dataset: str
    make_net: Callable[[], nn.Module]
    optimizer: Callable[..., torch.optim.Optimizer]
    loss: Callable[..., torch.Tensor]
    batch_size: int  # for training and for the test pass as written
    epochs: int  # of the tutorial's 60,000 training images
    scale: Callable[[torch.Tensor], torch.Tensor]  # uint8 batch -> the float input the tutorial trains on


TUTORIALS = {
    "seed000": Tutorial(
        "seed000", "Fashion-MNIST", FashionNet,
        lambda p: torch.optim.Adam(p, lr=0.005), F.nll_loss, 256, 9, lambda x: x.float() / 255,
    ),
    "seed002_lenet": Tutorial(
        "seed002_lenet", "MNIST", lenet,
        lambda p: torch.optim.SGD(p, lr=0.5), F.cross_entropy, 100, 16, lambda x: x.float() / 255,
    ),
    "seed004_mlp": Tutorial(
        "seed004_mlp", "MNIST", mlp,
        lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.5), F.cross_entropy, 64, 10,
        lambda x: (x.float() / 255 - 0.1307) / 0.3081,
    ),
}  # fmt: skip


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, scale, train_mode: bool, batch: int) -> float:
    """Test accuracy in %, in batches of ``batch`` (in train mode, BatchNorm uses each batch's statistics)."""
    net.train(train_mode)
    right = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            right += (net(scale(images[i : i + batch])).argmax(1) == labels[i : i + batch]).sum().item()
    return 100 * right / len(images)


def run(tut: Tutorial, seed: int, folder: Path, max_steps: int | None = None) -> dict:
    data = load(folder)
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    torch.manual_seed(seed)
    net = tut.make_net()
    optimizer = tut.optimizer(net.parameters())
    steps = min(full_steps(tut), max_steps or full_steps(tut))  # the tutorial's steps, on whatever training set
    start, done = time.perf_counter(), 0
    while done < steps:
        net.train()
        perm = torch.randperm(len(train_x))
        for i in range(0, len(perm), tut.batch_size):
            batch = perm[i : i + tut.batch_size]
            loss = tut.loss(net(tut.scale(train_x[batch])), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    result = {"seed": seed, "train_images": len(train_x), "steps": steps, "seconds": time.perf_counter() - start}
    if tut.name == "seed000":  # its test: train mode on raw pixels in its batches (a copy: it moves the BN stats)
        result["as_written"] = accuracy(copy.deepcopy(net), test_x, test_y, lambda x: x.float(), True, tut.batch_size)
    result["eval"] = accuracy(net, test_x, test_y, tut.scale, False, 1000)
    return result


def mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def full_steps(tut: Tutorial) -> int:
    """The tutorial's optimizer steps: its epochs times its batches per epoch on 60,000 images."""
    return tut.epochs * math.ceil(60000 / tut.batch_size)


def steps_text(tut: Tutorial, steps: int) -> str:
    """The steps cell; a run cut short by ``--steps`` says so, and docs/results.md does not take its numbers."""
    return f"{steps:,}" if steps == full_steps(tut) else f"{steps:,} of {full_steps(tut):,} (cut short)"


def table(results: dict[str, list[dict]]) -> list[str]:
    published = {loop: TUTORIAL_ACC[experiment] for experiment, loop in LOOP_OF.items()}  # as docs/results.md has them
    header = ["tutorial", "dataset (train images)", "published (%)", "its loop here, eval mode (%)", "as written (%)"]
    header += ["seeds", "steps", "each run (%)"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, runs in results.items():
        tut = TUTORIALS[name]
        written = [r["as_written"] for r in runs if "as_written" in r]
        each = ", ".join(f"{r['eval']:.2f}" for r in runs)
        lines.append(
            f"| `{name}` | {tut.dataset} ({runs[0]['train_images']:,}) | {published[name]} | "
            f"{mean_std([r['eval'] for r in runs])} | {mean_std(written) if written else '—'} | "
            f"{', '.join(str(r['seed']) for r in runs)} | {steps_text(tut, runs[0]['steps'])} | {each} |"
        )
    return lines


def record(page: Path, argv: list[str], lines: list[str]) -> None:
    """Append ``lines`` to ``page`` under a heading with the date, the commit, the command and the machine."""
    header = [
        "",
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit()}",
        "",
        f"`python scripts/lab/tutorial_loops.py {' '.join(argv)}`",
        "",
        f"Machine: {machine()}, torch {torch.__version__}.",
        "",
    ]
    with page.open("a") as f:
        f.write("\n".join(header + lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tutorials", default=",".join(TUTORIALS), help="comma-separated: " + ", ".join(TUTORIALS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--record", type=Path, help="append the table to this markdown page")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR, help="Fashion-MNIST's idx files (gzip or not)")
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_17K, help="MNIST's idx files (gzip or not)")
    parser.add_argument("--steps", type=int, help="stop each run after this many optimizer steps (a quick check)")
    args = parser.parse_args(argv)
    names = args.tutorials.split(",")
    unknown = [n for n in names if n not in TUTORIALS]
    if unknown:
        parser.error(f"unknown tutorial {unknown[0]!r}; choose from {', '.join(TUTORIALS)}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas")
    folders = {"Fashion-MNIST": args.fashion_dir, "MNIST": args.mnist_dir}
    results: dict[str, list[dict]] = {}
    try:
        for name in names:
            for seed in seeds:
                result = run(TUTORIALS[name], seed, folders[TUTORIALS[name].dataset], args.steps)
                print(f"{name} seed {seed}: {result}", flush=True)
                results.setdefault(name, []).append(result)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    lines = table(results)
    print("\n".join(lines))
    if args.record:
        record(args.record, argv, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
