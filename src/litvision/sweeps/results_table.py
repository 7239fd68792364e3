"""Tables of a sweep's runs: what ``scripts/summarize.py`` prints (markdown) and saves (CSV).

A run is a folder holding ``.hydra/overrides.yaml`` (written by Hydra for every job); its numbers come
from ``metrics.json`` (written by litvision.tasks.train, or by the pruning callback) and its outcome from
``status.json`` (written by the JobStatusFile Hydra callback). Only stdlib and PyYAML: no torch.
"""

from __future__ import annotations

import csv
import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from litvision.support.atomic import atomic_open
from litvision.support.errors import printable
from litvision.support.records import (
    INCOMPLETE,
    METRICS_FILE,
    OK,
    PRUNING_OVERRIDE,
    STATUS_FILE,
    UnreadableFile,
    is_number,
    load_json_object,
    read_run_file,
)

SEED_KEY = "seed"
FOLD_KEY = "data.fold"
REPEAT_KEYS = (SEED_KEY, FOLD_KEY)  # runs differing only in these are repeats of one configuration
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
UNREADABLE = "unreadable"  # a run whose files cannot be read or are not litvision's


@dataclass
class Run:
    name: str
    settings: dict[str, str]  # override key -> value, as typed on the command line
    status: str
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int | None = None
    wall_s: float | None = None
    error: str = ""


def read_runs(sweep_dir: Path) -> list[Run]:
    """The runs of ``sweep_dir`` (its job folders, or the folder itself for a single run), by job number.

    A run whose files cannot be read or are not what litvision writes is kept, with status ``unreadable``
    and the file's path and what is wrong with it as its error; the others are read as usual.
    """
    candidates = [sweep_dir, *(path for path in sweep_dir.iterdir() if _exists(path, Path.is_dir))]
    # A job killed early may lack its saved overrides but still have a status (written on resume).
    markers = (OVERRIDES_FILE, Path(STATUS_FILE), Path(METRICS_FILE))
    folders = [folder for folder in candidates if any(_exists(folder / marker, Path.is_file) for marker in markers)]
    folders.sort(key=lambda p: (_job_number(p.name) is None, _job_number(p.name) or 0, p.name))
    return [read_run(folder, sweep_dir) for folder in folders]


def read_run(folder: Path, sweep_dir: Path) -> Run:
    name = str(folder.relative_to(sweep_dir)) if folder != sweep_dir else folder.name
    try:
        overrides = _overrides(folder / OVERRIDES_FILE)
        record = load_json_object(folder / METRICS_FILE) or {}
        status = load_json_object(folder / STATUS_FILE) or {}
        metrics, epochs = _record(folder / METRICS_FILE, record)
        state, wall_s, error = _status(folder / STATUS_FILE, status)
    except UnreadableFile as err:
        return Run(name=name, settings={}, status=UNREADABLE, error=str(err))
    settings = dict(_split(o) for o in overrides if not o.startswith(PRUNING_OVERRIDE))
    state = state or (OK if record else INCOMPLETE)  # no status file: written before callbacks
    return Run(name=name, settings=settings, status=state, metrics=metrics, epochs=epochs, wall_s=wall_s, error=error)


def _overrides(path: Path) -> list[str]:
    """Hydra's saved overrides of a job, read as plain YAML (nothing resolved, no tags): a list of strings."""
    text = read_run_file(path)
    if text is None:
        return []
    try:
        loaded = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        raise UnreadableFile(f"{path}: not valid YAML") from None
    loaded = [] if loaded is None else loaded
    if not isinstance(loaded, list) or not all(isinstance(item, str) for item in loaded):
        raise UnreadableFile(f"{path}: not a list of overrides (key=value strings)")
    return loaded


def _record(path: Path, record: dict) -> tuple[dict[str, float], int | None]:
    metrics, epochs = record.get("metrics", {}), record.get("epochs")
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and is_number(v) for k, v in metrics.items()):
        raise UnreadableFile(f"{path}: 'metrics' is not a mapping of names to numbers")
    if epochs is not None and not (is_number(epochs) and epochs == int(epochs) and epochs >= 0):
        raise UnreadableFile(f"{path}: 'epochs' is not a whole number")
    return metrics, None if epochs is None else int(epochs)


def _status(path: Path, status: dict) -> tuple[str | None, float | None, str]:
    state, wall_s, error = status.get("status"), status.get("wall_s"), status.get("error", "")
    if state is not None and not isinstance(state, str):
        raise UnreadableFile(f"{path}: 'status' is not a string")
    if wall_s is not None and not (is_number(wall_s) and math.isfinite(wall_s)):
        raise UnreadableFile(f"{path}: 'wall_s' is not a number of seconds")
    if not isinstance(error, str):
        raise UnreadableFile(f"{path}: 'error' is not a string")
    return state or None, wall_s, error


def _exists(path: Path, kind) -> bool:
    """``path.is_dir()``/``is_file()``; a path that cannot even be looked at counts as there (and unreadable)."""
    try:
        return kind(path)
    except OSError:
        return True


def _job_number(name: str) -> int | None:
    return int(name) if re.fullmatch(r"[0-9]+", name) else None


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def varying_keys(runs: list[Run]) -> list[str]:
    """Override keys whose value is not the same in every run, in first-seen order."""
    keys = list(dict.fromkeys(key for run in runs for key in run.settings))
    return [key for key in keys if len({run.settings.get(key) for run in runs}) > 1]


def shared_settings(runs: list[Run]) -> list[str]:
    varying = set(varying_keys(runs))
    return [f"{key}={value}" for key, value in runs[0].settings.items() if key not in varying] if runs else []


def sort_runs(runs: list[Run], metric: str, ascending: bool) -> list[Run]:
    """Best first by ``metric``; runs without it (failed, incomplete) last, in job order."""
    scored = [run for run in runs if _finite(run.metrics.get(metric))]
    unscored = [run for run in runs if run not in scored]
    scored.sort(key=lambda run: run.metrics[metric], reverse=not ascending)
    return scored + unscored


def seed_groups(runs: list[Run], metrics: Iterable[str]) -> list[dict]:
    """Mean and std of ``metrics`` over the ok runs that differ only in their seed and/or k-fold fold
    (``data.fold``): groups of 2 or more. ``seeds`` lists each member's seed, fold or both."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        if run.status == OK and any(key in run.settings for key in REPEAT_KEYS):
            config = tuple((k, v) for k, v in run.settings.items() if k not in REPEAT_KEYS)
            groups.setdefault(config, []).append(run)
    varying = [key for key in REPEAT_KEYS if key in varying_keys(runs)] or [SEED_KEY]
    rows = []
    for config, members in groups.items():
        if len(members) < 2:
            continue
        row = {"settings": dict(config), "seeds": [_repeat_label(m, varying) for m in members]}
        for metric in metrics:
            values = [m.metrics[metric] for m in members if _finite(m.metrics.get(metric))]
            row[metric] = (statistics.mean(values), statistics.stdev(values)) if len(values) > 1 else None
        rows.append(row)
    return rows


def markdown(runs: list[Run], metrics: list[str], sort_metric: str, ascending: bool) -> str:
    keys = varying_keys(runs)
    header = ["run", *keys, *metrics, "epochs", "wall", "status"]
    lines = [f"{len(runs)} runs, best {sort_metric} first"]
    shared = shared_settings(runs)
    if shared:
        lines.append("shared overrides: " + " ".join(f"`{s}`" for s in shared))
    lines += ["", _row(header), _row(["---"] * len(header))]
    for run in sort_runs(runs, sort_metric, ascending):
        status = run.status if not run.error or run.status == OK else f"{run.status}: {run.error}"
        cells = [
            run.name,
            *(run.settings.get(k, "") for k in keys),
            *(_number(run.metrics.get(m)) for m in metrics),
            "" if run.epochs is None else str(run.epochs),
            _seconds(run.wall_s),
            status.replace("|", "/"),
        ]
        lines.append(_row(cells))
    groups = seed_groups(runs, metrics)
    if groups:
        over = _repeats_over(runs)
        lines += ["", f"Mean ± std over {over}:", ""]
        group_keys = [k for k in keys if k not in REPEAT_KEYS]
        lines += [_row([*group_keys, over, *metrics]), _row(["---"] * (len(group_keys) + 1 + len(metrics)))]
        for group in groups:
            stats = [f"{g[0]:.4f} ± {g[1]:.4f}" if g else "" for g in (group[m] for m in metrics)]
            lines.append(_row([*(group["settings"].get(k, "") for k in group_keys), ",".join(group["seeds"]), *stats]))
    return "\n".join(lines)


def write_csv(path: Path, runs: list[Run], metrics: list[str], sort_metric: str, ascending: bool) -> None:
    """One row per run, full precision; a spreadsheet or pandas takes it from here."""
    keys = varying_keys(runs)
    with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", *keys, *metrics, "epochs", "wall_s", "status", "error", "overrides"])
        for run in sort_runs(runs, sort_metric, ascending):
            overrides = " ".join(f"{k}={v}" for k, v in run.settings.items())
            writer.writerow(
                [
                    run.name,
                    *(run.settings.get(k, "") for k in keys),
                    *(run.metrics.get(m, "") for m in metrics),
                    run.epochs if run.epochs is not None else "",
                    run.wall_s if run.wall_s is not None else "",
                    run.status,
                    run.error,
                    overrides,
                ]
            )


def _repeat_label(run: Run, varying: list[str]) -> str:
    """The member's seed or fold; ``<seed>/fold <i>`` where the sweep varies both."""
    values = [run.settings.get(key, "") for key in varying]
    return f"{values[0]}/fold {values[1]}" if len(values) == 2 else values[0]


def _repeats_over(runs: list[Run]) -> str:
    varying = set(varying_keys(runs))
    if FOLD_KEY in varying:
        return "seeds and folds" if SEED_KEY in varying else "folds"
    return "seeds"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _cell(text: str) -> str:
    return printable(text).replace("|", "\\|")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _number(value) -> str:
    return f"{value:.4f}" if _finite(value) else ""


def _seconds(value) -> str:
    return "" if value is None else f"{value:.1f} s"
