"""Every run of a sweep in one table: python scripts/summarize.py logs/train/multiruns/<time>

Prints a markdown table (the overrides that differ between runs, val/acc_best, test/acc, epochs, wall
time and status: ok, failed or pruned), best first, then mean ± std over seeds and k-fold folds
(data.fold) for configurations that ran with several, and writes the same rows to <sweep dir>/summary.csv.
Works on Optuna searches too (logs/train/optuna/<study>), where the order follows the study's direction.
A run whose files cannot be read (or are not litvision's) is listed as unreadable, with the file and why.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from litvision.support.records import UnreadableFile, read_run_file
from litvision.sweeps.results_table import markdown, read_runs, write_csv

SHOWN = ["val/acc_best", "test/acc"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun or Optuna sweep folder (or one run's folder)")
    parser.add_argument(
        "--metric", default=None, help="sort by this metric (default: the sweep's optimized_metric, else val/acc_best)"
    )
    parser.add_argument(
        "--ascending",
        action="store_true",
        help="smallest first (default: as the study's direction says, else largest first)",
    )
    parser.add_argument(
        "--csv", type=Path, default=None, help="where to write the CSV (default: <sweep dir>/summary.csv)"
    )
    args = parser.parse_args(argv)

    if not args.sweep_dir.is_dir():
        print(
            f"error: {args.sweep_dir} is not a folder; pass a sweep dir such as logs/train/multiruns/<time>",
            file=sys.stderr,
        )
        return 2
    try:
        runs = read_runs(args.sweep_dir)
    except OSError as err:
        print(f"error: cannot read {args.sweep_dir}: {err.strerror or err}", file=sys.stderr)
        return 2
    if not runs:
        print(
            f"error: no runs in {args.sweep_dir} (a run is a folder with .hydra/overrides.yaml, status.json "
            f"or metrics.json)",
            file=sys.stderr,
        )
        return 2
    optimized_metric, direction = _sweep_config(args.sweep_dir)
    metric = args.metric or optimized_metric or SHOWN[0]
    ascending = args.ascending or direction == "minimize"
    shown = SHOWN if metric in SHOWN else [metric, *SHOWN]

    print(markdown(runs, shown, metric, ascending))
    csv_path = args.csv or args.sweep_dir / "summary.csv"
    try:
        write_csv(csv_path, runs, shown, metric, ascending)
    except OSError as err:
        print(f"error: cannot write {csv_path}: {err.strerror}", file=sys.stderr)
        return 2
    print(f"\nCSV: {csv_path}")
    return 0


def _sweep_config(sweep_dir: Path) -> tuple[str | None, str | None]:
    """The sweep's optimized_metric and hydra.sweeper.direction from its multirun.yaml, read as plain YAML
    (nothing resolved); None for what it lacks or does not hold as a string."""
    try:
        loaded = yaml.safe_load(read_run_file(sweep_dir / "multirun.yaml") or "")
    except (UnreadableFile, yaml.YAMLError, RecursionError):
        return None, None
    metric = loaded.get("optimized_metric") if isinstance(loaded, dict) else None
    sweeper = loaded.get("hydra") if isinstance(loaded, dict) else None
    sweeper = sweeper.get("sweeper") if isinstance(sweeper, dict) else None
    direction = sweeper.get("direction") if isinstance(sweeper, dict) else None
    return (metric if isinstance(metric, str) else None), (direction if isinstance(direction, str) else None)


if __name__ == "__main__":
    sys.exit(main())
