"""Where a run came from: ``<run dir>/provenance.json`` (and ``code.patch`` when the checkout had changes).

The record names the git commit of the code that ran and whether its tracked files differed from it
(the difference saved as a patch beside the run, so ``git apply`` rebuilds the exact code), the command
line, Python's and the key packages' versions, the CPU and GPU, the start and end times and the seed.
Git is asked three cheap questions with a timeout; a missing git, a checkout without commits, or code
installed outside a checkout make the record say so, never fail the run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from litvision.support import atomic
from litvision.support.atomic import write_json
from litvision.support.precision import CPUINFO
from litvision.support.records import read_json

PROVENANCE_FILE = "provenance.json"
PATCH_FILE = "code.patch"
CONFIG_FILE = "resolved_config.yaml"
# The code whose commit is recorded: the checkout this package is imported from (tests point it elsewhere).
CODE_DIR = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 10
PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "torchmetrics", "numpy")
# Optional extras, recorded when the run imported them: {distribution: module}.
EXTRAS = {
    "timm": "timm",
    "mlflow": "mlflow",
    "wandb": "wandb",
    "litdata": "litdata",
    "optuna": "optuna",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "tensorboard": "tensorboard",
}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start(run_dir: str | Path, cfg: DictConfig) -> dict[str, Any]:
    """Write ``provenance.json`` (and the patch, and ``resolved_config.yaml``) at the start of a run."""
    run_dir = Path(run_dir)
    record = {
        "started": now(),
        "ended": None,
        "seed": cfg.get("seed"),
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),
        "overrides": _overrides(),
        "cwd": os.getcwd(),
        "git": git_state(CODE_DIR, run_dir / PATCH_FILE),
        "python": platform.python_version(),
        "packages": versions(PACKAGES),
        "machine": machine(),
    }
    write_json(run_dir / PROVENANCE_FILE, record)
    _save_config(cfg, run_dir / CONFIG_FILE)
    return record


def _overrides() -> list[str]:
    """The job's own command-line overrides (a sweep's job gets its share of the sweep's)."""
    try:
        return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - composed without @hydra.main: no Hydra runtime to ask
        return []


def _save_config(cfg: DictConfig, path: Path) -> None:
    """The config with every interpolation resolved (Hydra's .hydra/config.yaml keeps them unresolved)."""
    try:
        text = OmegaConf.to_yaml(cfg, resolve=True)
    except Exception:  # noqa: BLE001 - a resolver that needs what is gone (hydra:...): keep the raw form
        text = OmegaConf.to_yaml(cfg)
    atomic.write_text(path, text)


def finish(run_dir: str | Path) -> dict[str, Any]:
    """Add the end time and the extras the run imported to ``provenance.json``; return the record."""
    path = Path(run_dir) / PROVENANCE_FILE
    record = read_json(path)
    if not record:
        return record
    record["ended"] = now()
    used = [name for name, module in EXTRAS.items() if module in sys.modules]
    record["packages"] = {**record.get("packages", {}), **versions(used)}
    write_json(path, record)
    return record


def versions(names) -> dict[str, str]:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def machine() -> dict[str, Any]:
    """The CPU's name and cores, and each visible GPU's name (without initializing CUDA where torch is absent)."""
    info: dict[str, Any] = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    else:
        info["gpus"] = []
    return info


def cpu_name() -> str:
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def git_state(code_dir: Path, patch_path: Path) -> dict[str, Any]:
    """{"commit", "dirty", "patch"} of the checkout holding ``code_dir``; {"error": why} when there is none.

    ``dirty`` means tracked files differ from the commit; their diff goes to ``patch_path``. Untracked
    files are counted, not copied (they may be data or logs).
    """
    top = _git(code_dir, "rev-parse", "--show-toplevel")
    if isinstance(top, Exception):
        return {"error": f"not a git checkout ({_reason(top)}): {code_dir}"}
    top_dir = Path(top.strip())
    commit = _git(top_dir, "rev-parse", "HEAD")
    if isinstance(commit, Exception):
        return {"error": f"no commit to name ({_reason(commit)})", "root": str(top_dir)}
    state: dict[str, Any] = {"commit": commit.strip(), "root": str(top_dir)}
    branch = _git(top_dir, "rev-parse", "--abbrev-ref", "HEAD")
    if not isinstance(branch, Exception):
        state["branch"] = branch.strip()
    status = _git(top_dir, "status", "--porcelain", "--untracked-files=normal")
    if isinstance(status, Exception):
        state["error"] = f"git status failed ({_reason(status)})"
        return state
    lines = status.splitlines()
    state["untracked_files"] = sum(line.startswith("??") for line in lines)
    state["dirty"] = any(not line.startswith("??") for line in lines)
    if state["dirty"]:
        diff = _git(top_dir, "diff", "--binary", "HEAD")
        if isinstance(diff, Exception):
            state["error"] = f"git diff failed ({_reason(diff)})"
        else:
            try:
                atomic.write_text(patch_path, diff)
                state["patch"] = patch_path.name
            except OSError as err:
                state["error"] = f"could not write {patch_path}: {err.strerror or err}"
    return state


def _git(cwd: Path, *args: str) -> str | Exception:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError) as err:
        return err
    return done.stdout


def _reason(error: Exception) -> str:
    if isinstance(error, subprocess.CalledProcessError):
        return (error.stderr or "").strip().splitlines()[0] if (error.stderr or "").strip() else "git failed"
    if isinstance(error, FileNotFoundError):
        return "git is not installed"
    if isinstance(error, subprocess.TimeoutExpired):
        return f"git took over {GIT_TIMEOUT_S} s"
    return type(error).__name__


def as_text(record: Mapping[str, Any]) -> str:
    """The record as a markdown list (TensorBoard's text tab renders markdown)."""
    git = record.get("git", {})
    code = (
        git["error"]
        if "commit" not in git
        else f"{git['commit']}{' (dirty: ' + git.get('patch', 'no patch') + ')' if git.get('dirty') else ' (clean)'}"
    )
    machine_info = record.get("machine", {})
    lines = [
        f"- **commit**: {code}",
        f"- **command**: `{record.get('command', '')}`",
        f"- **started / ended**: {record.get('started')} / {record.get('ended') or 'running'}",
        f"- **seed**: {record.get('seed')}",
        f"- **python**: {record.get('python')}",
        "- **packages**: " + ", ".join(f"{k} {v}" for k, v in record.get("packages", {}).items()),
        f"- **cpu**: {machine_info.get('cpu')} ({machine_info.get('cpu_count')} cores)",
        f"- **gpu**: {', '.join(machine_info.get('gpus') or []) or 'none'}",
    ]
    return "\n".join(lines)
