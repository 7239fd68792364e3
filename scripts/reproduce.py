"""Rerun the tutorial, better and best experiments over several seeds and write docs/results.md.

    python scripts/reproduce.py --set tutorials                 # the tutorials' recipes, seeds 0,1,2
    python scripts/reproduce.py --experiments seed000_fashion_cnn,fashion_mnist_speedrun --seeds 0
    python scripts/reproduce.py --set all -- trainer.max_epochs=1   # overrides after -- go to every run
    python scripts/reproduce.py --set all --dry-run             # print the planned runs, run nothing
    python scripts/reproduce.py --set all --plan-only           # write the table with "not run" cells
    python scripts/reproduce.py --set all --table-only          # the table from the runs that finished; run nothing

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
import gzip
import hashlib
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from litvision.sweeps.records import METRICS_FILE, read_json, write_json

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
DEFAULT_OUTPUT = ROOT / "docs" / "results.md"
RECORD_FILE = "reproduce.json"  # per run dir: the command, its exit status and wall time
LOOPS_PAGE = ROOT / "docs" / "tutorial_loops.md"  # scripts/tutorial_loops.py's records: the tutorials' own loops
LOOP_OF = {"seed000_fashion_cnn": "seed000", "seed002_lenet": "seed002_lenet", "seed004_mlp": "seed004_mlp"}
DEFAULT_MNIST_DIR = Path(os.environ.get("LITVISION_MNIST17K", ROOT.parent / "shared" / "data" / "mnist-17k"))

TUTORIALS = [
    "seed000_fashion_cnn",
    "seed001_simple_cnn",
    "seed002_lenet",
    "seed002_residual_cnn",
    "seed003_keras_cnn",
    "seed004_mlp",
]
SETS = {
    "tutorials": TUTORIALS,
    "better": [f"{name}_better" for name in TUTORIALS],
    "best": ["fashion_mnist_speedrun", "fashion_mnist_best", "mnist_best", "cifar10_speedrun"],
}
SETS["all"] = SETS["tutorials"] + SETS["better"] + SETS["best"]

# The tutorials' reported test accuracy (%), from their own text; a better recipe is compared with the
# number of the recipe it improves on.
TUTORIAL_ACC = {
    "seed000_fashion_cnn": "90.18",
    "seed001_simple_cnn": "— (trains nothing)",
    "seed002_lenet": "98.49",
    "seed002_residual_cnn": "61.46 best / 51.75 last",
    "seed003_keras_cnn": "90.59",
    "seed004_mlp": "97 (whole %)",
}
# Each goal as the page states it, and as numbers for the verdict: test accuracy in % and wall seconds
# per run (None: no such limit; both None: a goal this machine cannot check).
GOALS = {
    "fashion_mnist_speedrun": (">= 92.0% in <= 90 s on a 2-core CPU", 92.0, 90.0),
    "fashion_mnist_best": (">= 94.0% in <= 30 min on a 2-core CPU", 94.0, 1800.0),
    "mnist_best": (">= 99.3% (17,435 training images)", 99.3, None),
    "cifar10_speedrun": ("airbench94: 94.0% in 2.6 s on an A100", None, None),
}

PAGE_INTRO = """\
# Results

[README](../README.md) · [training](training.md) · [models](models.md) · [performance](performance.md)

Every tutorial litvision grew from (`../shared/SEEDS.md`) as an experiment that follows its recipe
(`conf/experiment/seed*.yaml`, whose comments say where and why the template differs), one better recipe
for the same network (`*_better`: same layers and parameter count, better training) and the best
recipes per dataset (`*_best`, `*_speedrun`). This page is written by

```bash
python scripts/reproduce.py --set all            # or --set tutorials|better|best, --experiments a,b --seeds 0,1,2
```

which runs every experiment once per seed (`python scripts/train.py experiment=<e> seed=<s>`, run folders
under `logs/reproduce/<e>/seed<s>/`) and rewrites this page after each run (and the headline rows in the
README), every experiment on it: those a call does not run come from their finished runs, as with
`--table-only`, which runs nothing. Do not edit it by hand.

- **test acc**: the official test split, in %, mean ± sample standard deviation over the seeds. The
  tutorial recipes test the last epoch's weights (as the tutorials report them), with a 1,000-image
  validation split kept only for the curves; the other recipes test the checkpoint with the best
  `val/acc` on their validation split (5,000 images; 2,000 of the MNIST subset).
- **MNIST** here is the 17,435-image real training subset in `../shared/data/mnist-17k` with the official
  10,000-image test split (the script passes `data.search_dirs` when that folder exists; `--mnist-dir`
  names another). The tutorials trained on all 60,000 images, so their MNIST recipes (LeNet, the MLP,
  and LeNet's better recipe) count optimizer steps (`trainer.max_steps`, the tutorial's epochs times its
  batches per epoch) instead of epochs: the subset trains as long as the whole set did, on less data.
  A tutorial that printed whole percents (the MLP's "97%") is compared as the range it stands for.
- **verdict**: a tutorial recipe is *reproduced* when its mean is at or above the tutorial's number, or
  within one standard deviation below it; a better recipe *beats the tutorial* when its mean is above that
  number (and the row says by how much it beats the recipe's own run here); a best or speedrun recipe
  meets its goal when the mean accuracy reaches it and, where the goal has a time limit, the mean wall
  time per run is within it.
- **wall per run**: from the command to the process's exit, imports and the test included; mean over seeds.
- **control**: where a tutorial recipe lands below the tutorial's number, the tutorial's own loop in plain
  PyTorch, run here on the same files by `scripts/tutorial_loops.py`, tells whether the template or the
  tutorial's number is off: [tutorial_loops.md](tutorial_loops.md).
- A run that needs what the machine lacks (CIFAR-10 files, a GPU, MNIST) is listed as skipped, with why.
"""


@dataclass
class Plan:
    """One experiment: what composing it said, and its runs (one per seed)."""

    experiment: str
    dataset: str = "?"
    network: str = "?"
    params: int | None = None
    extra: list[str] = field(default_factory=list)  # overrides this script adds (MNIST search dir)
    skip: str = ""  # why it cannot run here; empty: it can
    runs: dict[int, dict] = field(default_factory=dict)  # seed -> {"status", "acc", "epochs", "wall_s", "error"}


# -- planning -------------------------------------------------------------------------------------
def compose(experiment: str, overrides: list[str]):
    """The run's composed config, as scripts/train.py composes it (hydra.* overrides left out)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            plain = [o for o in overrides if not o.lstrip("~+").startswith("hydra.")]
            return hydra_compose("train", overrides=[f"experiment={experiment}", *plain], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def data_files(dataset: str, data_dir: Path, search_dirs) -> Path | None:
    """Where the dataset's training images would be read from (None: nowhere), without copying anything.

    The same places litvision.data.datasets.ensure_available looks, in its order, short of downloading.
    """
    from litvision.data.datasets import DATASETS

    spec = DATASETS[dataset]
    if all(path.is_file() for path in spec.paths(data_dir)):
        return spec.paths(data_dir)[0]
    raw = data_dir / spec.folder
    if spec.gzipped and all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in spec.files):
        return raw / spec.files[0] if (raw / spec.files[0]).is_file() else raw / f"{spec.files[0]}.gz"
    for source in search_dirs or ():
        source = Path(str(source)).expanduser()
        if spec.gzipped and all((source / f"{f}.gz").is_file() for f in spec.files):
            return source / f"{spec.files[0]}.gz"
    return None


def idx_count(path: Path) -> int | None:
    """The image count in an IDX file's header (gzipped or not)."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as handle:
            header = handle.read(8)
        return int.from_bytes(header[4:8], "big") if len(header) == 8 else None
    except OSError:
        return None


def plan_experiment(experiment: str, extra: list[str], mnist_dir: Path | None, download: bool) -> Plan:
    import torch
    from hydra.utils import get_class, instantiate
    from omegaconf import OmegaConf

    from litvision.data.datasets import DATASETS
    from litvision.data.synthetic import OFFICIAL_SIZES, is_synthetic

    plan = Plan(experiment)
    try:
        cfg = compose(experiment, extra)
        dataset = get_class(cfg.data._target_).dataset
        if dataset == "mnist" and mnist_dir is not None and not any(o.startswith("data.search_dirs") for o in extra):
            plan.extra = [f"data.search_dirs=[{mnist_dir}]"]
            cfg = compose(experiment, [*plan.extra, *extra])
        plan.network = cfg.hydra.runtime.choices.get("model", "?")
        plan.params = sum(
            p.numel() for p in instantiate(OmegaConf.to_container(cfg.model.net, resolve=True)).parameters()
        )
    except Exception as err:  # a bad override or a broken config: reported in the table, the others still run
        plan.skip = f"does not compose: {str(err).strip().splitlines()[0]}"
        return plan

    spec = DATASETS[dataset]
    data_dir = Path(cfg.data.data_dir).expanduser()
    found = data_files(dataset, data_dir, cfg.data.search_dirs)
    plan.dataset = spec.name
    if found is not None and spec.gzipped:
        count = idx_count(found)
        if count is not None and count != OFFICIAL_SIZES[dataset][0]:
            plan.dataset += f" ({count:,} train)"
    if found is not None and is_synthetic(dataset, data_dir):
        plan.dataset += " (synthetic files!)"

    reasons = []
    if str(cfg.trainer.accelerator) in ("gpu", "cuda") and not torch.cuda.is_available():
        reasons.append("needs a GPU")
    if found is None and not (download and cfg.data.download):
        reasons.append(f"no {spec.name} files" + (" (--mnist-dir)" if dataset == "mnist" else ""))
    plan.skip = "; ".join(reasons)
    return plan


# -- running --------------------------------------------------------------------------------------
def run_dir(root: Path, experiment: str, seed: int) -> Path:
    return root / experiment / f"seed{seed}"


def overrides_of(plan: Plan, seed: int, extra: list[str]) -> list[str]:
    return [f"experiment={plan.experiment}", f"seed={seed}", *plan.extra, *extra]


def read_result(folder: Path) -> dict:
    """A finished run's numbers, or {} when the folder holds none."""
    record, metrics = read_json(folder / RECORD_FILE), read_json(folder / METRICS_FILE)
    if not record:
        return {}
    if record.get("returncode") != 0 or "test/acc" not in metrics.get("metrics", {}):
        return {"status": "failed", "error": record.get("error", ""), "wall_s": record.get("wall_s")}
    return {
        "status": "ok",
        "acc": 100.0 * metrics["metrics"]["test/acc"],
        "epochs": metrics.get("epochs"),
        "wall_s": record.get("wall_s"),
    }


def recipe_hash(experiment: str) -> str:
    """A digest of conf/experiment/<experiment>.yaml: a run of an edited recipe is not reused."""
    return hashlib.sha256((CONF_DIR / "experiment" / f"{experiment}.yaml").read_bytes()).hexdigest()[:16]


def flat(value, prefix: str = "") -> dict:
    """A nested config container as {"a.b.c": leaf}."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{prefix}{key}.").items()}
    return {prefix[:-1]: value}


def same_settings(folder: Path, experiment: str, overrides: list[str]) -> bool:
    """Whether every setting a run saved (``.hydra/config.yaml``) still composes to the value it had.

    The check for runs recorded before their record carried a recipe digest. Settings added since are
    left out (a new option's default keeps the old behaviour), and so are the run's own paths.
    """
    from omegaconf import OmegaConf

    try:
        saved = flat(OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "config.yaml"), resolve=False))
        cfg = compose(experiment, [o for o in overrides if not o.startswith("experiment=")])
    except Exception:  # an unreadable folder or a recipe that no longer composes: not reusable
        return False
    now = flat(OmegaConf.to_container(cfg, resolve=False))
    shared = [key for key in saved.keys() & now.keys() if not key.startswith(("paths.", "hydra."))]
    return all(saved[key] == now[key] for key in shared)


def finished_with(folder: Path, overrides: list[str], experiment: str) -> bool:
    """Whether ``folder`` holds a successful run of exactly these overrides and this recipe (so it can be reused)."""
    saved = folder / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return False
    same = [o for o in (yaml.safe_load(saved.read_text()) or []) if not o.startswith("hydra.")] == overrides
    if not same or read_result(folder).get("status") != "ok":
        return False
    recorded = read_json(folder / RECORD_FILE).get("recipe")
    if recorded is None:  # recorded before the digest: compare the settings the run saved
        return same_settings(folder, experiment, overrides)
    return recorded == recipe_hash(experiment)


def fill_finished(plans: list[Plan], seeds: list[int], root: Path, extra: list[str]) -> None:
    """Each plan's runs of ``seeds`` that finished under ``root`` (and may be reused), read into ``plan.runs``."""
    for plan in plans:
        if plan.skip:
            continue
        for seed in seeds:
            folder = run_dir(root, plan.experiment, seed)
            if finished_with(folder, overrides_of(plan, seed, extra), plan.experiment):
                plan.runs[seed] = read_result(folder)


def run_one(plan: Plan, seed: int, root: Path, extra: list[str], force: bool) -> dict:
    folder = run_dir(root, plan.experiment, seed)
    overrides = overrides_of(plan, seed, extra)
    if not force and finished_with(folder, overrides, plan.experiment):
        print(f"  {plan.experiment} seed {seed}: reusing the finished run in {folder}", flush=True)
        return read_result(folder)
    for stale in (RECORD_FILE, METRICS_FILE):  # a rerun must not be read as the old run's numbers
        (folder / stale).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), *overrides, f"hydra.run.dir={folder}"]
    print(f"  {plan.experiment} seed {seed}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    with open(folder / "reproduce.log", "w") as log:
        returncode = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
    wall_s = round(time.perf_counter() - started, 1)
    error = ""
    if returncode != 0:
        lines = [line.strip() for line in (folder / "reproduce.log").read_text(errors="replace").splitlines()]
        errors = [line for line in lines if line.startswith("error:")] or [line for line in lines if line]
        error = f"exit status {returncode}: {errors[-1][:200] if errors else 'no output'}"
    write_json(
        folder / RECORD_FILE,
        {
            "command": command[1:],
            "recipe": recipe_hash(plan.experiment),
            "returncode": returncode,
            "wall_s": wall_s,
            "error": error,
        },
    )
    result = read_result(folder)
    shown = f"test/acc {result['acc']:.2f}%" if result.get("status") == "ok" else result.get("error") or "failed"
    print(f"    {shown}, {wall_s:.0f} s (log: {folder / 'reproduce.log'})", flush=True)
    return result


# -- the page -------------------------------------------------------------------------------------
def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} threads (torch uses {torch.get_num_threads()})"
    if torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name(0)}"
    return text


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{int(value // 60)} min {value % 60:02.0f} s"


def reference_of(experiment: str) -> tuple[float, float] | None:
    """The tutorial's number for a tutorial or better experiment, as the (low, high) range it stands for."""
    text = TUTORIAL_ACC.get(experiment.removesuffix("_better"), "")
    found = re.match(r"\d+(\.\d+)?", text)
    if not found:
        return None
    number = float(found.group())
    return (number - 0.5, number + 0.5) if "whole %" in text else (number, number)  # "97" printed rounded


def verdict(experiment: str, accs: list[float], walls: list[float], means: dict[str, float]) -> str:
    """Reproduced, beaten or goal met, from the seeds' mean (and spread): the column a reader looks for."""
    if not accs:
        return "—"
    mean, spread = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
    if experiment in GOALS:
        _, target, limit = GOALS[experiment]
        if target is None:
            return "—"
        wall = statistics.mean(walls) if walls else None
        misses = [f"{target - mean:.2f} points short"] if mean < target else []
        if limit is not None and (wall is None or wall > limit):
            misses.append(f"{wall - limit:.0f} s over" if wall is not None else "no wall time")
        return "goal met" if not misses else "goal not met: " + ", ".join(misses)
    reference = reference_of(experiment)
    if reference is None:
        return "—"
    low, high = reference
    if experiment.endswith("_better"):
        if mean <= high:
            return f"does not beat the tutorial ({mean - high:+.2f})"
        recipe = means.get(experiment.removesuffix("_better"))
        ours = f"; {mean - recipe:+.2f} over its recipe here" if recipe is not None else ""
        return f"beats the tutorial by {mean - high:+.2f}{ours}"
    if mean >= low:
        return "reproduced: at or above the tutorial"
    if mean + spread >= low:
        return "reproduced: within one std of the tutorial"
    return f"not reproduced: {low - mean:.2f} below the tutorial"


def own_loops() -> dict[str, str]:
    """Experiment -> the test accuracy of its tutorial's own loop run here (the latest full run recorded)."""
    found = {}
    for line in LOOPS_PAGE.read_text().splitlines() if LOOPS_PAGE.is_file() else []:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 8 and "cut short" not in cells[6]:
            found[cells[0].strip("`")] = cells[3]
    return {experiment: found[loop] for experiment, loop in LOOP_OF.items() if loop in found}


def accuracy_text(accs: list[float]) -> str:
    return (
        f"{accs[0]:.2f} (1 seed)" if len(accs) == 1 else f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}"
    )


def finished(plan: Plan, seeds: list[int]) -> list[dict]:
    """The runs of ``seeds`` that ended with a test accuracy."""
    return [plan.runs[s] for s in seeds if plan.runs.get(s, {}).get("status") == "ok"]


def headline(plans: list[Plan], seeds: list[int]) -> list[str]:
    """README's rows: each tutorial network with its recipe and the better one, then the goals."""

    def measured(plan: Plan | None) -> str:
        if plan is None:
            return "—"
        if plan.skip:
            return f"not measured ({plan.skip})"
        done = finished(plan, seeds)
        return accuracy_text([r["acc"] for r in done]) if done else "not run yet"

    by_name = {plan.experiment: plan for plan in plans}
    loops = own_loops()
    lines = [
        "| network | dataset | tutorial (%) | tutorial's own loop here | tutorial's recipe here | better recipe here |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in TUTORIALS:
        plan = by_name.get(name)
        if plan is None or name == "seed001_simple_cnn":  # that tutorial trains nothing
            continue
        lines.append(
            f"| `{plan.network}` | {plan.dataset} | {TUTORIAL_ACC[name]} | {loops.get(name, '—')} | {measured(plan)} | "
            f"{measured(by_name.get(f'{name}_better'))} |"
        )
    lines += ["", "| experiment | goal | here |", "| --- | --- | --- |"]
    for name, (goal, _, _) in GOALS.items():
        plan = by_name.get(name)
        if plan is None:
            continue
        done = finished(plan, seeds)
        walls = [r["wall_s"] for r in done if r.get("wall_s") is not None]
        took = f", {seconds(statistics.mean(walls))} per run" if walls and not plan.skip else ""
        lines.append(f"| `{name}` | {goal} | {measured(plan)}{took} |")
    return lines


def write_readme_rows(readme: Path, plans: list[Plan], seeds: list[int]) -> None:
    """Replace the block between README's results markers with :func:`headline`'s rows."""
    start, end = "<!-- results:start -->", "<!-- results:end -->"
    text = readme.read_text()
    if start not in text or end not in text:
        return
    head, rest = text.split(start, 1)
    block = "\n".join(["", *headline(plans, seeds), ""])
    readme.write_text(head + start + block + "\n" + end + rest.split(end, 1)[1])


def row(plan: Plan, seeds: list[int], plan_only: bool, means: dict[str, float], loops: dict[str, str]) -> list[str]:
    base = plan.experiment.removesuffix("_better")
    reference = TUTORIAL_ACC.get(base, "—")
    default = "beat the tutorial" if plan.experiment.endswith("_better") else "—"
    goal = GOALS[plan.experiment][0] if plan.experiment in GOALS else default
    cells = [f"`{plan.experiment}`", plan.dataset, f"`{plan.network}`", f"{plan.params:,}" if plan.params else "?"]
    cells += [reference, goal]
    done = finished(plan, seeds)
    failed = [plan.runs[s] for s in seeds if plan.runs.get(s, {}).get("status") == "failed"]
    accs = [r["acc"] for r in done]
    acc = accuracy_text(accs) if accs else ("not measured yet" if plan_only else "—")
    epochs = sorted({r["epochs"] for r in done if r.get("epochs") is not None})
    walls = [r["wall_s"] for r in done if r.get("wall_s") is not None]
    if plan_only:
        status = "not run"
    elif plan.skip:
        status = f"skipped: {plan.skip}"
    else:
        parts = [f"{len(done)} of {len(seeds)} seeds ok"] if done or failed else []
        if failed:
            parts.append(f"{len(failed)} failed: {failed[-1].get('error') or 'see reproduce.log'}")
        missing = len(seeds) - len(done) - len(failed)
        if missing:
            parts.append(f"{missing} not run")
        status = "; ".join(parts)
    cells += [acc, "—" if plan_only else str(len(done)), "–".join(map(str, epochs)) or "—"]
    judged = verdict(plan.experiment, accs, walls, means)
    if accs and plan.experiment in loops:
        judged += f"; the tutorial's own loop here: {loops[plan.experiment]}"
    cells += [seconds(statistics.mean(walls)) if walls else "—", judged]
    cells.append(status.replace("|", "\\|"))
    return cells


def write_page(path: Path, plans: list[Plan], seeds: list[int], extra: list[str], plan_only: bool) -> None:
    import torch

    total = sum(0 if p.skip else len(seeds) for p in plans)
    done = sum(seed in plan.runs for plan in plans for seed in seeds)
    lines = [PAGE_INTRO]
    if plan_only:
        lines.append(
            "**Not measured yet.** The table below is the plan (`--plan-only`): the experiments, their "
            "networks and references; the script fills in the numbers.\n"
        )
    else:
        progress = (
            "all runs done"
            if done >= total
            else f"{done} of {total} runs done; the rest not run yet, running or stopped"
        )
        lines.append(
            f"Measured {date.today().isoformat()} ({progress}) on {machine()}; torch {torch.__version__}, "
            f"commit {commit()}; seeds {','.join(map(str, seeds))}"
            + (f"; extra overrides: `{' '.join(extra)}`" if extra else "")
            + ".\n"
        )
    header = ["experiment", "dataset", "network", "params", "tutorial (%)", "goal", "test acc (%)", "seeds"]
    header += ["epochs", "wall per run", "verdict", "status"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + " --- |" * len(header))
    means = {}
    for plan in plans:
        if accs := [r["acc"] for r in finished(plan, seeds)]:
            means[plan.experiment] = statistics.mean(accs)
    loops = own_loops()
    lines += ["| " + " | ".join(row(plan, seeds, plan_only, means, loops)) + " |" for plan in plans]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)  # a reproduction killed mid-write leaves the previous page, never half of one
    if not plan_only and path.resolve() == DEFAULT_OUTPUT.resolve():
        write_readme_rows(ROOT / "README.md", plans, seeds)


# -- command line ---------------------------------------------------------------------------------
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
    parser.add_argument("--mnist-dir", type=Path, default=DEFAULT_MNIST_DIR, help="gzipped MNIST files to use")
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
