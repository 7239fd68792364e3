"""Test a checkpoint: python scripts/eval.py ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt"""

import hydra
from omegaconf import DictConfig

from litvision.cli import run_task
from litvision.eval import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return run_task(evaluate, cfg)


if __name__ == "__main__":
    main()
