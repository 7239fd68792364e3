"""Time the template against a bare loop and the tutorial DataLoader: python scripts/lab/benchmark.py (conf/benchmark.yaml)."""

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task
from litvision_lab.paths import CONF_DIR, LAB_CONF_DIR


@hydra.main(version_base="1.3", config_path="conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    from litvision_lab.benchmark import benchmark  # here: --help and --cfg answer without loading torch

    run_task(benchmark, cfg)


if __name__ == "__main__":
    run_script(main, CONF_DIR, LAB_CONF_DIR)
