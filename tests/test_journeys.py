"""Everyday journeys of a new user: resumes that cannot work are refused in one line, config mistakes are
one ``error:`` line from every script, the Trainer options researchers use are plain keys, eval takes the
same progress-bar settings as train, and the printed commands and documented snippets work as written."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shlex
import signal
from pathlib import Path

import numpy as np
import optuna
import pytest
from hydra.errors import HydraException
from lightning import Callback, Trainer
from lightning.pytorch.callbacks import ProgressBar
from omegaconf.errors import OmegaConfBaseException
from PIL import Image

from conftest import ROOT, compose_train, run_main, tiny_mlp_args
from litvision.support.checkpoint import check_same_data, read_checkpoint
from litvision.support.cli import config_error_line
from litvision.support.errors import CheckpointError
from litvision.support.instantiate import build
from litvision.tasks.train import train


@pytest.fixture(scope="module")
def two_epoch_checkpoint(tiny_data_dir, tmp_path_factory):
    """last.ckpt of a 2-epoch MNIST run (a few batches an epoch)."""
    root = tmp_path_factory.mktemp("trained")
    cfg = compose_train(
        tiny_mlp_args(
            tiny_data_dir, root, "trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false", "logger=none"
        )
        + ["trainer.limit_val_batches=1"],
        root / "run",
    )
    train(cfg)
    return root / "run" / "checkpoints" / "last.ckpt"


def one_error_line(result) -> str:
    """The run's only stderr line, which must be an ``error:`` line; no traceback, no Hydra footer."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout and "HYDRA_FULL_ERROR" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- 1 and 7: resumes that cannot do what was asked ------------------------------------------------------


@pytest.mark.parametrize(
    "other, named",
    [
        ("data=fashion_mnist", "dataset MNISTDataModule -> FashionMNISTDataModule; class_names [0, 1, 2, ..."),
        ("data.image_size=32", "image_size 28 -> 32"),
    ],
)
def test_resuming_onto_other_data_is_refused_and_points_at_init_from(
    other, named, two_epoch_checkpoint, tiny_data_dir, tmp_path
):
    result = run_main(
        "train.py",
        *tiny_mlp_args(tiny_data_dir, tmp_path, other, "trainer.max_epochs=3", f"ckpt_path={two_epoch_checkpoint}"),
        check=False,
    )
    line = one_error_line(result)
    assert "other data" in line and named in line and f"model.init_from={two_epoch_checkpoint}" in line
    assert not list(tmp_path.rglob("metrics.json")), "a refused resume writes no metrics"


def test_other_class_names_or_channels_are_other_data_too(two_epoch_checkpoint):
    checkpoint = read_checkpoint(two_epoch_checkpoint)
    saved = checkpoint["hyper_parameters"]["data_config"]
    check_same_data(checkpoint, "last.ckpt", {**saved, "data_dir": "/moved/elsewhere", "batch_size": 7})  # same data
    for key, value in (("class_names", list("abcdefghij")), ("in_channels", 3), ("num_classes", 9)):
        with pytest.raises(CheckpointError, match=f"other data \\({key} .* -> .*\\).*model.init_from=last.ckpt"):
            check_same_data(checkpoint, "last.ckpt", {**saved, key: value})


def test_a_resume_with_nothing_left_to_train_says_what_to_pass(two_epoch_checkpoint, tiny_data_dir, tmp_path):
    assert read_checkpoint(two_epoch_checkpoint)["epoch"] == 1  # epochs 0 and 1 done
    result = run_main(
        "train.py",
        *tiny_mlp_args(tiny_data_dir, tmp_path, "trainer.max_epochs=1", f"ckpt_path={two_epoch_checkpoint}"),
        check=False,
    )
    line = one_error_line(result)
    assert "already trained 2 epochs (trainer.max_epochs=1)" in line and "trainer.max_epochs=<more than 2>" in line
    assert f"scripts/eval.py ckpt_path={two_epoch_checkpoint}" in line


# -- 4: unknown keys and options, from every script -------------------------------------------------------

SCRIPTS = ["train.py", "eval.py ckpt_path=x.ckpt", "predict.py ckpt_path=x.ckpt", "export.py ckpt_path=x.ckpt"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_unknown_key_is_one_line_naming_the_closest_keys_from_every_script(script, tmp_path):
    name, *args = script.split()
    line = one_error_line(run_main(name, *args, f"paths.root_dir={tmp_path}", "trainer.max_epoch=3", check=False))
    assert "trainer.max_epoch is not a key" in line and "did you mean trainer.max_epochs" in line


def test_config_mistakes_are_one_error_line_with_exit_status_2(tmp_path):
    # The script's way (run_main): a Trainer argument the config does not list, where adding is what was meant.
    line = one_error_line(run_main("train.py", f"paths.root_dir={tmp_path}", "trainer.profiler=simple", check=False))
    assert line.endswith(
        "trainer.profiler is not in the trainer config, but lightning.Trainer takes it: add it with +trainer.profiler=simple"
    )
    line = one_error_line(run_main("train.py", f"paths.root_dir={tmp_path}", "logger=null", check=False))
    assert line.endswith("to turn it off: logger=none")
    # The same lines for the other mistakes, from the exception composing raises (cheaper than a run each).
    for override, expected in [
        ("trainer.foo=1", "trainer.foo is not a key of the trainer config nor an argument of lightning.Trainer"),
        ("model=mpl", "model=mpl: no such option (closest: mlp); model takes one of: alexnet, densenet,"),
        ("model.net.hiden=[8]", "model.net.hiden is not a key of the model.net config nor an argument of"),
        ("model.net.hiden=[8]", "did you mean model.net.hidden?"),
        (
            "+trainer.max_steps=5",
            "trainer.max_steps is already in the config: set it without the +, trainer.max_steps=5",
        ),
        ("foo=1", "foo is not a key of the config; to add it as a new key: +foo=1"),
    ]:
        with pytest.raises((HydraException, OmegaConfBaseException)) as raised:
            compose_train(["model=mlp", override], tmp_path)
        assert expected in config_error_line(raised.value), override


def test_model_summary_and_a_missing_required_key_answer_in_one_line(tmp_path):
    line = one_error_line(run_main("model_summary.py", "model=foo", check=False))
    assert "model takes one of:" in line and "small_cnn" in line
    line = one_error_line(run_main("eval.py", f"paths.root_dir={tmp_path}", check=False))
    assert line == "error: ckpt_path is required: pass ckpt_path=<value>"


def test_a_sweep_with_an_unknown_option_stops_in_one_line_before_any_run(tmp_path):
    # A sweep whose runs failed ends with its report and exit 1, without Hydra's footer:
    # tests/test_sweeps.py::test_grid_records_failed_runs_and_finishes_the_others.
    line = one_error_line(run_main("train.py", "-m", "model=mlp,foo", f"paths.root_dir={tmp_path}", check=False))
    assert "model=foo: no such option" in line


# -- 5: the Trainer options researchers use are keys of every trainer config ------------------------------

RESEARCH_OPTIONS = [
    "trainer.accumulate_grad_batches=2",
    "trainer.gradient_clip_val=0.5",
    "trainer.gradient_clip_algorithm=value",
    "trainer.val_check_interval=0.5",
    "trainer.check_val_every_n_epoch=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.log_every_n_steps=5",
    "trainer.deterministic=true",
    "trainer.max_steps=100",
]


@pytest.mark.parametrize("trainer", ["default", "cpu", "gpu", "ddp", "ddp_cpu"])
def test_every_trainer_config_takes_the_research_options_as_written(trainer, tmp_path):
    cfg = compose_train([f"trainer={trainer}", *RESEARCH_OPTIONS], tmp_path)
    assert cfg.trainer.accumulate_grad_batches == 2 and cfg.trainer.gradient_clip_algorithm == "value"
    if trainer in ("default", "cpu"):  # the others need GPUs or start processes
        built = build(cfg.trainer, "trainer", logger=False)
        assert isinstance(built, Trainer) and built.accumulate_grad_batches == 2 and built.val_check_interval == 0.5


def test_the_debug_configs_still_set_the_trainer_keys_they_share_with_the_trainer_config(tmp_path):
    built = build(compose_train(["debug=overfit", "trainer=cpu"], tmp_path).trainer, "trainer", logger=False)
    assert built.overfit_batches == 3 and built.max_epochs == 40  # over the trainer config's overfit_batches: 0.0


def test_a_trainer_setting_lightning_refuses_is_one_error_line(tiny_data_dir, tmp_path):
    # debug=limit keeps 5% of the training batches: on a split of a few batches that is less than one.
    args = tiny_mlp_args(tiny_data_dir, tmp_path, "debug=limit", "data.batch_size=64", "logger=none")
    result = run_main("train.py", *args, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr[-2000:]
    assert "limit_train_batches" in result.stderr and "Traceback" not in result.stdout + result.stderr


def test_accumulate_grad_batches_as_written_takes_one_step_per_two_batches(tiny_data_dir, tmp_path):
    args = ["trainer.max_epochs=1", "trainer.limit_train_batches=4", "data.batch_size=32", "test=false", "logger=none"]
    cfg = compose_train(tiny_mlp_args(tiny_data_dir, tmp_path, *args, "trainer.accumulate_grad_batches=2"), tmp_path)
    train(cfg)
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2


# -- 3 and 6: eval.py's batch size and progress bar ------------------------------------------------------


class BatchProbe(Callback):
    """Added with +callbacks.probe=...: records the first test batch's size and the trainer's progress bars."""

    seen: list[tuple[int, int]] = []

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == 0:
            bars = sum(isinstance(callback, ProgressBar) for callback in trainer.callbacks)
            BatchProbe.seen.append((len(batch[0]), bars))


PROBE = "+callbacks.probe={_target_: test_journeys.BatchProbe}"


@pytest.mark.parametrize(
    "options, batch, bars",
    [
        (["data.batch_size=7"], 7, 1),  # the documented key: the test batch size (the saved one is 1024)
        (["data.eval_batch_size=5", "trainer.enable_progress_bar=false"], 5, 0),  # the flag alone turns the bar off
        (["callbacks.progress_bar=null"], 1024, 0),
    ],
)
def test_eval_honours_the_batch_size_and_the_progress_bar_settings_of_train(
    options, batch, bars, two_epoch_checkpoint, tmp_path
):
    BatchProbe.seen.clear()
    run_main(
        "eval.py",
        f"ckpt_path={two_epoch_checkpoint}",
        f"paths.root_dir={tmp_path}",
        "trainer.limit_test_batches=1",
        PROBE,
        *options,
    )
    assert BatchProbe.seen == [(min(batch, 200), bars)]  # the tiny test split has 200 images


# -- 2: the command an interrupted run prints works as printed ---------------------------------------------


class CtrlC(Callback):
    """Added with +callbacks.ctrl_c=...: a Ctrl-C once per test, after the first training batch or in the test."""

    fired = False

    def __init__(self, stage: str = "train"):
        self.stage = stage

    def _press(self) -> None:
        if not CtrlC.fired:
            CtrlC.fired = True
            signal.raise_signal(signal.SIGINT)

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.stage == "train":
            self._press()

    def on_test_batch_start(self, trainer, *args) -> None:
        # Testing installs no signal handler: a Ctrl-C there is Python's KeyboardInterrupt, raised here directly
        # (a raised SIGINT would meet the handler of whatever runs the test, e.g. an xdist worker's default).
        if self.stage == "test" and not CtrlC.fired:
            CtrlC.fired = True
            raise KeyboardInterrupt


def printed_command(stderr: str, after: str) -> list[str]:
    """The command on the line after ``after``, as the shell would split it."""
    lines = stderr.splitlines()
    command = next(lines[i + 1] for i, line in enumerate(lines) if line.endswith(after))
    return shlex.split(command)


@pytest.mark.slow
def test_an_interrupted_optuna_trial_prints_a_resume_command_that_runs(tiny_data_dir, tmp_path):
    CtrlC.fired = False
    database = tmp_path / "study.db"
    result = run_main(
        "train.py",
        "-m",
        "hydra/sweeper=litvision_optuna",
        "+optimized_metric=val/acc_best",
        f"hydra.sweeper.storage={database}",
        "hydra.sweeper.study_name=journey",
        "hydra.sweeper.n_trials=1",
        "hydra.sweeper.pruner={_target_: optuna.pruners.MedianPruner}",
        "model.optimizer.lr=choice(0.01,0.02)",
        *tiny_mlp_args(tiny_data_dir, tmp_path, "trainer.max_epochs=1", "trainer.limit_train_batches=3", "logger=none"),
        "trainer.limit_val_batches=1",
        "+callbacks.ctrl_c={_target_: test_journeys.CtrlC}",
        "test=false",
        check=False,
    )
    assert result.returncode == 130, result.stderr[-3000:]
    assert "rerun the sweep command to continue the sweep" in result.stderr
    command = printed_command(result.stderr, "resume with:")
    assert command[:2] == ["python", "scripts/train.py"] and not any("optuna_pruning" in arg for arg in command)
    trial = optuna.load_study(study_name="journey", storage=f"sqlite:///{database}").trials[0]
    assert trial.state.name == "FAIL"  # the study has closed it: the resumed run must not report to it

    run_main(command[1].removeprefix("scripts/"), *command[2:])  # as printed; fails on a traceback or exit status
    resumed = list((tmp_path / "logs" / "train" / "runs").glob("*/metrics.json"))
    assert len(resumed) == 1 and json.loads(resumed[0].read_text())["epochs"] == 1


@pytest.mark.slow
def test_a_run_stopped_while_testing_prints_an_eval_command_that_runs(tiny_data_dir, tmp_path):
    CtrlC.fired = False
    run_dir = tmp_path / "run"
    args = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "logger=none"]
    args += ["trainer.limit_test_batches=2", f"hydra.run.dir={run_dir}"]
    result = run_main(
        "train.py",
        *tiny_mlp_args(tiny_data_dir, tmp_path, *args),
        "+callbacks.ctrl_c={_target_: test_journeys.CtrlC, stage: test}",
        check=False,
    )
    assert result.returncode == 130, result.stderr[-3000:]
    command = printed_command(result.stderr, "training was complete; test it with:")
    assert command[:2] == ["python", "scripts/eval.py"]
    assert json.loads((run_dir / "status.json").read_text())["resume"] == shlex.join(command)
    evaluated = run_main("eval.py", *command[2:], f"paths.root_dir={tmp_path}", "callbacks.progress_bar=null")
    assert "test/acc" in evaluated.stdout + evaluated.stderr


# -- 10: docs/predict.md's ONNX snippet gives predict.py's answer -------------------------------------------


def onnx_snippet() -> str:
    """The Python block of docs/predict.md's ONNX section, as a reader copies it."""
    text = (ROOT / "docs" / "predict.md").read_text()
    section = text[text.index("## Exporting to ONNX") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_onnx_snippet_of_the_docs_gives_predict_pys_answer_on_non_square_images(
    two_epoch_checkpoint, tmp_path, monkeypatch
):
    rng = np.random.default_rng(3)
    images = tmp_path / "images"
    images.mkdir()
    # (width, height, mode, format): wide and tall, grayscale and colour, PNG and JPEG (decoded at a reduced scale)
    for i, (width, height, mode, fmt) in enumerate(
        [
            (90, 40, "L", "PNG"),
            (41, 97, "RGB", "PNG"),
            (300, 120, "RGB", "JPEG"),
            (64, 200, "L", "JPEG"),
            (29, 28, "L", "PNG"),
        ]
    ):
        coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)  # blobs, not noise
        picture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC).convert(mode)
        picture.save(images / f"{i}.{fmt.lower()}", fmt)
    export_dir = tmp_path / "export"
    run_main(
        "export.py",
        f"ckpt_path={two_epoch_checkpoint}",
        "format=onnx",
        f"output={export_dir / 'last.onnx'}",
        f"hydra.run.dir={tmp_path / 'export-run'}",
    )
    run_main(
        "predict.py", f"ckpt_path={two_epoch_checkpoint}", f"inputs={images}", f"hydra.run.dir={tmp_path / 'predict'}"
    )
    with (tmp_path / "predict" / "predictions.csv").open() as stream:
        predicted = {Path(row["path"]).name: (row["class_1"], float(row["prob_1"])) for row in csv.DictReader(stream)}
    assert len(predicted) == 5

    snippet = onnx_snippet()
    monkeypatch.chdir(export_dir)  # the snippet opens last.onnx and last.onnx.json where it runs
    for name, (label, probability) in predicted.items():
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(snippet.replace('"photo.jpg"', repr(str(images / name))), {})
        got_label, got_probability = printed.getvalue().split()
        assert (got_label, float(got_probability)) == (label, pytest.approx(probability, abs=2e-6)), name
