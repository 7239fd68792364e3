"""Options and everyday journeys: invalid values stop before the data loads, optimizer and schedule
groups, training longer from a checkpoint, a drawn seed."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path
from typing import Annotated

import pytest
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from conftest import QUIET, compose_train, run_main, run_script
from litvision.support.arguments import AtLeast, OneOf, check_arguments
from litvision.support.checkpoint import read_checkpoint
from litvision.support.cli import run_task
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build
from litvision.tasks.train import train

# One invalid value per numeric or enumerated option of every config group, and a piece of the one
# `error:` line it must give. The data folder is empty and downloads are off, so an option that slipped
# through would end in "not found" instead, after the objects were built.
INVALID = [
    # data (src/litvision/data/datamodule.py)
    (["data.batch_size=0"], "data.batch_size"),
    (["data.eval_batch_size=0"], "data.eval_batch_size"),
    (["data.val_size=-1"], "data.val_size"),
    (["data.split_seed=-1"], "data.split_seed"),
    (["data.shuffle_seed=-3"], "data.shuffle_seed"),
    (["data.num_workers=-1"], "data.num_workers"),
    (["data.image_size=0"], "data.image_size"),
    (["data.in_channels=3"], "data.in_channels"),
    (["data.std=[0]"], "data.std"),
    (["data.loader=bogus"], "data.loader"),
    (["data.download=maybe"], "data.download"),
    (["data.keep_on_device=2"], "data.keep_on_device"),
    (["data.augment.crop_padding=-1"], "data.augment.crop_padding"),
    (["data.augment.crop_padding=28"], "data.augment.crop_padding"),
    (["data.augment.flip=maybe"], "data.augment.flip"),
    (["data.augment.cutout_size=99"], "data.augment.cutout_size"),
    (["+data.augment.rotate=10"], "data.augment has unknown key(s) rotate"),
    # model (src/litvision/classifier.py) and its optimizer and scheduler groups
    (["model.label_smoothing=1.5"], "model.label_smoothing"),
    (["model.scheduler_interval=hourly"], "model.scheduler_interval"),
    (["model.channels_last=maybe"], "model.channels_last"),
    (["model.compile=maybe"], "model.compile"),
    (["model.optimizer.lr=-1"], "invalid model.optimizer options"),
    (["model.optimizer.weight_decay=-1"], "invalid model.optimizer options"),
    (["model/optimizer=adam", "model.optimizer.lr=-1"], "invalid model.optimizer options"),
    (["model/optimizer=sgd", "model.optimizer.momentum=-0.5"], "invalid model.optimizer options"),
    (["model/optimizer=rmsprop", "model.optimizer.alpha=-1"], "invalid model.optimizer options"),
    (["model/optimizer=rmsprop", "+model.optimizer.fused=true"], "no fused kernel"),
    (["model.scheduler.pct_start=2"], "invalid model.scheduler options"),
    (["model/scheduler=cosine", "model.scheduler.warmup_epochs=-1"], "warmup_epochs must be >= 0"),
    (["model/scheduler=cosine", "model.scheduler.warmup_start_factor=0"], "warmup_start_factor"),
    (["model/scheduler=cosine", "model.scheduler.eta_min=-1"], "eta_min"),
    (["model/scheduler=step", "model.scheduler.step_size=0"], "model.scheduler.step_size"),
    (["model/scheduler=step", "model.scheduler.gamma=0"], "model.scheduler.gamma"),
    (["model/scheduler=plateau", "model.scheduler.mode=up"], "invalid model.scheduler options"),
    (["model/scheduler=plateau", "model.scheduler.factor=1.5"], "invalid model.scheduler options"),
    (["model/scheduler=plateau", "model.scheduler.patience=-1"], "model.scheduler.patience"),
    (["model/scheduler=plateau", "model.scheduler.monitor=val/accuracy"], "model.scheduler.monitor"),
    (["model/scheduler=plateau", "model.scheduler_interval=step"], "model.scheduler_interval"),
    # trainer: Lightning's own checks, raised while the Trainer is built
    (["trainer.max_epochs=-5"], "invalid trainer config"),
    (["trainer.precision=bogus"], "invalid trainer config"),
    (["trainer.accelerator=bogus"], "invalid trainer config"),
    (["trainer.devices=0"], "invalid trainer config"),
    (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch"),  # litvision.support.options from here
    (["trainer.min_epochs=-3"], "trainer.min_epochs"),
    (["trainer.log_every_n_steps=-1"], "trainer.log_every_n_steps"),
    (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
    (["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val"),
    (["trainer.deterministic=maybe"], "trainer.deterministic"),
    (["trainer.gradient_clip_algorithm=bogus"], "trainer.gradient_clip_algorithm"),
    (["trainer.limit_train_batches=-1"], "invalid trainer config"),
    (["trainer.max_steps=-5"], "invalid trainer config"),
    # callbacks
    (["callbacks.val_predictions.every_n_epochs=0"], "invalid callbacks.val_predictions config"),
    (["callbacks.confusion_matrix.every_n_epochs=0"], "invalid callbacks.confusion_matrix config"),
    (["callbacks.model_checkpoint.save_top_k=-2"], "invalid callbacks.model_checkpoint config"),
    (["callbacks.model_checkpoint.mode=up"], "invalid callbacks.model_checkpoint config"),
    (["callbacks=[default,early_stopping]", "callbacks.early_stopping.mode=up"], "callbacks.early_stopping"),
]


def test_every_invalid_option_stops_with_one_error_line_before_the_data_loads(tmp_path, capsys):
    # In this process (run_task is what scripts/train.py runs): a subprocess per row would cost seconds each.
    # Composing costs a few tenths of a second, so each choice of groups is composed once and the row's
    # key=value overrides are merged onto a copy of it.
    empty = tmp_path / "empty"
    empty.mkdir()
    nowhere = [f"data.data_dir={empty}", "data.search_dirs=[]", "data.download=false", "model=mlp", "logger=none"]
    composed: dict[tuple[str, ...], DictConfig] = {}
    failures = []
    for args, expected in INVALID:
        groups = tuple(arg for arg in args if "/" in arg.split("=")[0] or arg.startswith("callbacks="))
        if groups not in composed:
            composed[groups] = compose_train([*nowhere, *QUIET, *groups], tmp_path)
        cfg = copy.deepcopy(composed[groups])
        with open_dict(cfg):
            cfg.merge_with(OmegaConf.from_dotlist([arg.lstrip("+") for arg in args if arg not in groups]))
        try:
            run_task(train, cfg)
            code = 0
        except SystemExit as stopped:
            code = stopped.code
        except Exception as err:  # noqa: BLE001 - listed with the other failures below
            code = f"{type(err).__name__}: {err}"
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        if code != 2 or len(errors) != 1 or expected not in errors[0] or "Traceback" in err:
            failures.append(f"{' '.join(args)}: exit {code}, {errors or err[-300:]}")
    assert not failures, "\n".join(failures)
    assert list(empty.iterdir()) == []


@pytest.mark.slow
def test_the_script_prints_one_error_line_and_no_traceback(tmp_path):
    result = run_script("train.py", f"paths.root_dir={tmp_path}", *QUIET, "model.label_smoothing=1.5", check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: model.label_smoothing must be in [0, 1] (got 1.5)"]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py", "export.py", "model_summary.py"])
def test_a_null_config_group_says_how_to_turn_it_off_instead_of_a_traceback(script, tmp_path):
    # Hydra itself answers logger=null with a ValueError traceback before any task code runs.
    result = run_main(script, "logger=null", f"hydra.run.dir={tmp_path}", check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines() == [
        "error: logger=null: config group logger takes one of csv, many, mlflow, none, tensorboard, wandb; "
        "to turn it off: logger=none"
    ]
    assert not list(tmp_path.iterdir()), "nothing was run"
    turned_off = run_main("train.py", "model/scheduler=null", f"hydra.run.dir={tmp_path}", check=False)
    assert turned_off.returncode == 2 and "to turn it off: model/scheduler=none" in turned_off.stderr


def _tiny(data_dir: Path, *extra: str) -> list[str]:
    """A short run on the tiny MNIST files: the MLP, 2 training batches an epoch, no test."""
    return [
        "data=mnist",
        f"data.data_dir={data_dir}",
        "data.val_size=100",
        "data.batch_size=32",
        "model=mlp",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
        "logger=none",
        *QUIET,
        *extra,
    ]


def test_optimizer_and_schedule_groups_land_at_model_optimizer_and_model_scheduler(tmp_path):
    expected = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}
    for choice, name in expected.items():
        model = build(compose_train([f"model/optimizer={choice}"], tmp_path).model, "model")
        assert model.optimizer_factory.func.__name__ == name
        assert ("fused" in model.optimizer_factory.keywords) == (choice != "rmsprop")  # torch has no fused RMSprop
    # The CIFAR nets choose SGD with momentum and Nesterov; the tutorial recipe is plain SGD with its own lr.
    resnet = compose_train(["model=resnet"], tmp_path).model.optimizer
    assert (resnet._target_, resnet.lr, resnet.momentum, resnet.nesterov) == ("torch.optim.SGD", 0.1, 0.9, True)
    recipe = compose_train(["model/optimizer=sgd", "model.optimizer.lr=0.5"], tmp_path).model.optimizer
    assert (recipe.lr, recipe.momentum, recipe.nesterov) == (0.5, 0.0, False)
    none = build(compose_train(["model/scheduler=none"], tmp_path).model, "model")
    assert none.scheduler_factory is None
    plateau = build(compose_train(["model/scheduler=plateau"], tmp_path).model, "model")
    assert plateau.scheduler_monitor == "val/acc" and "monitor" not in plateau.scheduler_factory.keywords
    result = run_main("train.py", "--help")
    assert "model/optimizer: adam, adamw, rmsprop, sgd" in result.stdout
    assert "model/scheduler: cosine, none, onecycle, plateau, step" in result.stdout


@pytest.mark.parametrize(
    "scheduler,lrs",
    [
        # Per epoch over 3 epochs at the MLP's lr 0.001: the learning rate each epoch started with.
        ("cosine", [1e-4, 1e-3, 5e-4]),  # one warm-up epoch from 0.1 x lr, then cosine over the other two
        ("step", [1e-3, 1e-3, 5e-4]),  # halved every 2 epochs
        ("plateau", None),  # follows val/acc: that it ran with Lightning's monitor
        ("none", [1e-3, 1e-3, 1e-3]),
    ],
)
def test_each_schedule_choice_trains(scheduler, lrs, tiny_data_dir, tmp_path):
    cfg = compose_train(
        _tiny(tiny_data_dir, f"model/scheduler={scheduler}", "trainer.max_epochs=3", "logger=csv"), tmp_path
    )
    train(cfg)
    if lrs is not None:
        with (tmp_path / "csv" / "metrics.csv").open() as handle:
            seen = [float(row["lr-AdamW"]) for row in csv.DictReader(handle) if row.get("lr-AdamW")]
        assert seen == pytest.approx(lrs, abs=1e-9)
    saved = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert bool(saved["lr_schedulers"]) == (scheduler != "none")


def test_a_resume_with_the_same_max_epochs_reproduces_the_uninterrupted_run(tiny_data_dir, tmp_path):
    # After a crash: the plan in the checkpoint is this run's own, so nothing is re-planned.
    every_epoch = ["callbacks.model_checkpoint.save_top_k=-1", "trainer.max_epochs=3", "model/scheduler=cosine"]
    whole = compose_train(_tiny(tiny_data_dir, *every_epoch), tmp_path / "whole")
    train(whole)
    after_two = tmp_path / "whole" / "checkpoints" / "epoch_001.ckpt"
    resumed = compose_train(_tiny(tiny_data_dir, *every_epoch, f"ckpt_path={after_two}"), tmp_path / "resumed")
    train(resumed)
    uninterrupted = read_checkpoint(tmp_path / "whole" / "checkpoints" / "last.ckpt")
    continued = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert continued["global_step"] == uninterrupted["global_step"]
    assert continued["lr_schedulers"] == uninterrupted["lr_schedulers"]
    for name, weights in uninterrupted["state_dict"].items():
        assert torch.equal(continued["state_dict"][name], weights), name

    # Training longer from the same checkpoint: the cosine schedule is re-planned over 4 epochs (one warm-up,
    # three of cosine) and the resumed epochs start at the new plan's rates instead of the old end's 0.
    longer = compose_train(
        _tiny(tiny_data_dir, *every_epoch, "trainer.max_epochs=4", "logger=csv", f"ckpt_path={after_two}"),
        tmp_path / "longer",
    )
    train(longer)
    with (tmp_path / "longer" / "csv" / "metrics.csv").open() as handle:
        rates = [float(row["lr-AdamW"]) for row in csv.DictReader(handle) if row.get("lr-AdamW")]
    assert rates == pytest.approx([7.5e-4, 2.5e-4], abs=1e-9)


def test_a_null_seed_is_drawn_logged_and_saved_so_the_run_can_be_repeated(tiny_data_dir, tmp_path):
    # With a tutorial recipe as a user types it: Adam at lr 0.005 and no schedule.
    recipe = ["model/optimizer=adam", "model/scheduler=none", "model.optimizer.lr=0.005", "trainer.max_epochs=1"]
    args = [f"paths.root_dir={tmp_path}", *_tiny(tiny_data_dir, *recipe)]
    drawn = run_main("train.py", *args, "seed=null", f"hydra.run.dir={tmp_path / 'drawn'}")
    lines = [line for line in (drawn.stdout + drawn.stderr).splitlines() if "(drawn)" in line]
    assert len(lines) == 1, drawn.stdout[-2000:]
    seed = int(lines[0].split("seed=")[1].split()[0])
    record = json.loads((tmp_path / "drawn" / "metrics.json").read_text())
    saved = read_checkpoint(tmp_path / "drawn" / "checkpoints" / "last.ckpt")
    hparams = saved["hyper_parameters"]
    assert record["seed"] == hparams["seed"] == hparams["data_config"]["shuffle_seed"] == seed
    assert hparams["optimizer"]["_target_"] == "torch.optim.Adam" and hparams["optimizer"]["lr"] == 0.005
    assert not saved["lr_schedulers"]

    run_main("train.py", *args, f"seed={seed}", f"hydra.run.dir={tmp_path / 'repeated'}")
    repeated = json.loads((tmp_path / "repeated" / "metrics.json").read_text())
    assert repeated["metrics"]["train/loss"] == record["metrics"]["train/loss"]
    assert repeated["seed"] == seed


def test_an_argument_is_checked_against_its_own_annotation():
    """The data modules' per-argument rules are their signatures' annotations (support/arguments.py)."""

    def build(
        size: Annotated[int, AtLeast(1)] = 1,
        rate: Annotated[float, AtLeast(0)] | None = None,
        mode: Annotated[str | bool, OneOf("auto", True, False)] = "auto",
        flag: bool = True,
        free: str = "",
    ):
        pass

    check_arguments(build, {"size": 3, "rate": None, "mode": False, "flag": False, "free": "x"}, "data")
    for values, line in [
        ({"size": 0}, "data.size must be an integer >= 1 (got 0)"),
        ({"size": True}, "data.size must be an integer >= 1 (got True)"),  # a bool is no integer
        ({"size": 2.5}, "data.size must be an integer >= 1 (got 2.5)"),
        ({"rate": -1}, "data.rate must be null or a number >= 0 (got -1)"),
        ({"mode": 1}, "data.mode must be auto, true or false (got 1)"),  # 1 == True, but not a bool
        ({"flag": "yes"}, "data.flag must be true or false (got 'yes')"),
    ]:
        with pytest.raises(LitvisionError) as raised:
            check_arguments(build, values, "data")
        assert str(raised.value) == line
