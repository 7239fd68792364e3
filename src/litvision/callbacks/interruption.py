"""Ctrl-C (SIGINT) and SIGTERM (what SLURM sends before preempting) stop a run with a checkpoint it resumes from.

While training, the first signal only sets a flag: the run stops at the end of the current training
batch, where Lightning's loop state is consistent, and saves ``interrupted.ckpt`` there. Resuming from
it continues with the next batch of the same epoch: the loop state says where, the data module's
training loader skips the batches already done, and
:class:`~litvision.callbacks.rng_state.RandomStateCheckpoint` (its own callback, ``callbacks.rng_state``)
puts the random generators back where they were. A second Ctrl-C stops at once (Lightning's own
handling; the checkpoint is then written where it stopped).

A signal before training has started (while a folder is still being decoded, say) saves nothing: a
checkpoint of untrained weights, with data statistics not yet computed, is nothing to resume from. The
run says so in one line and exits as below.

The run then leaves ``status.json`` with ``interrupted``, the signal and the checkpoint to resume
from (none when it stopped before training), logs the command that resumes it, and
:func:`litvision.support.cli.run_task` exits with 128 + the signal number (130 for SIGINT, 143 for
SIGTERM). Under DDP (several processes), the flag is left to Lightning: its SIGTERM handling stops
every rank at the same batch and the checkpoint is saved there.
In a SLURM job, SIGTERM's checkpoint is ``<run dir>/hpc_ckpt_<n>.ckpt`` instead, the name Lightning
resumes from by itself when the requeued job starts in the same run folder (docs/training.md).
"""

from __future__ import annotations

import logging
import re
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from lightning import Callback
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.trainer.states import TrainerFn

from litvision.support.records import PRUNING_OVERRIDE, write_status
from litvision.support.runtime import in_multirun
from litvision.support.stops import RunInterrupted, Stopped, record_stop, signal_of

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
EVAL_COMMAND = "python scripts/eval.py"  # tests a checkpoint: what a run stopped while testing has left to do
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interruption(Callback):
    """Stop cleanly on SIGINT/SIGTERM: checkpoint at a batch boundary, ``status.json``, the resume command.

    Args:
        dirpath: where ``filename`` is written (the run's checkpoint folder).
        run_dir: where ``status.json`` is written (the run folder).
        filename: the checkpoint written when a signal stops training.
        command: how the run was started, for the printed resume command (the run's overrides follow it).
    """

    def __init__(
        self,
        dirpath: str,
        run_dir: str,
        filename: str = "interrupted.ckpt",
        command: str = "python scripts/train.py",
    ):
        self.dirpath, self.run_dir, self.filename, self.command = Path(dirpath), Path(run_dir), filename, command
        self._requested: int | None = None
        self._previous: dict[int, Any] = {}
        self._training = False  # from on_train_start of this fit on: there is a training state to save

    def setup(self, trainer, pl_module, stage: str) -> None:
        record_stop(None)  # a stop of an earlier run in this process (a sweep's job) is not this run's

    # -- signals ---------------------------------------------------------------------------------
    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its own SIGTERM handler (kept: it is chained below).
        self._requested = None
        self._training = True
        if trainer.world_size > 1 or threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)
        log.info(
            "Ctrl-C or SIGTERM now stops training at the end of the current batch, with a checkpoint to resume from"
        )

    def _on_signal(self, signum: int, frame) -> None:
        if self._requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self._requested = signum
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):
            previous(signum, frame)  # Lightning's: marks the trainer as having received SIGTERM

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._requested is not None:
            raise RunInterrupted(self._requested)

    def on_train_end(self, trainer, pl_module) -> None:
        self._restore_handlers()
        if self._requested is not None:  # arrived during the last validation: training is complete, stop here
            raise RunInterrupted(self._requested)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._training = False  # the next fit of this trainer starts without a training state

    # -- stopping --------------------------------------------------------------------------------
    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._restore_handlers()
        signum = signal_of(exception)
        if signum is None:
            return
        ckpt_path, command = None, None
        fitting = trainer.state.fn == TrainerFn.FITTING
        # Before on_train_start (decoding the data, setting up, restoring) or before the first optimizer
        # step, nothing was trained: the weights are the initial ones and the data statistics may not exist yet.
        untrained = fitting and not (self._training and trainer.global_step > 0)
        self._training = False
        if fitting and not untrained:
            ckpt_path = str(self._checkpoint_path(trainer, signum).resolve())
            trainer.save_checkpoint(ckpt_path, weights_only=False)  # the whole state: optimizer, loops, callbacks
            command = self.resume_command(ckpt_path)
        else:  # stopped while testing: training is complete; eval.py tests what was being tested
            last = next((cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.monitor is None), "")
            tested = trainer.ckpt_path or last
            ckpt_path = str(Path(tested).resolve()) if tested else None
            command = f"{EVAL_COMMAND} {shlex.quote(f'ckpt_path={ckpt_path}')}" if ckpt_path else None
        stopped = Stopped(int(signum), ckpt_path, command)
        record_stop(stopped)  # for the exit code (support/stops.py), on every rank
        if not trainer.is_global_zero:
            return
        write_status(
            self.run_dir,
            INTERRUPTED,
            signal=signal.Signals(signum).name,
            ckpt_path=ckpt_path,
            resume=command,
            epoch=trainer.current_epoch,
            global_step=trainer.global_step,
        )
        name = signal.Signals(signum).name
        if untrained:
            print(f"{name}: stopped before training started; nothing was saved, nothing to resume", file=sys.stderr)
        elif command:
            then = "resume with" if fitting else "training was complete; test it with"
            print(
                f"{name}: stopped at epoch {trainer.current_epoch}, step {trainer.global_step}; {then}:",
                file=sys.stderr,
            )
            print(f"  {command}", file=sys.stderr)
            if in_multirun():
                print(
                    "  (this runs that job alone, outside the sweep; rerun the sweep command to continue the sweep:"
                    " an Optuna study with a storage goes on from the trials it finished)",
                    file=sys.stderr,
                )
        else:
            print(f"{name}: stopped; no checkpoint to resume from", file=sys.stderr)

    def _checkpoint_path(self, trainer, signum: int) -> Path:
        if signum == signal.SIGTERM and SLURMEnvironment.detect():
            # Lightning resumes a SLURM job started without ckpt_path from the newest hpc_ckpt_<n>.ckpt in
            # its default_root_dir (the run folder): a requeued job that finds its folder continues from here.
            root = Path(trainer.default_root_dir)
            found = (re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", path.name) for path in root.glob("hpc_ckpt_*.ckpt"))
            return root / f"hpc_ckpt_{max((int(m.group(1)) for m in found if m), default=0) + 1}.ckpt"
        return self.dirpath / self.filename

    def resume_command(self, ckpt_path: str) -> str:
        """``<command> <the run's overrides> ckpt_path=<ckpt>``: the same run, continued.

        An Optuna trial's pruning callback is left out: the sweeper has told the study the trial
        failed, and a finished trial takes no more reports (Optuna raises UpdateFinishedTrialError).
        """
        overrides = []
        if HydraConfig.initialized():
            overrides = [
                o
                for o in HydraConfig.get().overrides.task
                if not o.split("=", 1)[0].endswith("ckpt_path") and not o.startswith(PRUNING_OVERRIDE)
            ]
        return " ".join([self.command, *(shlex.quote(o) for o in overrides), shlex.quote(f"ckpt_path={ckpt_path}")])
