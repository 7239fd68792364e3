"""Hydra's grid sweeper, made to finish the grid: a failed job is recorded and the others still run.

Hydra's BasicSweeper launches a batch, then reads each job's result, which re-raises the first failed
job's exception: later batches never start, and the sweep ends in a traceback even for a bad value.
Here every batch runs, each job's outcome is kept (``status.json`` in its dir, written by the
JobStatusFile callback, wherever the job ran) and the sweep ends with one line per failed run and
exit status 1.
"""

# No "from __future__ import annotations": Hydra execs plugin modules before registering them in
# sys.modules, and dataclasses cannot resolve string annotations then.
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Private module: Hydra exports no grid sweeper to extend, and this one keeps BasicSweeper's batching and overrides.
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from litvision.support import atomic
from litvision.support.errors import SweepFailed
from litvision.support.records import OK
from litvision.sweeps.outcome import job_outcome, report

log = logging.getLogger(__name__)


@dataclass
class GridSweeperConf:
    _target_: str = "hydra_plugins.litvision_sweepers.grid_sweeper.GridSweeper"
    max_batch_size: int | None = None  # jobs handed to the launcher at once (null: all)
    params: dict[str, str] | None = None  # sweeps kept in config, e.g. {seed: "1,2,3"}


ConfigStore.instance().store(group="hydra/sweeper", name="litvision_grid", node=GridSweeperConf, provider="litvision")


class GridSweeper(BasicSweeper):
    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))

        returns, outcomes, first_job = [], [], 0
        while not self.is_done():
            batch = self.get_job_batch()
            started = time.perf_counter()
            self.validate_batch_is_legal(batch)  # composition errors stop the sweep before any job runs
            log.debug("validated %d jobs in %.2f s", len(batch), time.perf_counter() - started)
            results = self.launcher.launch(batch, initial_job_idx=first_job)
            outcomes += [job_outcome(job, first_job + i) for i, job in enumerate(results)]
            first_job += len(batch)
            returns.append(results)

        summary = report(outcomes, str(sweep_dir))
        if any(outcome.status != OK for outcome in outcomes):
            raise SweepFailed(summary)
        log.info(summary.splitlines()[0])
        return returns
