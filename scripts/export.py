"""Export a checkpoint: python scripts/export.py ckpt_path=<ckpt> format=onnx|torchscript [output=<file>]"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.export import export  # here: --help, --cfg and config errors answer without loading torch

    return run_task(export, cfg)


if __name__ == "__main__":
    run_script(main, Path(__file__).resolve().parents[1] / "conf")
