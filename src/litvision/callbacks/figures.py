"""curves.png in the run dir: loss and accuracy per epoch, train against val, for people who skip TensorBoard."""

from __future__ import annotations

from collections import defaultdict

from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from litvision.callbacks.dashboard import output_dir
from litvision.support.render import curves_figure, save_png

TRAIN_KEYS, VAL_KEYS = ("train/loss", "train/acc"), ("val/loss", "val/acc")


class LearningCurves(Callback):
    """Records the epoch metrics from ``trainer.callback_metrics`` and draws them when fit ends.

    Reading ``callback_metrics`` instead of a logger's files makes it work with any logger or none.
    Epoch-level train metrics land there only after every ``on_train_epoch_end`` hook has run, so
    they are read at the next epoch's start (and at fit end) and filed under the epoch that ended.
    Also written when fit stops on an exception (Ctrl-C included), with the epochs done so far.
    """

    def __init__(self, dirpath: str | None = None, filename: str = "curves.png"):
        self.dirpath, self.filename = dirpath, filename
        self.history: dict[str, dict[int, float]] = defaultdict(dict)
        self._ended_epoch: int | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.history.clear()
        self._ended_epoch = None

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._file_train_metrics(trainer)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._ended_epoch = trainer.current_epoch

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:  # the sanity check's numbers come from an untrained net
            self._file(trainer, VAL_KEYS, trainer.current_epoch)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._file_train_metrics(trainer)
        self._write(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.state.fn == "fit":
            self._write(trainer)

    def _file_train_metrics(self, trainer: Trainer) -> None:
        if self._ended_epoch is not None:
            self._file(trainer, TRAIN_KEYS, self._ended_epoch)
            self._ended_epoch = None

    def _file(self, trainer: Trainer, keys: tuple[str, ...], epoch: int) -> None:
        for key in keys:
            value = trainer.callback_metrics.get(key)
            if value is not None:
                self.history[key][epoch] = float(value)

    def curves(self) -> dict[str, tuple[list[int], list[float]]]:
        return {key: (sorted(values), [values[e] for e in sorted(values)]) for key, values in self.history.items()}

    @rank_zero_only
    def _write(self, trainer: Trainer) -> None:
        if self.history:
            title = (
                f"{type(trainer.lightning_module.net).__name__}" if hasattr(trainer.lightning_module, "net") else None
            )
            save_png(
                curves_figure({"run": self.curves()}, title=title), output_dir(self.dirpath, trainer) / self.filename
            )
