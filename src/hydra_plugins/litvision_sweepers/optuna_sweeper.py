"""A Hydra sweeper driving current Optuna (>= 4) with ask-and-tell: ``hydra/sweeper=litvision_optuna``.

hydra-optuna-sweeper pins optuna < 3, hence this one. Each batch of ``n_jobs`` trials is asked from
the study, launched through the configured launcher (in process, joblib, SLURM) with the trials'
overrides, and told back: COMPLETE with the job's return value (``cfg.optimized_metric`` in
litvision), PRUNED when the job's OptunaPruning callback stopped it, FAIL when it raised; the study
goes on either way. With a storage (a file path means SQLite) the same command resumes: finished
trials count toward ``n_trials``, and trials an interrupted search left RUNNING are marked failed.
Several searches (workers) can run on one study at once, here or on other machines sharing a
database: ``n_trials`` is the study's, each trial runs once, and a worker fails only its own trials or
those of a worker that is gone (:mod:`litvision.sweeps.workers`). Workers started at the same moment
with the same sampler seed draw the same first values: give each its own seed, or none.
"""

# No "from __future__ import annotations": Hydra execs plugin modules before registering them in
# sys.modules, and dataclasses cannot resolve string annotations then.
import logging
import math
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from litvision.support import atomic
from litvision.support.errors import SweepFailed, first_line
from litvision.support.records import FAILED, OK, PRUNED, PRUNING_OVERRIDE, write_status
from litvision.sweeps.outcome import job_outcome, report
from litvision.sweeps.search_space import SearchSpaceError, parse_search_space, value_string
from litvision.sweeps.workers import (
    SURPLUS_ATTR,
    WORKER_ATTR,
    budget_trials,
    open_storage,
    parse_reclaim,
    stale_trials,
    storage_lock,
    storage_url,
    this_worker,
    within_budget,
)

log = logging.getLogger(__name__)


class Direction(Enum):
    maximize = "maximize"
    minimize = "minimize"


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.litvision_sweepers.optuna_sweeper.OptunaSweeper"
    _recursive_: bool = False  # sampler and pruner stay configs: the sampler is re-seeded on resume
    direction: Direction = Direction.maximize  # or minimize: what to do with the value each job returns
    study_name: str = "search"
    storage: str | None = None  # a file path (SQLite) or a database URL; null: in memory, no resume
    n_trials: int = 20  # trials in the study, counting those finished before a resume
    n_jobs: int = 1  # trials launched together (in parallel with a parallel launcher)
    sampler: Any = field(default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    pruner: Any = None  # e.g. {_target_: optuna.pruners.MedianPruner}; null: no pruning
    prune_on: str = "val/acc"  # the per-epoch metric the pruner sees
    params: dict[str, Any] | None = None  # override key -> sweep, e.g. tag(log, interval(1e-4, 1e-2))
    # RUNNING trials to mark failed although no worker on this host is seen to be gone (a worker on another
    # machine that died): a list of trial numbers, or all. A trial whose worker runs here is never taken.
    reclaim: Any = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="litvision_optuna", node=OptunaSweeperConf, provider="litvision"
)


def _require_optuna() -> None:
    """Optuna is the ``litvision[optuna]`` extra: without it, stop with one line instead of a traceback."""
    try:
        import optuna  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != "optuna":
            raise  # optuna is there but one of its own imports is not: that traceback is the useful one
        print(
            "error: hparams_search (hydra/sweeper=litvision_optuna) needs Optuna: pip install 'litvision[optuna]'",
            file=sys.stderr,
        )
        sys.exit(2)


class OptunaSweeper(Sweeper):
    def __init__(
        self,
        direction: Any,
        study_name: str,
        storage: str | None,
        n_trials: int,
        n_jobs: int,
        sampler: Any,
        pruner: Any,
        prune_on: str,
        params: DictConfig | None,
        reclaim: Any = None,
    ) -> None:
        _require_optuna()
        direction = getattr(direction, "value", direction)  # the structured config has already checked it
        if n_trials < 0 or n_jobs < 1:
            raise SearchSpaceError(f"hydra.sweeper.n_trials must be >= 0 and n_jobs >= 1 (got {n_trials}, {n_jobs})")
        self.direction, self.study_name, self.storage = direction, study_name, storage_url(storage)
        self.n_trials, self.n_jobs, self.prune_on = n_trials, n_jobs, prune_on
        self.sampler_config, self.pruner_config = _plain(sampler), _plain(pruner)
        if self.pruner_config is not None and self.storage is None:
            raise SearchSpaceError(
                "pruning needs a study the jobs can reach: set hydra.sweeper.storage (or hydra.sweeper.pruner=null)"
            )
        self.params = _plain(params) or {}
        self.reclaim = _plain(reclaim)  # checked in sweep(), where a bad value is one line
        self.exhausted = False  # set when the sampler has tried its whole (grid) space
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        import optuna
        from optuna.trial import TrialState

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        space = parse_search_space(self.params, arguments, self.hydra_context.config_loader)
        parse_reclaim(self.reclaim)
        # One composition with a value from each range: a key the config lacks fails now, before any trial.
        self.validate_batch_is_legal([space.overrides(space.example())])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        atomic.write_text(sweep_dir / "multirun.yaml", OmegaConf.to_yaml(self.config))

        with storage_lock(self.storage):  # another worker may be creating the same SQLite file
            study = optuna.create_study(
                study_name=self.study_name,
                storage=open_storage(self.storage),
                direction=self.direction,
                load_if_exists=True,
            )
        if study.direction.name.lower() != self.direction:
            raise SearchSpaceError(
                f"study '{self.study_name}' in {self.storage} was created to "
                f"{study.direction.name.lower()}; pick another hydra.sweeper.study_name"
            )
        self._reclaim_stale(study, sweep_dir)
        study.sampler = self._sampler(len(study.trials))
        finished = sum(trial.state != TrialState.RUNNING for trial in budget_trials(study))
        if finished:
            log.info("study '%s': %d of %d trials already finished", self.study_name, finished, self.n_trials)

        outcomes, self.exhausted = [], False
        while not self.exhausted:
            trials = self._ask(study, space)
            if not trials:
                break
            try:
                outcomes += self._run(study, trials, space)
            except BaseException:
                for trial in trials:  # Ctrl-C or a config error: these trials will not come back
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise

        elsewhere = [t.number for t in budget_trials(study) if t.state == TrialState.RUNNING]
        if elsewhere:
            log.info("trials %s still run in other workers of study '%s'", elsewhere, self.study_name)
        self._write_results(study, sweep_dir)
        if outcomes and all(outcome.status == FAILED for outcome in outcomes):
            raise SweepFailed("every trial failed; " + report(outcomes, str(sweep_dir), hidden=[PRUNING_OVERRIDE]))
        if outcomes:
            log.info(report(outcomes, str(sweep_dir), hidden=[PRUNING_OVERRIDE]))
        return outcomes

    def _ask(self, study, space) -> list:
        """Up to n_jobs new trials, as many as the study's n_trials leave; each records this worker."""
        from optuna.trial import TrialState

        trials = []
        with storage_lock(self.storage):  # workers on one SQLite file ask in turn: none asks past n_trials
            for _ in range(min(self.n_jobs, self.n_trials - len(budget_trials(study)))):
                trial = study.ask(space.distributions())
                trial.set_user_attr(WORKER_ATTR, this_worker())
                if not within_budget(study, trial.number, self.n_trials):  # a database server's workers asked at once
                    trial.set_user_attr(SURPLUS_ATTR, True)
                    self._tell(study, trial, state=TrialState.FAIL)
                    log.info("trial %d: the study's %d trials are taken by other workers", trial.number, self.n_trials)
                    break
                trials.append(trial)
        return trials

    def _run(self, study, trials, space) -> list:
        from optuna.trial import TrialState

        batch = []
        for trial in trials:
            overrides = space.overrides(trial.params)
            trial.set_user_attr("searched", overrides[len(space.fixed) :])  # for the log and optuna-dashboard
            if self.pruner_config is not None:
                overrides = [*overrides, self._pruning_override(trial)]
            batch.append(overrides)
        self.validate_batch_is_legal(batch)
        # Job numbers follow trial numbers, so <sweep dir>/<n> is trial n also after a resume; trial numbers
        # another worker took in between start a launch of their own.
        returns, start = [], 0
        for end in range(1, len(trials) + 1):
            if end == len(trials) or trials[end].number != trials[end - 1].number + 1:
                returns += self.launcher.launch(batch[start:end], initial_job_idx=trials[start].number)
                start = end
        outcomes = [job_outcome(job, trial.number) for trial, job in zip(trials, returns)]
        for trial, outcome in zip(trials, outcomes):
            value = _finite(outcome.value)
            if outcome.status == OK and value is None:
                outcome.status, outcome.error = (
                    FAILED,
                    f"the job returned {outcome.value!r}, not a number: is optimized_metric set and logged?",
                )
            if outcome.status == OK:
                self._tell(study, trial, values=value)
                log.info("trial %d: %.6g", trial.number, value)
            else:
                self._tell(study, trial, state=TrialState.PRUNED if outcome.status == PRUNED else TrialState.FAIL)
                log.log(
                    logging.WARNING if outcome.status == FAILED else logging.INFO,
                    "trial %d %s%s",
                    trial.number,
                    outcome.status,
                    f": {outcome.error}" if outcome.status == FAILED else "",
                )
        return outcomes

    def _tell(self, study, trial, **result) -> None:
        try:
            study.tell(trial, **result)
        except RuntimeError as err:
            # Grid and brute-force samplers call study.stop() once the space is covered; outside
            # study.optimize() that raises after the trial has been stored. Here it ends the search.
            if "Study.stop" not in str(err):
                raise
            log.info("the sampler has covered the search space: the search ends")
            self.exhausted = True

    def _pruning_override(self, trial) -> str:
        callback = {
            "_target_": "litvision.sweeps.pruning.OptunaPruning",
            "storage": self.storage,
            "study_name": self.study_name,
            "trial_id": trial._trial_id,
            "trial_number": trial.number,
            "monitor": self.prune_on,
            "pruner": self.pruner_config,
        }
        return f"{PRUNING_OVERRIDE}={value_string(callback)}"

    def _sampler(self, trials_so_far: int):
        config = dict(self.sampler_config or {"_target_": "optuna.samplers.TPESampler"})
        if config.get("seed") is not None:
            # A resumed search with the same seed would draw the first trials' parameters again.
            config["seed"] = int(config["seed"]) + trials_so_far
        try:
            return instantiate(config)
        except Exception as err:
            raise SearchSpaceError(f"hydra.sweeper.sampler: {first_line(err, limit=None)}") from None

    def _reclaim_stale(self, study, sweep_dir: Path) -> None:
        """Mark failed the RUNNING trials whose worker is gone (or that ``reclaim`` names); leave the others."""
        from optuna.trial import TrialState

        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        taken, left = stale_trials(running, parse_reclaim(self.reclaim))
        for trial, why in left:
            log.info("trial %d is running (%s): left to it", trial.number, why)
        for trial in taken:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)  # another worker may be first
            log.warning("trial %d was left running by an interrupted search: marked failed", trial.number)
            if (sweep_dir / str(trial.number)).is_dir():
                write_status(
                    sweep_dir / str(trial.number),
                    FAILED,
                    job=trial.number,
                    error="interrupted: the search stopped while this trial ran",
                )

    def _write_results(self, study, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        counted = budget_trials(study)
        states = {
            state.name.lower(): sum(trial.state == state for trial in counted)
            for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
        }
        results: dict[str, Any] = {
            "study_name": self.study_name,
            "storage": self.storage,
            "direction": self.direction,
            "trials": states,
        }
        if states["complete"]:
            best = study.best_trial
            searched = best.user_attrs.get("searched", [])
            results["best"] = {"trial": best.number, "value": best.value, "overrides": searched}
            log.info(
                "best trial %d: %s=%.4f  %s",
                best.number,
                self.config.get("optimized_metric", "value"),
                best.value,
                " ".join(searched),
            )
        atomic.write_text(sweep_dir / "optimization_results.yaml", yaml.safe_dump(results, sort_keys=False))


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
