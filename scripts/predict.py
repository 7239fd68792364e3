"""Predict image files: python scripts/predict.py ckpt_path=<ckpt> inputs=<file|folder|glob> (or inputs=[a.png,b.png])"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.predict import predict  # here: --help, --cfg and config errors answer without loading torch

    return run_task(predict, cfg)


if __name__ == "__main__":
    run_script(main, Path(__file__).resolve().parents[1] / "conf")
