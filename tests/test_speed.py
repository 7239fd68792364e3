"""The fast data path's options and the side-by-side benchmark script (timing targets live in the benchmark)."""

from __future__ import annotations

import pytest
import torch

from benchmark_ways import RandomStream
from conftest import QUIET, compose_train, run_script
from litvision.instantiate import build
from litvision.train import train


def test_dataloader_path_yields_the_same_examples_as_the_tensor_path(tiny_data_dir, tmp_path):
    batches = {}
    for loader in ("tensor", "dataloader"):
        cfg = compose_train(
            ["data=cifar10", f"data.loader={loader}", f"data.data_dir={tiny_data_dir}", "data.val_size=100"], tmp_path
        )
        datamodule = build(cfg.data, "data")
        datamodule.setup("fit")
        val = list(datamodule.val_dataloader())
        test = list(datamodule.test_dataloader())
        batches[loader] = [torch.cat([images for images, _ in split]) for split in (val, test)]
        assert all(images.dtype == torch.uint8 for images, _ in val)
    for tensor_split, dataloader_split in zip(batches["tensor"], batches["dataloader"]):
        assert torch.equal(tensor_split, dataloader_split)


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
    assert 0.0 <= metrics["test/acc"] <= 1.0


def test_benchmark_script_prints_and_saves_the_three_way_table(tmp_path):
    # On synthetic CIFAR-10 from its script, as a session without the real files times it (with crop and flip).
    data_dir, run_dir = tmp_path / "synthetic", tmp_path / "bench"
    written = run_script("synthetic_data.py", "cifar10", str(data_dir), "--train", "400", "--test", "50")
    assert f"data.data_dir={data_dir}" in written.stdout
    result = run_script(
        "benchmark.py",
        "model=small_cnn",
        "data=cifar10",
        f"data.data_dir={data_dir}",
        "data.val_size=100",
        "data.batch_size=32",
        "epochs=2",
        "turn_batches=2",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        *QUIET,
    )
    table = (run_dir / "benchmark.md").read_text()
    assert table.strip() in result.stdout
    assert "SYNTHETIC" in table.splitlines()[0] and "take turns every 2 training batches" in table.splitlines()[0]
    accuracies = {}
    for way in ("(a) litvision Trainer.fit", "(b) plain PyTorch loop", "(c) torchvision Dataset + DataLoader"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {way}"))
        seconds, rate, memory, train_acc, val_acc, epochs = (cell.strip() for cell in row.strip("|").split("|")[1:])
        assert len(epochs.split()) == 2
        assert float(seconds) > 0 and float(rate.replace(",", "")) > 0 and memory.endswith("GiB")
        assert 0.0 <= float(train_acc) <= 1.0 and 0.0 <= float(val_acc) <= 1.0
        accuracies[way[:3]] = float(train_acc), float(val_acc)
    assert "(a)/(b) =" in table and "(c)/(a) =" in table
    assert "(a)/(b) epoch by epoch (epochs 2+" in table
    # Same seed, same data order, each way on its own random stream although they take turns:
    # Trainer.fit and the bare loop over the same tensors train the same net, batch for batch, with
    # the same random crops and flips.
    assert accuracies["(a)"] == pytest.approx(accuracies["(b)"], abs=0.005)


def test_random_streams_of_ways_taking_turns_do_not_mix():
    torch.manual_seed(0)
    alone = torch.rand(6)
    torch.manual_seed(0)
    stream = RandomStream()  # a way built now starts from this state
    outer_first = torch.rand(2)
    with stream.active():
        inner_first = torch.rand(3)
    outer_second = torch.rand(4)
    with stream.active():
        inner_second = torch.rand(3)
    assert torch.equal(torch.cat([inner_first, inner_second]), alone)
    assert torch.equal(torch.cat([outer_first, outer_second]), alone)


def test_lightning_sets_the_sampler_epoch_also_when_resuming(tiny_data_dir, tmp_path):
    from lightning.pytorch.callbacks import Callback

    class RecordEpochs(Callback):
        def __init__(self):
            self.seen = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 0:
                self.seen.append((trainer.current_epoch, trainer.train_dataloader.sampler.epoch))

    def fit(max_epochs: int, ckpt_path=None) -> list:
        cfg = compose_train(
            [
                "data=mnist",
                f"data.data_dir={tiny_data_dir}",
                "data.val_size=100",
                "logger=csv",
                f"trainer.max_epochs={max_epochs}",
                "test=false",
                *QUIET,
            ],
            tmp_path / str(max_epochs),
        )
        datamodule, model = build(cfg.data, "data"), build(cfg.model, "model")
        recorder = RecordEpochs()
        trainer = build(cfg.trainer, "trainer", callbacks=[recorder], logger=False)
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        return recorder.seen, trainer

    seen, trainer = fit(2)
    assert seen == [(0, 0), (1, 1)]
    checkpoint = tmp_path / "two_epochs.ckpt"
    trainer.save_checkpoint(checkpoint)
    resumed, _ = fit(3, ckpt_path=str(checkpoint))
    assert resumed == [(2, 2)], "a resumed run must continue the per-epoch data order"


@pytest.mark.parametrize(
    "override,expected",
    [("ways=[plain,bogus]", "unknown ways ['bogus']"), ("turn_batches=0", "turn_batches must be a whole number >= 1")],
)
def test_benchmark_refuses_bad_options_in_one_line(override, expected, tmp_path):
    result = run_script("benchmark.py", override, f"paths.root_dir={tmp_path}", check=False)
    assert result.returncode == 2
    assert expected in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_synthetic_data_script_refuses_to_overwrite_in_one_line(tmp_path):
    run_script("synthetic_data.py", "mnist", str(tmp_path), "--train", "20", "--test", "5")
    kept = (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    result = run_script("synthetic_data.py", "mnist", str(tmp_path), "--train", "30", "--test", "6", check=False)
    assert result.returncode == 2 and "exists" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes() == kept
