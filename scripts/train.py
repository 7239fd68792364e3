"""Train a model: python scripts/train.py model=resnet data=cifar10 (see conf/train.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.train import train  # here: --help, --cfg and config errors answer without loading torch

    return run_task(train, cfg)


if __name__ == "__main__":
    run_script(main, Path(__file__).resolve().parents[1] / "conf")
