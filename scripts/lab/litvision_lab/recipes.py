"""Issue 27's measurements: what each augmentation costs per step, the recipe ablation, the LR finder's pick.

    python scripts/lab/recipes.py augment-cost        # ms per batch of 256 of each augmentation -> docs/recipes.md
    python scripts/lab/recipes.py ablation --epochs 3 # fashion_mnist_best + each addition, one seed -> docs/results.md
    python scripts/lab/recipes.py lr-check            # the LR finder on the default run, then both lrs trained
    python scripts/lab/recipes.py speedrun-avx2       # fashion_mnist_speedrun, 3 seeds, oneDNN/ATen capped at AVX2

Each writes its section of its page between ``<!-- name:start -->`` and ``<!-- name:end -->`` markers (the
rest of the page is left alone) with the command, commit, CPU, date and the load average, since the
machine may be shared. Training runs are ``python scripts/train.py ...`` processes; accuracy comes from
their metrics.json. ``--epochs`` shorter than the recipe's marks the table as shortened.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from litvision_lab.machine_info import machine
from litvision_lab.paths import CONF_DIR, ROOT
from litvision_lab.reproduce_page import GOALS

RECIPES_PAGE, RESULTS_PAGE = ROOT / "docs" / "recipes.md", ROOT / "docs" / "results.md"
# The augmentations measured: data.augment settings, each on its own (the best recipe's batch ops together).
AUGMENTATIONS = {
    "none": {},
    "crop 2 + flip + cutout 8 (batch ops)": {"crop_padding": 2, "flip": True, "cutout_size": 8},
    "policy=randaugment": {"policy": "randaugment"},
    "policy=trivialaugment": {"policy": "trivialaugment"},
    "policy=autoaugment": {"policy": "autoaugment"},
    "erasing=0.25": {"erasing": 0.25},
    "mixup_alpha=0.2 + cutmix_alpha=1.0": {"mixup_alpha": 0.2, "cutmix_alpha": 1.0},
}
# The ablation: the best Fashion-MNIST recipe as it is, then each addition on its own.
ABLATION = {
    "fashion_mnist_best as it is": [],
    "+ EMA (decay 0.999, warm-up)": ["callbacks=[default,ema]"],
    "+ MixUp 0.2 / CutMix 1.0": ["data.augment.mixup_alpha=0.2", "data.augment.cutmix_alpha=1.0"],
    "+ TrivialAugment": ["data.augment.policy=trivialaugment"],
    "+ random erasing 0.25": ["data.augment.erasing=0.25"],
}
QUIET = ["trainer.enable_progress_bar=false", "callbacks.rich_model_summary=null"]


def header(command: str) -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"`{command}` at commit {commit.stdout.strip()}, {date}, on {machine()}"


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3]) if Path("/proc/loadavg").exists() else "?"


def busy(before: str) -> bool:
    """Whether the load average before a measurement ("1-min 5-min 15-min") says other work was running."""
    return before != "?" and float(before.split()[0]) > 1.0


def write_section(page: Path, name: str, body: str) -> None:
    """Replace the section ``name`` of ``page`` (or append it); the rest of the page is left as it was."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = f"{start}\n{body.strip()}\n{end}\n"
    old = page.read_text(encoding="utf-8") if page.exists() else ""
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end) + "\n?", flags=re.S)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    page.write_text(new, encoding="utf-8")


# -- what each augmentation costs ----------------------------------------------------------------------------
def fashion_batches(count: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` batches of real Fashion-MNIST training images (uint8) and labels, through the data config."""
    from hydra import compose, initialize_config_dir

    from litvision.support.instantiate import build

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["~local", "data=fashion_mnist", "paths.output_dir=."])
    datamodule = build(cfg.data, "data")
    datamodule.prepare_data()
    datamodule.setup("fit")
    images, labels = datamodule.splits["train"]
    return images[: count * batch].view(count, batch, *images.shape[1:]), labels[: count * batch].view(count, batch)


def step_time(batches: torch.Tensor, labels: torch.Tensor, precision: str) -> float:
    """Median seconds of one training step (forward, backward, AdamW) of fashion_mnist_best's network."""
    from hydra import compose, initialize_config_dir

    from litvision.support.instantiate import build
    from litvision.support.precision import choose_precision

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["~local", "experiment=fashion_mnist_best", "paths.output_dir=."])
    model = build(cfg.model, "model")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dtype = torch.bfloat16 if choose_precision(precision, "cpu") == "bf16-mixed" else None
    times = []
    for images, targets in zip(batches, labels):
        images = images.float() / 255  # the step's time does not depend on the normalization
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return statistics.median(times[2:])


def augment_cost(args: argparse.Namespace) -> None:
    from litvision.data.augment import Augmentation

    torch.manual_seed(0)
    batches, labels = fashion_batches(args.batches, args.batch_size)
    before = load()
    rows = []
    for name, options in AUGMENTATIONS.items():
        augmentation = Augmentation(num_classes=10, **options)
        times = []
        for images, targets in zip(batches, labels):
            started = time.perf_counter()
            mixed = augmentation.normalized(augmentation.pixels(images).float())
            augmentation.mix(mixed, targets)
            times.append(time.perf_counter() - started)
        rows.append((name, statistics.median(times[1:]) * 1000))
    step = step_time(batches, labels, "auto") * 1000
    after = load()
    command = f"python scripts/lab/recipes.py augment-cost --batches {args.batches} --batch-size {args.batch_size}"
    lines = [
        f"Measured by {header(command)}; load average {before} before, {after} after"
        + (" (other work was running: the figures are upper bounds)." if busy(before) else "."),
        "",
        f"Median of {args.batches - 1} batches of {args.batch_size} real Fashion-MNIST images on the CPU "
        "(uint8 in, the augmentation alone, normalization excluded). For scale: one training step of "
        f"`experiment=fashion_mnist_best`'s network (forward, backward, AdamW, precision auto) took {step:.0f} ms.",
        "",
        "| data.augment | ms per batch | share of that training step |",
        "| --- | ---: | ---: |",
    ]
    lines += [f"| {name} | {ms:.1f} | {ms / step:.0%} |" for name, ms in rows]
    write_section(args.page or RECIPES_PAGE, "augment_cost", "\n".join(lines))
    print("\n".join(lines))


# -- the ablation and the LR finder's pick -------------------------------------------------------------------
def train_run(run_dir: Path, overrides: list[str], env: dict[str, str] | None = None) -> dict:
    """``python scripts/train.py <overrides>`` (reused when ``run_dir`` holds a finished run), with ``env`` added
    to the environment: its metrics.json's metrics plus ``wall_s`` (command to exit) and ``load`` (load average
    at its end), kept in run_time.json."""
    metrics_file, time_file = run_dir / "metrics.json", run_dir / "run_time.json"
    if not metrics_file.exists():
        command = [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, f"hydra.run.dir={run_dir}"]
        print("running:", shlex.join(command), flush=True)
        started = time.perf_counter()
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})})
        if result.returncode != 0:
            raise SystemExit(f"failed: {shlex.join(command)}\n{result.stderr[-3000:]}")
        time_file.write_text(json.dumps({"wall_s": time.perf_counter() - started, "load": load()}))
    metrics = json.loads(metrics_file.read_text())
    timing = json.loads(time_file.read_text()) if time_file.exists() else {"wall_s": None, "load": "?"}
    return {**metrics.get("metrics", metrics), **timing}


def minutes(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.1f} min"


def ablation(args: argparse.Namespace) -> None:
    shortened = args.epochs is not None
    common = ["experiment=fashion_mnist_best", f"seed={args.seed}", *QUIET]
    common += [f"trainer.max_epochs={args.epochs}"] if shortened else []
    rows = []
    for name, extra in ABLATION.items():
        slug = re.sub(r"\W+", "_", name).strip("_").lower()
        metrics = train_run(args.work / f"e{args.epochs or 'full'}_s{args.seed}" / slug, [*common, *extra])
        rows.append(
            f"| {name} | `{' '.join(extra) or '-'}` | {metrics['test/acc']:.2%} | {metrics['val/acc_best']:.2%} "
            f"| {minutes(metrics['wall_s'])} | {metrics['load']} |"
        )
        command = f"python scripts/lab/recipes.py ablation --seed {args.seed}" + (
            f" --epochs {args.epochs}" if shortened else ""
        )
        note = (
            f"**Shortened: {args.epochs} epochs per run instead of the recipe's 30 (the one-cycle schedule planned "
            f"over {args.epochs}), one seed ({args.seed})**: additions that regularize (MixUp/CutMix, policies, "
            "erasing) typically cost accuracy in a short run and pay off in a long one, and an EMA of decay 0.999 "
            "averages over about 1,000 steps (a 30-epoch run has 6,450): a short table understates them."
            if shortened
            else f"Full recipe length, one seed ({args.seed})."
        )
        lines = [
            "### Ablation: fashion_mnist_best plus each addition",
            "",
            f"Measured by {header(command)}; load average {load()} at the last run's end.",
            "",
            note,
            "",
            "| recipe | overrides | test/acc | val/acc_best | wall time | load average at its end |",
            "| --- | --- | ---: | ---: | ---: | --- |",
            *rows,
        ]
        write_section(args.page or RESULTS_PAGE, "ablation", "\n".join(lines))  # after each run: partial tables too
    print("\n".join(lines))


def lr_check(args: argparse.Namespace) -> None:
    """The LR finder on the default run, then the default run trained with the configured and the suggested lr."""
    work = args.work / "lr_check"
    finder_dir = work / "lr_find"
    if not (finder_dir / "lr_find.json").exists():
        command = [sys.executable, str(ROOT / "scripts" / "lr_find.py"), *QUIET, f"hydra.run.dir={finder_dir}"]
        print("running:", shlex.join(command), flush=True)
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"failed: {shlex.join(command)}\n{result.stderr[-3000:]}")
    found = json.loads((finder_dir / "lr_find.json").read_text())
    configured, suggested = found["configured_lr"], float(f"{found['suggestion']:.3g}")
    rows = []
    for name, lr in (("configured", configured), ("suggested", suggested)):
        metrics = train_run(work / name, [f"model.optimizer.lr={lr}", f"seed={args.seed}", *QUIET])
        rows.append(f"| {name} | {lr:g} | {metrics['test/acc']:.2%} | {metrics['val/acc_best']:.2%} |")
    lines = [
        "### The LR finder on the default run",
        "",
        f"Measured by {header('python scripts/lab/recipes.py lr-check')}; load average {load()} at the end.",
        "",
        f"`python scripts/lr_find.py` on the default run (small_cnn, Fashion-MNIST, AdamW, batch 256) suggested "
        f"lr {found['suggestion']:.3g} (steepest descent per log10(lr); the loss was lowest at "
        f"{found['lowest_loss_lr']:.3g}; Lightning's own `suggestion()` gave {found['lightning_suggestion']:.3g}). "
        "Both learning rates as the one-cycle peak of the default 6-epoch run, one seed each:",
        "",
        "| lr | model.optimizer.lr | test/acc | val/acc_best |",
        "| --- | ---: | ---: | ---: |",
        *rows,
    ]
    write_section(args.page or RESULTS_PAGE, "lr_check", "\n".join(lines))
    print("\n".join(lines))


# A CPU without bfloat16 instructions, stood in for by capping oneDNN's and ATen's kernels at AVX2 (what
# precision=auto then sees as well: litvision.support.precision.onednn_cap).
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def speedrun_avx2(args: argparse.Namespace) -> None:
    """fashion_mnist_speedrun (precision auto) over three seeds with the kernels capped at AVX2."""
    rows, accs, walls = [], [], []
    for seed in args.seeds:
        run_dir = args.work / "speedrun_avx2" / f"seed{seed}"
        metrics = train_run(run_dir, ["experiment=fashion_mnist_speedrun", f"seed={seed}"], env=AVX2_ONLY)
        chosen = re.search(r"trainer.precision=auto: \S+ \([^)]*\)", (run_dir / "train.log").read_text())
        made = json.loads((run_dir / "provenance.json").read_text())
        when = f"{made['started'][:16].replace('T', ' ')} UTC, {made['git']['commit'][:7]}"
        accs.append(metrics["test/acc"] * 100)
        walls.append(metrics["wall_s"])
        rows.append(
            f"| {seed} | {metrics['test/acc']:.2%} | {metrics['wall_s']:.0f} s | {metrics['load']} | {when} "
            f"| `{chosen.group(0) if chosen else '?'}` |"
        )
    mean, spread = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
    goal, target, limit = GOALS["fashion_mnist_speedrun"]
    met = mean >= target and statistics.mean(walls) <= limit
    command = f"python scripts/lab/recipes.py speedrun-avx2 --seeds {','.join(map(str, args.seeds))}"
    lines = [
        "### fashion_mnist_speedrun on a CPU without bfloat16 instructions",
        "",
        f"Written by {header(command)}, from the runs below (each started at the time and commit it names).",
        "",
        "This CPU has AVX512-BF16, so a CPU without it is stood in for: each run has `ONEDNN_MAX_CPU_ISA=AVX2` "
        "and `ATEN_CPU_CAPABILITY=avx2`, which keep oneDNN's and ATen's kernels to AVX2 (no AVX-512, no "
        "bfloat16 instructions), and `precision=auto` reads that cap as such a CPU and picks float32. Same cores "
        "and clock as the bf16 runs: a real AVX2-only CPU differs in more than its vector instructions, and may "
        "be slower still (the AVX2-only CPU measured in [performance.md](performance.md#bfloat16-on-a-cpu)). "
        "Wall time from the command to the process's exit, the test included.",
        "",
        "| seed | test/acc | wall time | load average at its end | started, commit | what auto picked |",
        "| ---: | ---: | ---: | --- | --- | --- |",
        *rows,
        "",
        f"Mean {mean:.2f} ± {spread:.2f}% in {statistics.mean(walls):.0f} s a run: goal ({goal}) "
        + ("met." if met else "not met."),
    ]
    write_section(args.page or RESULTS_PAGE, "speedrun_avx2", "\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cost = sub.add_parser("augment-cost", help="ms per batch of each augmentation -> docs/recipes.md")
    cost.add_argument("--batches", type=int, default=12)
    cost.add_argument("--batch-size", type=int, default=256)
    for name, helps in (("ablation", "the recipe ablation -> docs/results.md"), ("lr-check", "LR finder pick")):
        run = sub.add_parser(name, help=helps)
        run.add_argument("--seed", type=int, default=0)
        run.add_argument("--work", type=Path, default=ROOT / "logs" / "recipes")
        if name == "ablation":
            run.add_argument("--epochs", type=int, default=None, help="shorter than the recipe's: a shortened table")
    avx2 = sub.add_parser("speedrun-avx2", help="fashion_mnist_speedrun with the kernels capped at AVX2")
    avx2.add_argument("--seeds", type=lambda text: [int(each) for each in text.split(",")], default=[0, 1, 2])
    avx2.add_argument("--work", type=Path, default=ROOT / "logs" / "recipes")
    for each in sub.choices.values():
        each.add_argument("--page", type=Path, default=None, help="the page to write its section into")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    tasks = {"augment-cost": augment_cost, "ablation": ablation, "lr-check": lr_check, "speedrun-avx2": speedrun_avx2}
    tasks[args.what](args)
    return 0
