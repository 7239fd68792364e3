"""The HParams tab: each run's model, data and optimizer settings next to its val/acc_best and test/acc."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lightning import Callback, LightningModule, Trainer
from torch.utils.tensorboard.summary import hparams as hparams_summaries

from litvision.callbacks.dashboard import tensorboard_writer
from litvision.support.checkpoint import DATA_CONFIG_KEY

Scalar = (bool, int, float, str)


class HParamsLogger(Callback):
    """Writes the HParams plugin's entry for the run once, at fit start, into the TensorBoard run.

    The hyperparameters are the module's own (its model config) and the ``data_config`` it carries (so
    ``model/optimizer/lr``, ``model/net/widths``, ``data/batch_size``...) plus ``extra`` from the config
    (seed, epochs, precision). A ``_target_`` becomes its class name (``model/net: SmallCNN``); lists become
    text. Only the metric *names* are declared: TensorBoard shows each run's latest value of those scalar
    tags, so ``val/acc_best`` fills in as training goes and ``test/acc`` once the test has run, and no
    placeholder value is ever logged. Runs of a sweep then compare in one table.
    """

    def __init__(
        self,
        metrics: Sequence[str] = ("val/acc_best", "test/acc"),
        extra: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
    ):
        self.metrics, self.extra, self.exclude = list(metrics), dict(extra or {}), set(exclude)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        params = self.collect(pl_module)
        # Private: SummaryWriter.add_hparams, the public way, would write into a separate run folder.
        file_writer = writer._get_file_writer()
        for summary in hparams_summaries(params, {name: 0.0 for name in self.metrics}):
            file_writer.add_summary(summary)
        writer.flush()

    def collect(self, pl_module: LightningModule) -> dict[str, Any]:
        """The flat {name: bool/int/float/str} the HParams plugin takes."""
        hparams = dict(pl_module.hparams)
        data = hparams.pop(DATA_CONFIG_KEY, None)
        sources = {"model": hparams, "data": data}
        params: dict[str, Any] = {}
        for prefix, source in {**sources, **self.extra}.items():
            _flatten(prefix, source, params)
        return {name: value for name, value in params.items() if name not in self.exclude}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key == "_target_":
                out[prefix] = str(item).rsplit(".", 1)[-1]
            elif not str(key).startswith("_"):  # _partial_, _convert_: Hydra mechanics, not settings
                _flatten(f"{prefix}/{key}", item, out)
    elif isinstance(value, Scalar):
        out[prefix] = value
    elif value is not None:
        out[prefix] = str(list(value)) if isinstance(value, (list, tuple)) else str(value)
