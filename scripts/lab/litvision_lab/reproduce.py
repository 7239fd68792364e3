"""Rerun the tutorial, better and best experiments over several seeds and write docs/results.md.

    python scripts/lab/reproduce.py --set tutorials                   # the tutorials' recipes, seeds 0,1,2
    python scripts/lab/reproduce.py --experiments seed000_fashion_cnn,fashion_mnist_speedrun --seeds 0
    python scripts/lab/reproduce.py --set all -- trainer.max_epochs=1  # overrides after -- go to every run
    python scripts/lab/reproduce.py --set all --dry-run               # print the planned runs, run nothing
    python scripts/lab/reproduce.py --set all --plan-only             # write the table with "not run" cells
    python scripts/lab/reproduce.py --set all --table-only            # the table from the runs that finished; run nothing

Each run is ``python scripts/train.py experiment=<e> seed=<s> hydra.run.dir=<root>/<e>/seed<s>`` in its
own process; its test accuracy comes from that folder's metrics.json and its wall time is measured here,
from the command to the process's exit (imports, data loading and the test included). The table is
rewritten after every run, so a stopped reproduction keeps what finished; a run whose folder already
holds a finished run with the same overrides and the same recipe file is reused (``--force`` reruns it).
The default page (docs/results.md, and README's rows) lists every experiment whichever ones a call runs,
the others filled from their finished runs, so long experiments can be run piecemeal (``--experiments``),
each row saying how many of its seeds ran; ``--table-only`` writes the page from the finished runs alone.
Runs that need data or hardware this machine lacks (CIFAR-10 files, a GPU, MNIST) are listed as skipped
with the reason.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from litvision_lab.paths import CONF_DIR, MNIST_17K
from litvision_lab.reproduce_page import DEFAULT_OUTPUT, TUTORIALS, write_page
from litvision_lab.reproduce_runs import fill_finished, overrides_of, plan_experiment, run_dir, run_one

SETS = {
    "tutorials": TUTORIALS,
    "better": [f"{name}_better" for name in TUTORIALS],
    "best": ["fashion_mnist_speedrun", "fashion_mnist_best", "mnist_best", "cifar10_speedrun"],
}
SETS["all"] = SETS["tutorials"] + SETS["better"] + SETS["best"]


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Overrides after -- are passed to every run."
    )
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--set", choices=sorted(SETS), default=None, help="a named set of experiments (default: all)")
    chosen.add_argument("--experiments", default=None, help="comma-separated experiment names (conf/experiment/)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one run each (default: 0,1,2)")
    parser.add_argument("--root", type=Path, default=Path("logs/reproduce"), help="run folders: <root>/<e>/seed<s>")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="the page to write (the default also updates README's rows)"
    )
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_17K, help="gzipped MNIST files to use")
    parser.add_argument("--download", action="store_true", help="let runs download missing data instead of skipping")
    parser.add_argument("--force", action="store_true", help="rerun runs whose folder holds a finished run")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="print the planned runs and skips; write nothing")
    mode.add_argument("--plan-only", action="store_true", help="write the page with 'not run' cells; run nothing")
    mode.add_argument(
        "--table-only", action="store_true", help="write the page from the runs that finished under --root; run nothing"
    )
    return parser.parse_args(own), extra


def main(argv: list[str] | None = None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else argv)
    experiments = args.experiments.split(",") if args.experiments else SETS[args.set or "all"]
    unknown = [name for name in experiments if not (CONF_DIR / "experiment" / f"{name}.yaml").is_file()]
    if unknown:
        print(f"error: no such experiment in conf/experiment/: {', '.join(unknown)}", file=sys.stderr)
        return 2
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        print(f"error: --seeds takes comma-separated integers, got {args.seeds!r}", file=sys.stderr)
        return 2
    if not seeds:
        print("error: --seeds is empty", file=sys.stderr)
        return 2
    mnist_dir = args.mnist_dir.resolve() if args.mnist_dir and args.mnist_dir.is_dir() else None
    root = args.root.resolve()

    plans = [plan_experiment(name, extra, mnist_dir, args.download) for name in experiments]
    if args.dry_run or args.plan_only:
        for plan in plans:
            if plan.skip:
                print(f"{plan.experiment}: skipped: {plan.skip}")
                continue
            for seed in seeds:
                words = [*overrides_of(plan, seed, extra), f"hydra.run.dir={run_dir(root, plan.experiment, seed)}"]
                print("python scripts/train.py " + " ".join(words))
        if args.plan_only:
            write_page(args.output, plans, seeds, extra, plan_only=True)
            print(f"wrote {args.output}")
        return 0

    # The default page (and README's rows) always lists every experiment: the ones this call does not run
    # are filled from their finished runs. A page written elsewhere lists this call's experiments only.
    page = plans
    if args.output.resolve() == DEFAULT_OUTPUT.resolve():
        chosen = {plan.experiment: plan for plan in plans}
        names = [*SETS["all"], *(name for name in experiments if name not in SETS["all"])]
        page = [chosen.get(name) or plan_experiment(name, extra, mnist_dir, args.download) for name in names]
    if args.table_only:
        fill_finished(page, seeds, root, extra)
        write_page(args.output, page, seeds, extra, plan_only=False)
        print(f"wrote {args.output} from {sum(len(p.runs) for p in page)} finished runs")
        return 0

    fill_finished([plan for plan in page if plan.experiment not in experiments], seeds, root, extra)
    print(f"{sum(0 if p.skip else len(seeds) for p in plans)} runs; the table: {args.output}", flush=True)
    write_page(args.output, page, seeds, extra, plan_only=False)
    for plan in plans:
        if plan.skip:
            print(f"  {plan.experiment}: skipped: {plan.skip}", flush=True)
            continue
        for seed in seeds:
            plan.runs[seed] = run_one(plan, seed, root, extra, args.force)
            write_page(args.output, page, seeds, extra, plan_only=False)
    print(f"wrote {args.output}")
    failed = sum(r.get("status") == "failed" for p in plans for r in p.runs.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
