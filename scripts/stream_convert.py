"""Convert a dataset for data=streaming: python scripts/stream_convert.py data=<data config> output=<dir>"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from litvision.support.cli import run_script, run_task


@hydra.main(version_base="1.3", config_path="../conf", config_name="stream_convert")
def main(cfg: DictConfig) -> float | None:
    from litvision.tasks.stream_convert import stream_convert  # here: --help and config errors answer without torch

    return run_task(stream_convert, cfg)


if __name__ == "__main__":
    run_script(main, Path(__file__).resolve().parents[1] / "conf")
