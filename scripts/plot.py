"""Learning curves of several runs on one figure.

    python scripts/plot.py logs/train/multiruns/<time>        # every run of a sweep -> <that dir>/compare.png
    python scripts/plot.py logs/train/runs/<a> logs/train/runs/<b> -o a_vs_b.png

A run is a folder holding TensorBoard event files (``tensorboard/``) or a CSV log (``csv/metrics.csv``);
the event files are read with TensorBoard's own EventAccumulator, the CSV when a run has no event files.
Runs of a Hydra sweep are labelled by the overrides that differ between them (``.hydra/overrides.yaml``).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import yaml

from litvision.support.render import curves_figure, save_png

METRICS = ("train/loss", "val/loss", "train/acc", "val/acc")


def find_runs(root: Path) -> dict[Path, Path]:
    """{run dir: log file or folder} under ``root``; a run with both keeps its event files."""
    runs: dict[Path, Path] = {}
    for table in sorted(root.rglob("metrics.csv")):
        runs[table.parent.parent if table.parent.name == "csv" else table.parent] = table
    for event_file in sorted(root.rglob("events.out.tfevents.*")):
        folder = event_file.parent
        runs[folder.parent if folder.name == "tensorboard" else folder] = folder
    return runs


def read_events(folder: Path) -> dict[str, tuple[list[float], list[float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every point
    events.Reload()
    tags = set(events.Tags()["scalars"])
    epoch_of: dict[int, float] = {}  # Lightning logs an "epoch" scalar at the step of every metric
    for point in events.Scalars("epoch") if "epoch" in tags else ():
        epoch_of.setdefault(point.step, point.value)
    curves = {}
    for tag in METRICS:
        if tag in tags:
            points = events.Scalars(tag)
            curves[tag] = ([epoch_of.get(p.step, p.step) for p in points], [p.value for p in points])
    return curves


def read_csv(table: Path) -> dict[str, tuple[list[float], list[float]]]:
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    curves = {}
    for tag in METRICS:
        points = [(float(row.get("epoch") or row.get("step") or 0), float(row[tag])) for row in rows if row.get(tag)]
        if points:
            curves[tag] = ([epoch for epoch, _ in points], [value for _, value in points])
    return curves


def labels(runs: list[tuple[Path, Path]]) -> list[str]:
    """Each (run, root)'s folder relative to its root (the root's name for a lone run), followed, for
    runs of Hydra sweeps, by the overrides that not every run shares (``.hydra/overrides.yaml``)."""
    overrides = []
    for run, _ in runs:
        path = run / ".hydra" / "overrides.yaml"
        items = yaml.safe_load(path.read_text()) if path.is_file() else None
        overrides.append([str(item) for item in items or []])
    shared = set.intersection(*(set(items) for items in overrides))
    roots = {root for _, root in runs}
    names = []
    for (run, root), items in zip(runs, overrides):
        where = root.name if run == root else run.relative_to(root).as_posix()
        if len(roots) > 1 and run != root:
            where = f"{root.name}/{where}"
        own = " ".join(item for item in items if item not in shared)
        names.append(f"{where}: {own[:70]}" if own else where)
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run dirs or sweep dirs")
    parser.add_argument("-o", "--output", type=Path, help="the PNG to write (default: <first dir>/compare.png)")
    args = parser.parse_args(argv)

    found: list[tuple[Path, Path, Path]] = []  # (run, its log, the dir it was found under)
    for root in args.dirs:
        if not root.is_dir():
            return _fail(f"{root} is not a folder")
        found += [(run, log, root) for run, log in find_runs(root.resolve()).items()]
    curves = {}
    if found:
        for (_run, log, _), label in zip(found, labels([(run, root.resolve()) for run, _, root in found])):
            data = read_events(log) if log.is_dir() else read_csv(log)
            if data:
                curves[label] = data
    if not curves:
        where = ", ".join(str(d) for d in args.dirs)
        return _fail(f"no TensorBoard event files or csv/metrics.csv with {', '.join(METRICS)} under {where}")
    output = args.output or args.dirs[0] / "compare.png"
    runs = f"{len(curves)} run{'s' if len(curves) > 1 else ''}"
    save_png(curves_figure(curves, title=f"{runs}: solid train, dashed val"), output)
    print(f"wrote {output} ({runs})")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
