"""Training end to end: fast_dev_run per dataset, train -> eval, resume, multirun, bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from lightning import Callback

from conftest import QUIET, compose_train, run_main, run_script
from litvision.support.checkpoint import read_checkpoint
from litvision.support.instantiate import build
from litvision.tasks.train import train

DATASETS = ["mnist", "fashion_mnist", "cifar10"]


def tiny_run_args(data_dir: Path, root: Path, *extra: str) -> list[str]:
    """Script arguments for a quick run on the tiny files, writing under ``root``."""
    return [f"paths.root_dir={root}", f"data.data_dir={data_dir}", "data.val_size=100", *QUIET, *extra]


@pytest.mark.parametrize("dataset", DATASETS)
def test_fast_dev_run_on_each_dataset(dataset, tiny_data_dir, tmp_path):
    cfg = compose_train(
        [f"data={dataset}", "debug=fdr", f"data.data_dir={tiny_data_dir}", "data.val_size=100", *QUIET], tmp_path
    )
    metrics = train(cfg)
    assert {"train/loss", "val/acc", "test/acc"} <= metrics.keys()
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values())


@pytest.mark.slow
def test_train_then_eval_gives_the_same_test_accuracy(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    trained = run_main(
        "train.py",
        *tiny_run_args(
            tiny_data_dir,
            tmp_path,
            "data=mnist",
            "trainer.max_epochs=2",
            f"hydra.run.dir={run_dir}",
            "logger=[tensorboard,csv]",  # not many: the installed trackers' start-up (tests/test_recipes.py has them)
        ),
    )
    assert "test/acc" in trained.stdout
    checkpoints = run_dir / "checkpoints"
    best = [p for p in checkpoints.glob("epoch_*.ckpt")]
    assert len(best) == 1 and (checkpoints / "last.ckpt").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*")), "no TensorBoard event file"
    train_acc = _last_metric(run_dir / "csv" / "metrics.csv", "test/acc")
    assert train_acc > 0.5, "the tiny dataset is learnable; chance is 0.1"

    # eval.py needs only the checkpoint: model and data come from inside it.
    evaluated = run_main(
        "eval.py",
        f"ckpt_path={best[0]}",
        f"paths.root_dir={tmp_path}",
        "logger=csv",
        f"hydra.run.dir={tmp_path / 'eval'}",
    )
    eval_acc = _last_metric(tmp_path / "eval" / "csv" / "metrics.csv", "test/acc")
    assert eval_acc == pytest.approx(train_acc, abs=1e-6)
    assert "test/acc" in evaluated.stdout


@pytest.mark.slow
def test_checkpoint_holds_plain_configs_and_loads_weights_only(tiny_data_dir, tmp_path):
    cfg = compose_train(
        [
            "data=cifar10",
            "model=resnet",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "test=false",
            "data.batch_size=16",
            f"data.data_dir={tiny_data_dir}",
            "data.val_size=100",
            *QUIET,
        ],
        tmp_path,
    )
    train(cfg)
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")  # weights_only=True inside
    hparams = checkpoint["hyper_parameters"]
    assert hparams["net"]["_target_"] == "litvision.models.resnet.ResNet"
    assert hparams["optimizer"]["_target_"] == "torch.optim.SGD" and hparams["label_smoothing"] == 0.1
    assert hparams["data_config"]["class_names"][0] == "airplane"
    assert type(hparams["net"]) is dict and type(hparams["data_config"]["mean"]) is list


@pytest.mark.slow
def test_resume_continues_from_the_saved_epoch(tiny_data_dir, tmp_path):
    # Batches of 64: enough steps an epoch that the one-cycle schedule is planned over the run's own length.
    first = tmp_path / "first"
    run_main(
        "train.py",
        *tiny_run_args(
            tiny_data_dir,
            tmp_path,
            "trainer.max_epochs=2",
            "data.batch_size=64",
            "logger=csv",
            f"hydra.run.dir={first}",
        ),
    )
    last = first / "checkpoints" / "last.ckpt"
    saved = read_checkpoint(last)
    assert saved["epoch"] == 1
    steps_per_epoch = saved["global_step"] // 2

    assert saved["lr_schedulers"][0]["total_steps"] == 2 * steps_per_epoch

    # Training longer than planned: the schedule is re-planned over 3 epochs instead of stepping past its end.
    resumed = tmp_path / "resumed"
    result = run_main(
        "train.py",
        *tiny_run_args(
            tiny_data_dir,
            tmp_path,
            "trainer.max_epochs=3",
            "data.batch_size=64",
            "logger=csv",
            f"ckpt_path={last}",
            f"hydra.run.dir={resumed}",
        ),
    )
    after = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert after["epoch"] == 2 and after["global_step"] == 3 * steps_per_epoch
    # Only the third epoch was trained in the resumed run.
    epochs = {row["epoch"] for row in _rows(resumed / "csv" / "metrics.csv") if row.get("train/loss")}
    assert epochs == {"2"}
    # The one-cycle schedule went on from where it was, instead of restarting, over the new length.
    replanned = f"re-planned over {3 * steps_per_epoch} steps (was {2 * steps_per_epoch} steps)"
    assert replanned in result.stdout + result.stderr
    scheduler = after["lr_schedulers"][0]
    assert scheduler["last_epoch"] == scheduler["total_steps"] == 3 * steps_per_epoch
    assert after["optimizer_states"][0]["state"], "optimizer moments were not saved"


@pytest.mark.slow
def test_resume_with_another_model_is_refused_clearly(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_main(
        "train.py",
        *tiny_run_args(
            tiny_data_dir, tmp_path, "trainer.max_epochs=1", "test=false", "logger=csv", f"hydra.run.dir={run_dir}"
        ),
    )
    result = run_main(
        "train.py",
        *tiny_run_args(tiny_data_dir, tmp_path, "model=mlp", f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"),
        check=False,
    )
    assert result.returncode == 2
    assert "different network" in result.stderr and "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_multirun_gives_one_run_dir_per_job_in_one_sweep_dir(tiny_data_dir, tmp_path):
    run_main(
        "train.py",
        "-m",
        "model=mlp,lenet",
        "data=mnist,fashion_mnist",
        "trainer.max_epochs=1",
        *tiny_run_args(tiny_data_dir, tmp_path, "logger=csv"),
    )
    sweeps = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        assert (job / "checkpoints" / "last.ckpt").is_file()
        _last_metric(job / "csv" / "metrics.csv", "test/acc")  # asserts the test ran and was logged


@pytest.mark.parametrize(
    "args,expected",
    [
        (["ckpt_path=/no/such/file.ckpt"], "checkpoint not found"),
        (["model.net.widths=[32,64,128,256,512]"], "small_cnn needs images of at least 32x32"),
        (["model.optimizer.lr=fast"], "invalid model.optimizer options"),
        (["model.scheduler.pct_start=2"], "invalid model.scheduler options"),
        (["data.val_size=-1"], "data.val_size"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_traceback(args, expected, tmp_path):
    result = run_main("train.py", f"paths.root_dir={tmp_path}", *QUIET, *args, check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.slow
def test_missing_cifar10_offline_names_the_dataset_places_and_fixes(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script(
        "train.py",
        "data=cifar10",
        f"data.data_dir={empty}",
        f"paths.root_dir={tmp_path}",
        *QUIET,
        check=False,
        timeout=300,
    )
    assert result.returncode == 2
    assert "CIFAR-10 not found" in result.stderr and str(empty / "cifar-10-batches-py") in result.stderr
    assert "Fix:" in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert [p.name for p in empty.iterdir()] == [], "a failed download left files behind"


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _last_metric(path: Path, name: str) -> float:
    values = [float(row[name]) for row in _rows(path) if row.get(name)]
    assert values, f"{name} not in {path}"
    return values[-1]


class _SeenPerEpoch(Callback):
    """Whether each stage's metrics held anything when an epoch's first batch came (False: they were reset)."""

    def __init__(self):
        self.at_start: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            self._train = pl_module.train_metrics["acc"].update_called or pl_module.train_loss.update_called

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0 and not trainer.sanity_checking:
            self.at_start.append(
                (self._train, pl_module.val_metrics["acc"].update_called or pl_module.val_loss.update_called)
            )


@pytest.mark.parametrize("tta_flip", [False, True])
def test_epoch_metrics_count_each_epoch_once_and_match_a_direct_count(tta_flip, tiny_data_dir, tmp_path):
    cfg = compose_train(
        [
            "data=mnist",
            "model=mlp",
            f"model.tta_flip={tta_flip}",
            "trainer.max_epochs=3",
            f"data.data_dir={tiny_data_dir}",
            "data.val_size=100",
            "data.batch_size=32",
            "test=false",
            "logger=none",
            *QUIET,
        ],
        tmp_path,
    )
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    seen = _SeenPerEpoch()
    trainer = build(cfg.trainer, "trainer", callbacks=[seen], logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    assert seen.at_start == [(False, False)] * 3, "train/val metrics carried examples over from an earlier epoch"

    # val/acc of the last epoch is the final net's accuracy on the validation split, counted here directly
    # (with tta_flip, from the mean logits of each image and its mirror image).
    images, labels = datamodule.splits["val"]
    model.eval()
    with torch.no_grad():
        batch = datamodule.prepare_batch(images, augment=False)
        logits = (model(batch) + model(batch.flip(-1))) / 2 if tta_flip else model(batch)
        predictions = logits.argmax(1)
    direct = (predictions == labels).float().mean().item()
    assert float(trainer.callback_metrics["val/acc"]) == pytest.approx(direct, abs=1e-6)
    assert 0.0 < float(trainer.callback_metrics["train/loss"]) < 10.0


def test_train_accuracy_is_the_share_of_training_examples_the_net_got_right(tiny_data_dir, tmp_path):
    # lr=0 keeps the net as it was built (the MLP has no dropout or batch norm), so train/acc can be
    # counted again here over the whole training split; the last batch is a smaller one.
    cfg = compose_train(
        [
            "data=mnist",
            "model=mlp",
            "trainer.max_epochs=1",
            f"data.data_dir={tiny_data_dir}",
            "data.val_size=100",
            "data.batch_size=48",
            "model.optimizer.lr=0",
            "model.scheduler=null",
            "test=false",
            "logger=none",
            *QUIET,
        ],
        tmp_path,
    )
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
    trainer = build(cfg.trainer, "trainer", logger=False, enable_checkpointing=False)
    trainer.fit(model, datamodule=datamodule)
    images, labels = datamodule.splits["train"]
    assert len(labels) % 48, "the test wants a smaller last batch"
    with torch.no_grad():
        logits = model(datamodule.prepare_batch(images, augment=False))
    assert float(trainer.callback_metrics["train/acc"]) == pytest.approx(
        (logits.argmax(1) == labels).float().mean().item(), abs=1e-6
    )
    loader = datamodule.train_dataloader()  # the batches of epoch 0 again, in the same order
    loader.sampler.set_epoch(0)
    with torch.no_grad():  # summed per batch: train/loss is the mean over the epoch's examples
        loss_sums = [
            torch.nn.functional.cross_entropy(model(datamodule.prepare_batch(x, augment=False)), y, reduction="sum")
            for x, y in loader
        ]
    assert float(trainer.callback_metrics["train/loss"]) == pytest.approx(float(sum(loss_sums)) / len(labels), rel=1e-5)


def test_training_options_run_end_to_end(tiny_data_dir, tmp_path):
    cfg = compose_train(
        [
            "data=mnist",
            "debug=fdr",
            f"data.data_dir={tiny_data_dir}",
            "data.val_size=100",
            "data.loader=dataloader",
            "model.channels_last=false",
            "data.augment.flip=true",
            "data.augment.crop_padding=2",
            "data.augment.cutout_size=4",
            *QUIET,
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert {"train/loss", "val/acc", "test/acc"} <= metrics.keys()


def test_last_ckpt_holds_the_last_epoch_also_when_val_acc_did_not_improve(tiny_data_dir, tmp_path):
    # lr=0: the net never changes, so val/acc never improves after epoch 0 and the best checkpoint stays
    # epoch 0; last.ckpt, what a resume starts from, must still be the last epoch.
    overrides = ["data=mnist", "model=mlp", "trainer.max_epochs=2", "test=false", "logger=none", "model.optimizer.lr=0"]
    cfg = compose_train([f"data.data_dir={tiny_data_dir}", "data.val_size=100", *QUIET, *overrides], tmp_path)
    train(cfg)
    checkpoints = tmp_path / "checkpoints"
    assert [p.name for p in checkpoints.glob("epoch_*.ckpt")] == ["epoch_000.ckpt"]
    assert read_checkpoint(checkpoints / "last.ckpt")["epoch"] == 1
