"""A Hydra sweeper driving current Optuna (>= 4) with ask-and-tell: ``hydra/sweeper=litvision_optuna``.

hydra-optuna-sweeper pins optuna < 3, hence this one. Each batch of ``n_jobs`` trials is asked from
the study, launched through the configured launcher (in process, joblib, SLURM) with the trials'
overrides, and told back: COMPLETE with the job's return value (``cfg.optimized_metric`` in
litvision), PRUNED when the job's OptunaPruning callback stopped it, FAIL when it raised; the study
goes on either way. With a storage (a file path means SQLite) the same command resumes: finished
trials count toward ``n_trials``, and trials an interrupted search left RUNNING are marked failed.
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

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from litvision.support.errors import first_line
from litvision.sweeps.outcome import SweepFailed, job_outcome, report
from litvision.sweeps.records import FAILED, OK, PRUNED, PRUNING_OVERRIDE, write_status
from litvision.sweeps.search_space import SearchSpaceError, parse_search_space, value_string

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


def storage_url(storage: str | None) -> str | None:
    """A database URL as is; a file path becomes a SQLite URL (its folder is created)."""
    if storage is None or "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


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
        # One composition with a value from each range: a key the config lacks fails now, before any trial.
        self.validate_batch_is_legal([space.overrides(space.example())])
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        study = optuna.create_study(
            study_name=self.study_name, storage=self.storage, direction=self.direction, load_if_exists=True
        )
        if study.direction.name.lower() != self.direction:
            raise SearchSpaceError(
                f"study '{self.study_name}' in {self.storage} was created to "
                f"{study.direction.name.lower()}; pick another hydra.sweeper.study_name"
            )
        self._fail_interrupted(study, sweep_dir)
        study.sampler = self._sampler(len(study.trials))
        finished_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        finished = len(study.get_trials(deepcopy=False, states=finished_states))
        if finished:
            log.info("study '%s': %d of %d trials already finished", self.study_name, finished, self.n_trials)

        outcomes, self.exhausted = [], False
        while finished < self.n_trials and not self.exhausted:
            trials = [study.ask(space.distributions()) for _ in range(min(self.n_jobs, self.n_trials - finished))]
            try:
                outcomes += self._run(study, trials, space)
            except BaseException:
                for trial in trials:  # Ctrl-C or a config error: these trials will not come back
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                raise
            finished += len(trials)

        self._write_results(study, sweep_dir)
        if outcomes and all(outcome.status == FAILED for outcome in outcomes):
            raise SweepFailed("every trial failed; " + report(outcomes, str(sweep_dir), hidden=[PRUNING_OVERRIDE]))
        if outcomes:
            log.info(report(outcomes, str(sweep_dir), hidden=[PRUNING_OVERRIDE]))
        return outcomes

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
        # Job numbers follow trial numbers, so <sweep dir>/<n> is trial n also after a resume.
        returns = self.launcher.launch(batch, initial_job_idx=trials[0].number)
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

    def _fail_interrupted(self, study, sweep_dir: Path) -> None:
        from optuna.trial import TrialState

        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
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

        states = {
            state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
            for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
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
        OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
