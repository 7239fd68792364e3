"""Pruning an Optuna trial from inside its training job.

The Optuna sweeper asks for a trial in its own process, but the training runs in a job (the same
process, a joblib worker or a SLURM node, and under DDP in several processes). The sweeper therefore
adds this callback to the job's config with the study's storage, name and the trial's id; after each
validation epoch rank 0 reports the monitored metric to the study and asks the pruner, every rank
learns the answer by broadcast, and all raise ``optuna.TrialPruned`` together (a lone rank raising
would leave the others waiting in a collective). The sweeper records the trial as pruned.
"""

from __future__ import annotations

import logging
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from litvision.support.records import scalars, write_metrics
from litvision.sweeps.workers import open_storage

log = logging.getLogger(__name__)


class OptunaPruning(Callback):
    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_id: int,
        trial_number: int,
        monitor: str = "val/acc",
        pruner: Any = None,
    ):
        self.storage, self.study_name, self.monitor = storage, study_name, monitor
        self.trial_id, self.trial_number, self.pruner = trial_id, trial_number, pruner
        self._trial = None

    def __getstate__(self) -> dict:
        # DDP spawn pickles the trainer with its callbacks; a database connection does not travel.
        return {**self.__dict__, "_trial": None}

    def trial(self):
        if self._trial is None:
            import optuna

            # A random sampler: this process only reports values, it never samples, so no TPE model is built.
            study = optuna.load_study(
                study_name=self.study_name,
                storage=open_storage(self.storage),
                pruner=self.pruner,
                sampler=optuna.samplers.RandomSampler(),
            )
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"optuna pruning: metric {self.monitor!r} was not logged "
                f"(logged: {sorted(trainer.callback_metrics)}); set hydra.sweeper.prune_on"
            )
        epoch = trainer.current_epoch
        prune = False
        if trainer.is_global_zero:  # one report per epoch, not one per rank
            trial = self.trial()
            trial.report(float(value), step=epoch)
            prune = trial.should_prune()
        prune = trainer.strategy.broadcast(prune, src=0)
        if not prune:
            return
        message = f"trial {self.trial_number} pruned after epoch {epoch}: {self.monitor}={float(value):.4f}"
        if trainer.is_global_zero:
            log.info(message)
            write_metrics(trainer.default_root_dir, scalars(trainer.callback_metrics), epochs=epoch + 1, pruned=True)
        import optuna

        raise optuna.TrialPruned(message)
