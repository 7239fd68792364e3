"""The lab's scripts run in this process, as ``python scripts/lab/<script>`` would run them."""

from __future__ import annotations

import contextlib
import io
import runpy
import subprocess
import sys
from unittest import mock

from hydra.core.global_hydra import GlobalHydra

from litvision_lab.paths import LAB

# No progress bar and no model summary table in the runs of the tests.
QUIET = ["callbacks.progress_bar=null", "callbacks.rich_model_summary=null", "trainer.enable_progress_bar=false"]


def run_lab(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python scripts/lab/<script> args...`` without a new interpreter (which would import torch afresh)."""
    path, out, err = str(LAB / script), io.StringIO(), io.StringIO()
    GlobalHydra.instance().clear()
    with (
        mock.patch.object(sys, "argv", [path, *args]),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            runpy.run_path(path, run_name="__main__")
            status = 0
        except SystemExit as stop:
            status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
        finally:
            GlobalHydra.instance().clear()
    done = subprocess.CompletedProcess([script, *args], status, out.getvalue(), err.getvalue())
    if check and status:
        raise AssertionError(f"{script} {' '.join(args)}: exit {status}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done
