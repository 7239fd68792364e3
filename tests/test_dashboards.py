"""Dashboards: what a short run leaves in TensorBoard (read by TensorBoard itself) and as PNG files."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pytest
from lightning import Callback
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from conftest import QUIET, compose_train, run_main, run_script
from litvision.support.instantiate import build
from litvision.support.render import WRONG, confusion_picture, image_grid
from litvision.tasks.train import train

SCALARS = {
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "val/acc_best",
    "test/loss",
    "test/acc",
    "lr-AdamW",
    "time/epoch_s",
    "time/images_per_s",
    "val_class_acc/0",
    "val_class_acc/9",
    "test_class_acc/0",
}
IMAGES = {"train/samples", "val/predictions", "val/highest_loss", "val/confusion_matrix", "test/confusion_matrix"}
PNGS = ("curves.png", "confusion_matrix.png")


def short_run(data_dir: Path, run_dir: Path, *extra: str) -> dict[str, float]:
    """Two epochs on the tiny MNIST files (two training batches each): a few seconds."""
    cfg = compose_train(
        ["data=mnist", f"data.data_dir={data_dir}", "data.val_size=100", "trainer.max_epochs=2", *QUIET, *extra],
        run_dir,
    )
    return train(cfg)


@pytest.fixture(scope="module")
def tensorboard_run(tiny_data_dir, tmp_path_factory) -> Path:
    """Three epochs; prediction grids every second validation epoch (so epochs 0 and 2, the last), the
    confusion matrix every epoch (the default is every 5th)."""
    run_dir = tmp_path_factory.mktemp("tensorboard-run")
    short_run(
        tiny_data_dir,
        run_dir,
        "trainer.max_epochs=3",
        "callbacks.val_predictions.every_n_epochs=2",
        "callbacks.confusion_matrix.every_n_epochs=1",
    )
    return run_dir


@pytest.fixture(scope="module")
def csv_run(tiny_data_dir, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    run_dir = tmp_path_factory.mktemp("csv-run")
    return run_dir, short_run(tiny_data_dir, run_dir, "logger=csv")


def test_event_files_hold_scalars_images_confusion_matrix_and_hparams(tensorboard_run):
    events = EventAccumulator(str(tensorboard_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    assert SCALARS <= set(tags["scalars"]), SCALARS - set(tags["scalars"])
    assert IMAGES <= set(tags["images"]), IMAGES - set(tags["images"])
    assert len(events.Scalars("time/epoch_s")) == 3 and events.Scalars("time/images_per_s")[0].value > 0
    assert len(events.Images("val/predictions")) == 2 and len(events.Images("val/highest_loss")) == 2
    assert len(events.Images("val/confusion_matrix")) == 3 and len(events.Images("train/samples")) == 1
    for tag in IMAGES:
        image = events.Images(tag)[-1]
        assert image.encoded_image_string.startswith(b"\x89PNG") and image.width > 300 and image.height > 200

    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert {info.name.tag for info in experiment.metric_infos} == {"val/acc_best", "test/acc"}
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hparams = start.hparams
    assert hparams["model/net"].string_value == "SmallCNN"
    assert hparams["model/optimizer"].string_value == "AdamW"
    assert hparams["model/optimizer/lr"].number_value == pytest.approx(0.004)
    assert hparams["data/batch_size"].number_value == 256 and hparams["trainer/max_epochs"].number_value == 3
    assert "data/class_names" not in hparams and "data/data_dir" not in hparams


def test_mistakes_are_framed_in_red():
    images = np.full((2, 28, 28, 1), 0.5)
    red = np.array(matplotlib.colors.to_rgb(WRONG)) * 255

    def red_pixels(mistakes):
        drawn = image_grid(images, ["3", "7\ntrue: 1"], mistakes, columns=2).astype(float)
        return int((np.abs(drawn - red).sum(axis=-1) < 30).sum())

    assert red_pixels([False, False]) == 0
    assert red_pixels([False, True]) > 1000  # the frame; the red caption alone is a few hundred pixels at most


def test_confusion_matrix_colours_are_shares_of_each_true_class():
    # A common class (100 examples) and a rare one (10), both 90% right: their cells get the same colours.
    picture = confusion_picture(np.array([[90, 10], [1, 9]]), ["common", "rare"], "two classes")
    assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3

    def pixels_of(share: float) -> int:
        colour = np.array(matplotlib.colormaps["Blues"](share)[:3]) * 255
        return int((np.abs(picture.astype(float) - colour).sum(axis=-1) < 3).sum())

    cell = 40 * 40  # pixels per cell; the count written in it covers a few dozen
    assert 1.8 * cell < pixels_of(0.9) <= 2 * cell  # both diagonal cells
    assert 1.8 * cell < pixels_of(0.1) <= 2 * cell  # both mistakes cells, 10 of 100 and 1 of 10


def test_tensorboard_serves_the_runs_scalars_and_images(tensorboard_run, tmp_path):
    with socket.socket() as probe:  # a port the OS says is free right now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    executable = Path(sys.executable).parent / "tensorboard"
    log = tmp_path / "tensorboard.log"  # a file, not a pipe: an unread pipe that fills up would stall the server
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(executable), "--logdir", str(tensorboard_run), "--host", "127.0.0.1", "--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        scalars = _poll_json(f"http://127.0.0.1:{port}/data/plugin/scalars/tags", server, log, timeout=60)
        images = _poll_json(f"http://127.0.0.1:{port}/data/plugin/images/tags", server, log, timeout=20)
        assert list(scalars) == ["tensorboard"], scalars.keys()  # the run: the event folder under --logdir
        assert SCALARS <= set(scalars["tensorboard"])
        assert IMAGES <= set(images["tensorboard"])
        # The HParams table: this run's settings with the latest val/acc_best and test/acc filled in.
        query = {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
            "startIndex": 0,
            "sliceSize": 10,
            "colParams": [{"metric": {"tag": "val/acc_best"}}, {"metric": {"tag": "test/acc"}}],
        }
        groups = _poll_json(
            f"http://127.0.0.1:{port}/data/plugin/hparams/session_groups", server, log, timeout=20, body=query
        )["sessionGroups"]
        assert groups[0]["hparams"]["model/net"] == "SmallCNN"
        values = {metric["name"]["tag"]: metric["value"] for metric in groups[0]["metricValues"]}
        written = json.loads((tensorboard_run / "metrics.json").read_text())["metrics"]
        assert values == pytest.approx({tag: written[tag] for tag in ("val/acc_best", "test/acc")}, rel=1e-6)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _poll_json(url: str, server: subprocess.Popen, log: Path, timeout: float, body: dict | None = None) -> dict:
    """GET (or POST ``body`` to) ``url`` until it answers with a non-empty JSON object: the server takes a
    moment to listen, and loads event files in the background."""
    deadline = time.monotonic() + timeout
    data = json.dumps(body).encode() if body is not None else None
    while True:
        if server.poll() is not None:
            raise AssertionError(f"tensorboard exited ({server.returncode}): {log.read_text()[-2000:]}")
        try:
            request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                answer = json.load(response)
            if answer:
                return answer
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer from {url} within {timeout} s")
        time.sleep(0.5)


def test_run_dir_gets_curves_and_confusion_matrix_pngs(tensorboard_run):
    for name in PNGS:
        image = matplotlib.image.imread(tensorboard_run / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200, name
    assert not list(tensorboard_run.glob(".*.png")), "a temporary PNG was left behind"


def test_csv_logger_alone_gets_the_scalars_and_the_pngs(csv_run):
    run_dir, metrics = csv_run
    assert not (run_dir / "tensorboard").exists()
    header = (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"time/epoch_s", "time/images_per_s", "val_class_acc/0", "test_class_acc/0", "lr-AdamW"} <= set(header)
    assert {"val_class_acc/3", "test_class_acc/3"} <= metrics.keys()  # the callbacks' self.log reaches the task
    for name in PNGS:
        assert matplotlib.image.imread(run_dir / name).ndim == 3


def test_a_run_with_logging_off_completes_and_writes_the_pngs(tiny_data_dir, tmp_path):
    metrics = short_run(tiny_data_dir, tmp_path, "~logger", "trainer.max_epochs=1")
    assert "test/acc" in metrics and "time/epoch_s" in metrics
    assert not (tmp_path / "tensorboard").exists() and not (tmp_path / "csv").exists()
    for name in PNGS:
        assert matplotlib.image.imread(tmp_path / name).ndim == 3


@pytest.mark.slow
def test_ddp_run_logs_each_image_once_from_rank_zero(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    # Two CPU processes (gloo): the confusion matrix sync, the highest-loss gather and the timing
    # reductions are collectives, so a rank that skipped one would hang the run until the timeout.
    run_script(
        "train.py",
        "data=mnist",
        f"data.data_dir={tiny_data_dir}",
        "data.val_size=100",
        "trainer.max_epochs=1",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "++trainer.strategy=ddp",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        *QUIET,
        timeout=300,
    )
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert IMAGES <= set(events.Tags()["images"])
    assert all(len(events.Images(tag)) == 1 for tag in IMAGES), "an image was written by more than one rank"
    highest = events.Images("val/highest_loss")[0]
    assert highest.height > 200
    for name in PNGS:
        assert matplotlib.image.imread(run_dir / name).ndim == 3


def test_plot_script_draws_every_run_of_a_sweep_folder(tensorboard_run, csv_run, tmp_path):
    sweep = tmp_path / "sweep"
    # A sweep's layout: one numbered folder per job, each with the overrides Hydra saved.
    for job, (source, log, override) in enumerate(
        [(tensorboard_run, "tensorboard", "logger=tensorboard"), (csv_run[0], "csv", "logger=csv")]
    ):
        shutil.copytree(source / log, sweep / str(job) / log)
        (sweep / str(job) / ".hydra").mkdir()
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- data=mnist\n- {override}\n")
    result = run_main("plot.py", str(sweep))
    assert "2 runs" in result.stdout
    image = matplotlib.image.imread(sweep / "compare.png")
    assert image.ndim == 3 and image.shape[1] > 800

    empty = tmp_path / "empty"
    empty.mkdir()
    failed = run_main("plot.py", str(empty), check=False)
    assert failed.returncode == 2 and "error: no TensorBoard event files" in failed.stderr
    assert "Traceback" not in failed.stderr


class _ShownLoss(Callback):
    """After each training batch: whether the progress bar shows the loss of the latest logging step."""

    def __init__(self):
        self.current, self._expected = [], None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx % trainer.log_every_n_steps == 0:
            self._expected = float(outputs["loss"])
        shown = trainer.progress_bar_callback.get_metrics(trainer, pl_module).get("loss")
        self.current.append(shown is not None and float(shown) == pytest.approx(self._expected))


@pytest.mark.parametrize("bar", [RichProgressBar, TQDMProgressBar])
def test_progress_bars_show_the_step_loss_every_log_every_n_steps(bar, tiny_data_dir, tmp_path):
    cfg = compose_train(
        [
            "data=mnist",
            f"data.data_dir={tiny_data_dir}",
            "data.val_size=100",
            "data.batch_size=32",
            "trainer.max_epochs=1",
            "trainer.log_every_n_steps=3",
            "test=false",
            "logger=none",
        ],
        tmp_path,
    )
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    shown = _ShownLoss()
    trainer = build(cfg.trainer, "trainer", callbacks=[bar(), shown], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    assert len(shown.current) == trainer.num_training_batches > 6
    assert all(shown.current)
