"""Shared fixtures: tiny datasets in real formats, composed configs, and script runs as subprocesses."""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from datafiles import write_all, write_image_folder

ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist (-n auto) each worker takes its share of the cores: torch's threads of two workers
# spinning on the same cores make both many times slower. OMP_NUM_THREADS carries it to subprocesses.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = max(1, (os.cpu_count() or 1) // _WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
    torch.set_num_threads(_THREADS)
CONF_DIR = ROOT / "conf"
# CI clones the repository with shared/ beside it; LITVISION_MNIST17K points elsewhere.
MNIST_17K = Path(os.environ.get("LITVISION_MNIST17K", ROOT.parent / "shared" / "data" / "mnist-17k"))
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# Quiet, fast settings for runs inside tests: no progress bar, no model summary table, no report.html
# (tests/test_report.py checks the report; drawing it in every other run would cost the suite seconds).
QUIET = [
    "callbacks.progress_bar=null",
    "callbacks.rich_model_summary=null",
    "trainer.enable_progress_bar=false",
    *(["callbacks.report=null"] if (CONF_DIR / "callbacks" / "report.yaml").exists() else []),  # a fork may drop it
]


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """MNIST, Fashion-MNIST and CIFAR-10 in torchvision's layout, a few hundred images each."""
    return write_all(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """A data=folder dataset of 10 classes, for the tests that compose every data config."""
    return write_image_folder(tmp_path_factory.mktemp("image-folder"))


def data_overrides(dataset: str, image_folder: Path) -> list[str]:
    """What ``data=<dataset>`` needs to compose with its sizes: data=folder reads them from a folder,
    data=streaming from the litvision.json of a converted dataset (here only that file, beside the folder)."""
    if dataset == "streaming":
        converted = image_folder.with_name(f"{image_folder.name}-streaming")
        converted.mkdir(exist_ok=True)
        facts = {"num_classes": 10, "class_names": [str(i) for i in range(10)], "in_channels": 1, "image_size": 28}
        (converted / "litvision.json").write_text(json.dumps({**facts, "mean": [0.5], "std": [0.5]}))
        return [f"data.data_dir={converted}"]
    return [f"data.data_dir={image_folder}"] if dataset == "folder" else []


def tiny_mlp_args(data_dir: Path, root: Path, *extra: str) -> list[str]:
    """Script arguments for a quick MLP run on the tiny MNIST files (:func:`tiny_data_dir`), writing under ``root``."""
    return [
        f"paths.root_dir={root}",
        f"data.data_dir={data_dir}",
        "data=mnist",
        "data.val_size=100",
        "model=mlp",
        *QUIET,
        *extra,
    ]


def compose_train(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose an entry config the way @hydra.main does, with this test's folder as the run dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        # ~local: a developer's own conf/local/default.yaml must not change what the tests check.
        cfg = compose(config_name, overrides=["~local", *overrides], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
        del cfg.hydra
    return cfg


def run_script(
    script: str, *args: str, cwd: Path = ROOT, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run scripts/<script> in a fresh interpreter, exactly as a user would from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


# Where a run writes is named by one of these; a test that names none gets a temporary run dir, so that no
# test writes into the checkout's logs/.
_OUTPUT_KEYS = ("hydra.run.dir=", "hydra.sweep.dir=", "paths.root_dir=", "paths.log_dir=", "paths.output_dir=")


def _outside_the_checkout(script: str, args: tuple[str, ...]) -> list[str]:
    hydra_script = "@hydra.main" in (ROOT / "scripts" / script).read_text()  # not summarize.py, report.py, plot.py
    if not hydra_script or any(arg.startswith(_OUTPUT_KEYS) for arg in args) or {"-m", "--multirun"} & set(args):
        return []
    return [f"hydra.run.dir={tempfile.mkdtemp(prefix='litvision-run-')}"]


def run_main(script: str, *args: str, check: bool = True, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run scripts/<script> in this process, as ``python scripts/<script> args...`` would, capturing its output.

    Much cheaper than :func:`run_script` (no new interpreter importing torch and Lightning). Keep
    subprocesses for what only a real process shows: signals, DDP workers, a kill, imports.
    """
    GlobalHydra.instance().clear()
    argv, sys.argv = sys.argv, [str(ROOT / "scripts" / script), *args, *_outside_the_checkout(script, args)]
    out, err = io.StringIO(), io.StringIO()
    status, previous_cwd = 0, Path.cwd()
    try:
        os.chdir(cwd or previous_cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        sys.argv = argv
        os.chdir(previous_cwd)
        GlobalHydra.instance().clear()
    result = subprocess.CompletedProcess([script, *args], status, out.getvalue(), err.getvalue())
    if check and status != 0:
        raise AssertionError(
            f"{script} {' '.join(args)} failed ({status}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def require_real_data(path: Path, how: str) -> None:
    """Real-data tests run in CI always: missing data fails there, and is skipped only on a dev machine."""
    if path.exists():
        return
    message = f"{path} is missing ({how})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first: with ``--dist worksteal`` (addopts) the long ones start early on every worker, and
    the fast ones fill the gaps, so that no worker is left alone with a long test at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
