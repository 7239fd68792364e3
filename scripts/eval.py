"""Test a checkpoint: python scripts/eval.py ckpt_path=logs/train/runs/<time>/checkpoints/last.ckpt"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.eval import evaluate  # here: --help, --cfg and config errors answer without loading torch

    return run_task(evaluate, cfg)


if __name__ == "__main__":
    run_script(main, Path(__file__).resolve().parents[1] / "conf")
