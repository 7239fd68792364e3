"""Export a checkpoint: python scripts/export.py ckpt_path=<ckpt> format=onnx|torchscript [output=<file>]"""

import hydra
from omegaconf import DictConfig

from litvision.cli import run_task
from litvision.export import export


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_task(export, cfg)


if __name__ == "__main__":
    main()
