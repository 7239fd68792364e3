"""docs/results.md and README's results rows from scripts/lab/reproduce.py's runs: the table, the verdicts
against the tutorials' numbers and the goals, and the tutorials' own loops as the control."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
from datetime import date
from pathlib import Path

from litvision_lab.machine_info import machine
from litvision_lab.paths import ROOT
from litvision_lab.reproduce_runs import Plan

DEFAULT_OUTPUT = ROOT / "docs" / "results.md"
LOOPS_PAGE = ROOT / "docs" / "tutorial_loops.md"  # scripts/lab/tutorial_loops.py's records: the tutorials' own loops
LOOP_OF = {"seed000_fashion_cnn": "seed000", "seed002_lenet": "seed002_lenet", "seed004_mlp": "seed004_mlp"}

TUTORIALS = [
    "seed000_fashion_cnn",
    "seed001_simple_cnn",
    "seed002_lenet",
    "seed002_residual_cnn",
    "seed003_keras_cnn",
    "seed004_mlp",
]

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
    "fashion_mnist_best": (">= 95.0% in <= 30 min on a 2-core CPU", 95.0, 1800.0),
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
python scripts/lab/reproduce.py --set all        # or --set tutorials|better|best, --experiments a,b --seeds 0,1,2
```

which runs every experiment once per seed (`python scripts/train.py experiment=<e> seed=<s>`, run folders
under `logs/reproduce/<e>/seed<s>/`) and rewrites this page after each run (and the headline rows in the
README), every experiment on it: those a call does not run come from their finished runs, as with
`--table-only`, which runs nothing, and an experiment with no finished runs on this machine keeps its row
from the page before (the line above the table says which rows and where they were measured). Do not edit
it by hand.

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
  PyTorch, run here on the same files by `scripts/lab/tutorial_loops.py`, tells whether the template or the
  tutorial's number is off: [tutorial_loops.md](tutorial_loops.md).
- A run that needs what the machine lacks (CIFAR-10 files, a GPU, MNIST) is listed as skipped, with why.
- **Wall times depend on the CPU** (the line below names its vector instructions): the speedrun and best
  recipes train with `trainer.precision=auto`, `bf16-mixed` on CPUs with bfloat16 instructions
  (AVX512-BF16 or AMX) or on a GPU, float32 elsewhere, where a run takes longer.
"""


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    # What this script writes itself (the page, README's rows) does not count as a change to the code.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!README.md", ":!docs/results.md")
    return head + (" + uncommitted changes" if changed else "")


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
        if plan.kept:
            return plan.kept["test acc (%)"]
        if plan.skip:
            return f"not measured ({plan.skip})"
        done = finished(plan, seeds)
        return accuracy_text([r["acc"] for r in done]) if done else "not run yet"

    by_name = {plan.experiment: plan for plan in plans}
    loops = own_loops()
    lines = [
        "| network | dataset | tutorial (%) | own loop here | tutorial's recipe here | better recipe here |",
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
        if plan.kept and plan.kept["wall per run"] != "—":
            took = f", {plan.kept['wall per run']} per run"
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


KEPT_WORDS = " Rows kept from earlier pages: "


def keep_earlier_rows(lines: list[str], plans: list[Plan], seeds: list[int]) -> list[str]:
    """Give each plan with no finished run of ``seeds`` here (and not skipped here) its row from the page as it
    was (its ``lines``), so a machine without the earlier runs' folders does not blank them; returns the
    "Measured ..." lines those rows came from."""
    header = next((line for line in lines if line.startswith("| experiment | dataset |")), None)
    if header is None:
        return []
    columns = [cell.strip() for cell in header.strip().strip("|").split("|")]
    rows = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == len(columns):
            rows[cells[0].strip("`")] = {**dict(zip(columns, cells)), "_line": line}
    for plan in plans:  # a plan kept by an earlier call that has finished a run since shows its own runs
        plan.kept = {}
    kept = [plan for plan in plans if not plan.skip and not finished(plan, seeds) and plan.experiment in rows]
    for plan in kept:
        plan.kept = rows[plan.experiment]
    # Where the kept rows were measured: the page's own runs, or for a row that page kept too, its sources.
    measured = next((line for line in lines if line.startswith("Measured ")), "")
    core, _, earlier = measured.partition(KEPT_WORDS)
    earlier, _, names = earlier.rpartition(" (not run here: ")
    kept_there = set(re.findall(r"`([^`]+)`", names))
    sources = []
    for plan in kept:
        sources.append(earlier if plan.experiment in kept_there else core)
    return list(dict.fromkeys(sources))


def kept_sections(text: str) -> list[str]:
    """The sections other lab scripts write into the page (``<!-- name:start -->`` to ``<!-- name:end -->``,
    e.g. transfer.py's): a rewrite of the table keeps them at the end."""
    return [f"\n{m.group(0)}\n" for m in re.finditer(r"<!-- (\w+):start -->.*?<!-- \1:end -->", text, flags=re.S)]


def write_page(path: Path, plans: list[Plan], seeds: list[int], extra: list[str], plan_only: bool) -> None:
    import torch

    before = path.read_text(encoding="utf-8") if path.exists() else ""
    sources = [] if plan_only else keep_earlier_rows(before.splitlines(), plans, seeds)
    earlier_line = next((line for line in before.splitlines() if line.startswith("Measured ")), "")
    total = sum(0 if p.skip or p.kept else len(seeds) for p in plans)
    done = sum(seed in plan.runs for plan in plans for seed in seeds)
    lines = [PAGE_INTRO]
    if plan_only:
        lines.append(
            "**Not measured yet.** The table below is the plan (`--plan-only`): the experiments, their "
            "networks and references; the script fills in the numbers.\n"
        )
    elif done == 0 and sources:  # nothing ran here: the page as it was measured
        lines.append(earlier_line + "\n")
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
            + "."
            + (
                f"{KEPT_WORDS}{' '.join(sources)} (not run here: "
                + ", ".join(f"`{p.experiment}`" for p in plans if p.kept)
                + ")"
                if sources
                else ""
            )
            + "\n"
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
    lines += [
        plan.kept["_line"] if plan.kept else "| " + " | ".join(row(plan, seeds, plan_only, means, loops)) + " |"
        for plan in plans
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text("\n".join(lines) + "\n" + "".join(kept_sections(before)))
    os.replace(partial, path)  # a reproduction killed mid-write leaves the previous page, never half of one
    if not plan_only and path.resolve() == DEFAULT_OUTPUT.resolve():
        write_readme_rows(ROOT / "README.md", plans, seeds)
