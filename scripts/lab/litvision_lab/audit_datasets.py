"""How many exact duplicates the built-in datasets hold, and what the data audit costs: docs/data_audit.md.

    python scripts/lab/audit_datasets.py                       # prints the page
    python scripts/lab/audit_datasets.py --write docs/data_audit.md

For each dataset on this machine (Fashion-MNIST from Debian's package, real MNIST from the shared
17,435-image copy) it audits the official training and test files as they are (no validation carve-out)
with :func:`litvision.data.audit.audit`, and times the data module's ``setup()`` with ``data.audit``
off and on (best of ``--repeats``), which is what a run pays.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from litvision_lab.machine_info import machine
from litvision_lab.paths import MNIST_17K, ROOT
from litvision_lab.reproduce_page import commit

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
SOURCES = {"fashion_mnist": DEBIAN_FASHION_MNIST, "mnist": MNIST_17K}
LISTED = 10


def measure(dataset: str, source: Path, data_dir: Path, repeats: int, val_size: int = 5000) -> dict:
    from litvision.data import FashionMNISTDataModule, MNISTDataModule
    from litvision.data.audit import audit
    from litvision.data.datasets import ensure_available, load_split

    module = {"fashion_mnist": FashionMNISTDataModule, "mnist": MNISTDataModule}[dataset]
    from litvision_lab.synthetic import DATASETS

    ensure_available(DATASETS[dataset], data_dir, [str(source)], download=False)
    train = load_split(DATASETS[dataset], data_dir, train=True)
    test = load_split(DATASETS[dataset], data_dir, train=False)
    names = [str(i) for i in range(10)]
    result = audit({"train": train, "test": test}, names)
    # A second opinion that shares no code with the audit: distinct rows of both files together.
    both = torch.cat([train[0], test[0]]).reshape(len(train[0]) + len(test[0]), -1).numpy()
    distinct = len(np.unique(both, axis=0))
    setup_s = {}
    for audit_on in (False, True):
        times = []
        for _ in range(repeats):
            datamodule = module(
                data_dir=str(data_dir),
                search_dirs=[str(source)],
                download=False,
                class_names=names,
                val_size=val_size,
                audit=audit_on,
            )
            started = time.perf_counter()
            datamodule.setup("fit")
            times.append(time.perf_counter() - started)
        setup_s[audit_on] = min(times)
    return {
        "dataset": dataset,
        "source": source,
        "train": len(train[0]),
        "test": len(test[0]),
        "result": result,
        "distinct": distinct,
        "setup_off": setup_s[False],
        "setup_on": setup_s[True],
    }


def page(rows: list[dict], command: str) -> str:
    lines = [
        "# Exact duplicates in the built-in datasets, and the audit's cost",
        "",
        "Written by `scripts/lab/audit_datasets.py` (the data audit is described in [report.md](report.md#data-audit)).",
        f"Command: `{command}`; commit {commit()}; {machine()}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load average before the run "
        f"{os.getloadavg()[0]:.2f} (other people's jobs were running on the same cores).",
        "",
        "The official training and test files, audited as they are (BLAKE2b of each decoded image):",
        "",
        "| dataset | files | train images | test images | copies within train | copies within test "
        "| test images identical to a training image | distinct images (numpy.unique) | audit (hash + compare) "
        "| setup() audit off | setup() audit on |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        result = row["result"]
        lines.append(
            f"| {row['dataset']} | `{row['source']}` | {row['train']:,} | {row['test']:,} | {result.within['train']} "
            f"| {result.within['test']} | {result.across['test~train']} | {row['distinct']:,} | {result.seconds:.2f} s "
            f"| {row['setup_off']:.2f} s | {row['setup_on']:.2f} s |"
        )
    lines += [
        "",
        "Setup times are the best of the repeats; setup() includes parsing the files and the validation carve-out.",
        "",
    ]
    for row in rows:
        pairs = row["result"].examples.get("test~train", [])
        if pairs:
            shown = ", ".join(f"{a} = {b}" for a, b in pairs[:LISTED])
            more = f" (and {len(pairs) - LISTED} more)" if len(pairs) > LISTED else ""
            lines.append(f"- {row['dataset']}: test = train pairs (indices into the files): {shown}{more}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="setup() timings per setting (best kept)")
    parser.add_argument("--write", type=Path, help="write the page here (e.g. docs/data_audit.md)")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/lab/audit_datasets.py", *(argv if argv is not None else sys.argv[1:])])
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for dataset, source in SOURCES.items():
            if not source.is_dir():
                print(f"skipping {dataset}: {source} is missing", file=sys.stderr)
                continue
            rows.append(measure(dataset, source, Path(scratch) / dataset, args.repeats))
    text = page(rows, command)
    print(text)
    if args.write:
        (args.write if args.write.is_absolute() else ROOT / args.write).write_text(text)
    return 0
