"""One page per run or sweep: python scripts/report.py <run dir or sweep dir>

A run's folder (it holds metrics.json or report_data.json) gets <run dir>/report.html, rebuilt from the
files the run saved (test_predictions.npz, report_data.json, provenance.json, resolved_config.yaml): no
model, data or GPU needed. A sweep's folder (logs/train/multiruns/<time>, an Optuna study's folder) gets
<sweep dir>/report.html: the runs' table, every run's val/acc curve, and links to each run's report; a
run whose files cannot be read is listed as unreadable, with the file and why.
Training writes the run's page itself (callbacks.report); see docs/report.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from litvision.support.errors import LitvisionError

RUN_MARKERS = ("metrics.json", "report_data.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a run dir (logs/train/runs/<time>) or a sweep dir")
    parser.add_argument(
        "--metric", default="val/acc_best", help="a sweep's runs are sorted by it (default val/acc_best)"
    )
    parser.add_argument("--ascending", action="store_true", help="a sweep's smallest metric first")
    args = parser.parse_args(argv)
    folder = args.folder
    if not folder.is_dir():
        return _fail(f"{folder} is not a folder; pass a run dir or a sweep dir under logs/")
    try:
        if any((folder / marker).is_file() for marker in RUN_MARKERS):
            from litvision.report.run_page import write_run_page

            written = write_run_page(folder)
        else:
            from litvision.sweeps.page import write_sweep_page
            from litvision.sweeps.results_table import read_runs

            try:
                found = read_runs(folder)
            except OSError as err:
                return _fail(f"cannot read {folder}: {err.strerror or err}")
            if not found:
                return _fail(f"{folder} holds no run (no metrics.json, status.json or .hydra/overrides.yaml)")
            written = write_sweep_page(folder, args.metric, args.ascending)
    except OSError as err:
        return _fail(f"cannot write the report in {folder}: {err.strerror or err}")
    except LitvisionError as err:
        return _fail(str(err))
    print(f"wrote {written}")
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
