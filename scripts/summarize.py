"""Every run of a sweep in one table: python scripts/summarize.py logs/train/multiruns/<time>

Prints a markdown table (the overrides that differ between runs, val/acc_best, test/acc, epochs, wall
time and status: ok, failed or pruned), best first, then mean ± std over seeds and k-fold folds
(data.fold) for configurations that ran with several, and writes the same rows to <sweep dir>/summary.csv.
Works on Optuna searches too (logs/train/optuna/<study>), where the order follows the study's direction.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

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
    runs = read_runs(args.sweep_dir)
    if not runs:
        print(
            f"error: no runs in {args.sweep_dir} (a run is a folder with .hydra/overrides.yaml, status.json "
            f"or metrics.json)",
            file=sys.stderr,
        )
        return 2
    sweep = _sweep_config(args.sweep_dir)
    metric = args.metric or sweep.get("optimized_metric") or SHOWN[0]
    ascending = args.ascending or (sweep.get("hydra", {}).get("sweeper", {}).get("direction") == "minimize")
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


def _sweep_config(sweep_dir: Path) -> dict:
    """The sweep's multirun.yaml (unresolved is enough for two plain keys), or {}."""
    try:
        loaded = yaml.safe_load((sweep_dir / "multirun.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


if __name__ == "__main__":
    sys.exit(main())
