"""Find a learning rate: python scripts/lr_find.py <train overrides> (see conf/lr_find.yaml)."""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="lr_find")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.lr_find import lr_find  # here: --help, --cfg and config errors answer without loading torch

    return run_task(lr_find, cfg)


if __name__ == "__main__":
    run_script(main, Path(__file__).resolve().parents[1] / "conf")
