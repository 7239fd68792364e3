"""Time this template against a bare loop and the tutorial DataLoader: python scripts/benchmark.py (conf/benchmark.yaml)."""

import hydra
from omegaconf import DictConfig

from benchmark_ways import benchmark
from litvision.cli import run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    run_task(benchmark, cfg)


if __name__ == "__main__":
    main()
