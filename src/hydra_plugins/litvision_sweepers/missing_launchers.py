"""Stand-ins for the launchers of the ``litvision[launchers]`` extra, registered only while it is missing.

conf/hydra/launcher/parallel.yaml and slurm.yaml extend the ``joblib`` and ``submitit_slurm`` configs that
hydra-joblib-launcher and hydra-submitit-launcher register. Without those packages Hydra would stop any
composition that picks them with "Could not load 'hydra/launcher/joblib'" and its config search path.
Here the same names are registered with :class:`MissingLauncher` as their target instead: the config
composes (a single run never creates the launcher, so a conf/local/default.yaml that picks one still
works), and a multirun stops when its sweeper creates the launcher, with one line that names the extra
and exit status 2.
"""

# No "from __future__ import annotations": Hydra execs plugin modules before registering them in
# sys.modules (see grid_sweeper.py).
import importlib.util
import sys
from collections.abc import Sequence
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

EXTRA = "launchers"  # pip install 'litvision[launchers]'
# import name of each plugin package -> (its name on PyPI, the hydra/launcher configs it registers)
PACKAGES = {
    "hydra_plugins.hydra_joblib_launcher": ("hydra-joblib-launcher", ["joblib"]),
    "hydra_plugins.hydra_submitit_launcher": ("hydra-submitit-launcher", ["submitit_local", "submitit_slurm"]),
}


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[module] is None (how the tests hide a package)
        return False


class MissingLauncher(Launcher):
    """The launcher config of a plugin package that is not installed: stops the multirun in one line."""

    def __init__(self, missing_package: str, config_name: str, **_: Any) -> None:
        self.missing_package, self.config_name = missing_package, config_name

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # Hydra calls this right after creating the launcher, before any job. The choice names the option
        # the user picked (parallel), not the missing config it extends (joblib).
        self._refuse(OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher"))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        self._refuse(None)  # setup has already stopped the run; Launcher requires the method

    def _refuse(self, choice: str | None) -> None:
        print(
            f"error: hydra/launcher={choice or self.config_name} needs {self.missing_package}: "
            f"pip install 'litvision[{EXTRA}]'",
            file=sys.stderr,
        )
        sys.exit(2)


for _module, (_package, _names) in PACKAGES.items():
    if not installed(_module):
        for _name in _names:
            # A plain dict, not a dataclass: parallel.yaml and slurm.yaml add the real launcher's keys to it.
            ConfigStore.instance().store(
                group="hydra/launcher",
                name=_name,
                provider="litvision",
                node={
                    "_target_": "hydra_plugins.litvision_sweepers.missing_launchers.MissingLauncher",
                    "missing_package": _package,
                    "config_name": _name,
                },
            )
