"""scripts/lab/reproduce.py's runs: what each experiment needs and whether this machine has it, its runs (one
process per seed), and which finished runs can be reused."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from litvision.support.atomic import write_json
from litvision.support.records import METRICS_FILE, read_json
from litvision_lab.paths import CONF_DIR, ROOT

RECORD_FILE = "reproduce.json"  # per run dir: the command, its exit status and wall time


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
    kept: dict[str, str] = field(default_factory=dict)  # no runs here: the page's earlier row, cell by column


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
    from litvision_lab.synthetic import DATASETS

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

    from litvision_lab.synthetic import DATASETS, OFFICIAL_SIZES, dataset_name, is_synthetic

    plan = Plan(experiment)
    try:
        cfg = compose(experiment, extra)
        dataset = dataset_name(get_class(cfg.data._target_).dataset_files)
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
    """A digest of what conf/experiment/<experiment>.yaml sets: a run of an edited recipe is not reused.

    The parsed settings, not the file's bytes, so that a comment (or layout) edit keeps the runs.
    """
    settings = yaml.safe_load((CONF_DIR / "experiment" / f"{experiment}.yaml").read_text())
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


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
