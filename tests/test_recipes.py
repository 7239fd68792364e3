"""The training recipes from the libraries: MixUp/CutMix, per-image policies and erasing, EMA, LR finder, trackers."""

from __future__ import annotations

import json
import logging
import struct
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from lightning import Callback, Trainer
from torchvision.transforms import v2

from conftest import QUIET, compose_train
from litvision.callbacks.ema import EMA
from litvision.data.augment import Augmentation, each_image
from litvision.support.checkpoint import read_checkpoint
from litvision.support.instantiate import build, plain
from litvision.tasks.eval import evaluate
from litvision.tasks.predict import load_classifier
from litvision.tasks.train import train


def tiny(tiny_data_dir, tmp_path, *extra: str, quiet: list[str] = QUIET):
    """A composed train config on the tiny MNIST files: an MLP, no logger, the progress bar off."""
    base = [f"data.data_dir={tiny_data_dir}", "data=mnist", "data.val_size=100", "model=mlp", "logger=none"]
    return compose_train([*base, *quiet, *extra], tmp_path)


# -- MixUp and CutMix ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("alphas", [{"mixup_alpha": 0.4}, {"cutmix_alpha": 1.0}, {"mix_prob": 0.0, "mixup_alpha": 1}])
def test_mixed_targets_sum_to_one_and_the_loss_is_the_soft_cross_entropy(alphas, tiny_data_dir, tmp_path):
    torch.manual_seed(0)
    images, labels = torch.randn(16, 1, 28, 28), torch.arange(16) % 10
    mixed, targets = Augmentation(num_classes=10, **alphas).mix(images, labels)
    assert targets.shape == (16, 10) and torch.allclose(targets.sum(dim=1), torch.ones(16))
    weight = targets.gather(1, labels[:, None]).squeeze(1)  # each image's own share
    if "mixup_alpha" in alphas and alphas.get("mix_prob", 1):  # lam * image + (1 - lam) * its neighbour
        lam = weight[0]
        assert torch.allclose(mixed, lam * images + (1 - lam) * images.roll(1, 0), atol=1e-6)
    if "cutmix_alpha" in alphas:  # a box of the neighbour: the pixel shares are the label shares
        from_self = (mixed == images).float().mean(dim=(1, 2, 3))
        assert torch.allclose(from_self, weight)
    if not alphas.get("mix_prob", 1):  # a batch left unmixed still carries (one-hot) soft targets
        assert torch.equal(mixed, images) and torch.equal(targets, F.one_hot(labels, 10).float())

    model = build(tiny(tiny_data_dir, tmp_path, "model.label_smoothing=0.1").model, "model").eval()
    logits = model(mixed)
    loss, _ = model._step((mixed, targets), "train")
    smoothed = targets * 0.9 + 0.1 / 10  # label smoothing on top of the mixed targets
    by_hand = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert torch.allclose(loss, by_hand, atol=1e-5)
    dominant = (logits.argmax(dim=1) == targets.argmax(dim=1)).float().mean()
    assert torch.allclose(model.train_metrics["acc"].compute(), dominant)  # train/acc: against the dominant label


def test_only_training_batches_carry_soft_targets(tiny_data_dir, tmp_path):
    datamodule = build(tiny(tiny_data_dir, tmp_path, "data.augment.mixup_alpha=0.2").data, "data")
    batch = (torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.arange(8))
    for training, shape in ((True, (8, 10)), (False, (8,))):
        datamodule.trainer = SimpleNamespace(training=training)  # what on_after_batch_transfer reads
        images, labels = datamodule.on_after_batch_transfer(batch, 0)
        assert images.dtype == torch.float32 and labels.shape == shape


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_a_run_with_every_augmentation_trains_on_both_loaders(loader, tiny_data_dir, tmp_path):
    augment = ["data.augment.policy=trivialaugment", "data.augment.erasing=0.5", "data.augment.mixup_alpha=0.2"]
    augment += ["data.augment.cutmix_alpha=1.0", "data.augment.crop_padding=2", "model.label_smoothing=0.1"]
    metrics = train(tiny(tiny_data_dir, tmp_path, "debug=fdr", "data.batch_size=32", f"data.loader={loader}", *augment))
    assert {"train/acc", "train/loss", "val/acc", "test/acc"} <= metrics.keys()
    assert all(torch.isfinite(torch.tensor(value)) for value in metrics.values())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.augment.policy=autoaugmnt", "data.augment.policy must be null or one of randaugment"),
        ("data.augment.erasing=1.5", "data.augment.erasing must be a number in [0, 1]"),
        ("data.augment.mixup_alpha=-1", "data.augment.mixup_alpha must be a number >= 0"),
        ("data.augment.mix_switch_prob=yes", "data.augment.mix_switch_prob must be a number in [0, 1]"),
    ],
)
def test_bad_augment_options_are_one_line(override, message, tiny_data_dir, tmp_path):
    from litvision.support.errors import LitvisionError

    with pytest.raises(LitvisionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        build(tiny(tiny_data_dir, tmp_path, override).data, "data")


# -- per-image policies and erasing ---------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment", "autoaugment"])
def test_each_image_of_a_batch_draws_its_own_policy_operations(policy):
    torch.manual_seed(0)
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    same = image.expand(32, 1, 28, 28).contiguous()
    augmented = Augmentation(num_classes=10, policy=policy).pixels(same)
    assert augmented.dtype == torch.uint8 and augmented.shape == same.shape
    assert len({bytes(sample.numpy()) for sample in augmented}) > 8  # many different outcomes
    # What the per-image loop is for: the policy given the batch draws once for all of it.
    whole = Augmentation(num_classes=10, policy=policy).policy(same)
    assert len({bytes(sample.numpy()) for sample in whole}) == 1


def test_random_erasing_erases_a_box_of_its_own_in_each_image():
    torch.manual_seed(0)
    ones = torch.ones(16, 1, 28, 28)
    erased = Augmentation(num_classes=10, erasing=1.0).normalized(ones)
    holes = [tuple((sample[0] == 0).nonzero().amin(0).tolist()) for sample in erased]  # top-left of each box
    assert all((sample == 0).any() for sample in erased) and len(set(holes)) > 8
    assert torch.equal(each_image(v2.RandomErasing(p=0.0), ones), ones)


# -- EMA of the weights -------------------------------------------------------------------------------------
class _Weights(Callback):
    """The net's floating-point weights after each optimizer step."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        state = pl_module.net.state_dict()
        self.steps.append({k: v.detach().clone() for k, v in state.items() if v.is_floating_point()})


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_weights_are_the_hand_rolled_average_of_the_steps(warmup, tiny_data_dir, tmp_path):
    cfg = tiny(tiny_data_dir, tmp_path, "data.batch_size=32")
    datamodule, model = build(cfg.data, "data"), build(cfg.model, "model", data_config=plain(cfg.data))
    weights, decay = _Weights(), 0.8
    trainer = Trainer(
        max_epochs=1, limit_train_batches=5, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[weights, EMA(decay=decay, warmup=warmup)],
    )  # fmt: skip
    trainer.fit(model, datamodule=datamodule)
    average = dict(weights.steps[0])  # torch's AveragedModel: the first update copies
    for updates, step in enumerate(weights.steps[1:], start=1):
        factor = min(decay, (1 + updates) / (10 + updates)) if warmup else decay  # the warm-up: TensorFlow's
        average = {name: factor * average[name] + (1 - factor) * step[name] for name in average}
    final = model.net.state_dict()  # training ends with the average copied into the module
    assert len(weights.steps) == 5 and not torch.equal(final["1.weight"], weights.steps[-1]["1.weight"])
    for name, value in average.items():
        torch.testing.assert_close(final[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ema_checkpoints_test_eval_and_resume_use_the_average(tiny_data_dir, tmp_path):
    # The callbacks a resume needs (checkpoints, random generators) and the EMA; no dashboards.
    ema = [
        "callbacks=[model_checkpoint,last_checkpoint,rng_state,ema]",
        "callbacks.ema.decay=0.9",
        "data.batch_size=64",
        "model/scheduler=none",  # a one-cycle schedule would be planned over 1 epoch in the first half
    ]
    straight = tmp_path / "straight"
    metrics = train(tiny(tiny_data_dir, straight, *ema, "trainer.max_epochs=2", quiet=[]))
    best = next((straight / "checkpoints").glob("epoch_*.ckpt"))
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["state_dict"].keys() == checkpoint["current_model_state"].keys()
    name = "net.1.weight"
    assert not torch.equal(checkpoint["state_dict"][name], checkpoint["current_model_state"][name])
    predicted = load_classifier(read_checkpoint(best))  # what predict.py and export.py run
    assert torch.equal(predicted.state_dict()[name], checkpoint["state_dict"][name])
    # train.py's test of the best checkpoint and eval.py (no EMA callback) both read the average
    eval_cfg = compose_train([f"ckpt_path={best}"], tmp_path, config_name="eval")
    evaluated = evaluate(eval_cfg)
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)

    # A resume carries the average: one epoch, then a resume to two, ends with the same averaged weights.
    halves = tmp_path / "halves"
    train(tiny(tiny_data_dir, halves, *ema, "trainer.max_epochs=1", "test=false", quiet=[]))
    resumed = train(
        tiny(
            tiny_data_dir,
            halves,
            *ema,
            "trainer.max_epochs=2",
            f"ckpt_path={halves / 'checkpoints/last.ckpt'}",
            quiet=[],
        )
    )
    last = {run: torch.load(run / "checkpoints/last.ckpt", weights_only=True) for run in (straight, halves)}
    for key in ("state_dict", "current_model_state"):
        torch.testing.assert_close(last[halves][key], last[straight][key])
    assert resumed["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-6)


# -- trackers -------------------------------------------------------------------------------------------------
def _wandb_records(run_file):
    """The records of a W&B offline run file (LevelDB-style log blocks of wandb's own protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    data, position, block, chunks = run_file.read_bytes(), 7, 32768, []  # 7: the ':W&B' file header
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = struct.unpack_from("<HB", data, position + 4)  # after a 4-byte checksum
        chunks.append(data[position + 7 : position + 7 + length])
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


@pytest.mark.slow
def test_logger_many_writes_mlflow_and_wandb_runs_that_read_back(tiny_data_dir, tmp_path, monkeypatch):
    import wandb
    from mlflow.tracking import MlflowClient

    for name, value in {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(name, value)
    cfg = tiny(tiny_data_dir, tmp_path, "logger=many", "trainer.max_epochs=2", "data.batch_size=128")
    metrics = train(cfg)
    wandb.finish()

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("litvision").experiment_id])
    assert run.data.params["optimizer/lr"] == str(cfg.model.optimizer.lr)
    history = client.get_metric_history(run.info.run_id, "val/acc")
    assert len(history) == 2 and history[-1].value == pytest.approx(metrics["val/acc"])
    assert run.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])

    (run_file,) = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    summary, config = {}, {}
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind in ("summary", "config"):
            target = summary if kind == "summary" else config
            for item in getattr(record, kind).update:  # a key with a slash comes as a one-element nested_key
                target[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    assert summary["val/acc"] == pytest.approx(metrics["val/acc"])
    assert summary["test/acc"] == pytest.approx(metrics["test/acc"])
    assert config["optimizer"]["lr"] == cfg.model.optimizer.lr


def test_a_tracker_without_its_extra_is_one_line_or_left_out_of_many(tiny_data_dir, tmp_path, monkeypatch, caplog):
    import importlib.util

    from litvision.support.errors import LitvisionError
    from litvision.support.instantiate import build_each

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("mlflow", "wandb") else real(name, *a)
    )
    for tracker in ("mlflow", "wandb"):
        with pytest.raises(LitvisionError, match=rf'logger={tracker} needs {tracker}: pip install -e "\.\[tracking\]"'):
            build_each(tiny(tiny_data_dir, tmp_path, f"logger={tracker}").logger, "logger")
    with caplog.at_level(logging.INFO, logger="litvision.support.trackers"):
        loggers = build_each(tiny(tiny_data_dir, tmp_path, "logger=many").logger, "logger")
    assert [type(logger).__name__ for logger in loggers] == ["TensorBoardLogger", "CSVLogger"]
    assert "logger.wandb left out: wandb is not installed" in caplog.text


# -- learning-rate finder -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_lr_find_writes_its_curve_and_prints_the_override(tiny_data_dir, tmp_path):
    from PIL import Image

    from conftest import run_main

    run_dir = tmp_path / "lr_find"
    args = [f"data.data_dir={tiny_data_dir}", "data=mnist", "data.val_size=100", "model=mlp", "data.batch_size=16"]
    args += ["lr_find.num_training=30", "lr_find.min_lr=1e-5", f"hydra.run.dir={run_dir}", *QUIET]
    result = run_main("lr_find.py", *args)
    results = json.loads((run_dir / "lr_find.json").read_text())
    assert len(results["lr"]) == len(results["loss"]) == 30 or "stopped early" in result.stderr
    assert 1e-5 <= results["suggestion"] <= 1.0 and results["suggestion"] in results["lr"]
    assert result.stdout.strip().splitlines()[-1] == f"model.optimizer.lr={results['suggestion']:.3g}"
    with Image.open(run_dir / "lr_find.png") as png:
        assert png.format == "PNG" and png.size[0] > 300
