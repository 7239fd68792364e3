"""Print a Keras-style summary of a model: python scripts/model_summary.py model=keras_cnn data=fashion_mnist

Per layer: output shape, parameters and multiply-accumulates for one image of the data config's
shape, then the totals. The net is built from the config alone, so no dataset files are needed.
"""

import sys
import tempfile
from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.model_summary import (
        summarize,  # here: --help, --cfg and config errors answer without loading torch
    )

    return run_task(summarize, cfg)


if __name__ == "__main__":
    # A summary is not a run: what Hydra writes for a run (config, log, status) goes to a temporary
    # folder, removed on exit, instead of a new logs/train/runs/<time>/.
    with tempfile.TemporaryDirectory(prefix="litvision-model-summary-") as run_dir:
        sys.argv.insert(1, f"hydra.run.dir={run_dir}")
        run_script(main, Path(__file__).resolve().parents[1] / "conf")
