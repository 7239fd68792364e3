"""Data at any scale: the mapped cache and the in-memory path, even DDP shares, resumes with another batch size."""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import litvision.data.mapped as mapped
from conftest import QUIET, compose_train, run_main, run_script
from litvision.data import FolderDataModule
from litvision.data.datamodule import _ResumableBatchLoader
from litvision.data.loader import EpochSampler, TensorBatchLoader
from litvision.data.mapped import MappedImages
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import DataError, LitvisionError
from litvision.support.instantiate import build
from litvision.tasks.train import train
from test_folder_data import write_colour_folder

FAST = ["model=mlp", "logger=none", "test=false", "data.image_size=8", "callbacks.rng_state=null", *QUIET]


def folder(root: Path, **kwargs) -> FolderDataModule:
    options = dict(image_size=8, batch_size=16, split_seed=0, shuffle_seed=0, augment={}, audit=False)
    return FolderDataModule(data_dir=str(root), **{**options, **kwargs})


def caches(root: Path) -> list[str]:
    return sorted(p.name for p in root.glob(".litvision-cache-*"))


# -- the two homes of a split give the same batches ------------------------------------------------------
def test_mapped_and_in_memory_paths_give_the_same_batches_and_statistics(tmp_path, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=30)
    caplog.set_level(logging.INFO)
    mapped_data = folder(root, in_memory=False, num_workers=2)
    mapped_data.prepare_data()
    mapped_data.setup("fit")
    assert isinstance(mapped_data.splits["train"][0], MappedImages)
    assert "read from the mapped cache" in caplog.text and "data.in_memory=false" in caplog.text
    memory = folder(root, in_memory=True)
    memory.setup("fit")
    assert isinstance(memory.splits["train"][0], torch.Tensor) and "held in memory" in caplog.text
    assert mapped_data.normalization.stats() == memory.normalization.stats()
    for epoch in (0, 1):
        loaders = [data.train_dataloader() for data in (mapped_data, memory)]
        for loader in loaders:
            loader.sampler.set_epoch(epoch)
        first, second = (list(loader) for loader in loaders)
        assert len(first) == len(second) == len(loaders[0])
        for (images_a, labels_a), (images_b, labels_b) in zip(first, second):
            assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
    assert caches(root) == [name for name in caches(root) if name.endswith((".npy", ".npy.json"))]


def test_auto_picks_the_mapped_path_under_a_small_budget_and_true_says_both_sizes(tmp_path, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    caplog.set_level(logging.INFO)
    data = folder(root, memory_budget=100)  # bytes: far less than 18 images of 3x8x8
    data.setup("fit")
    assert isinstance(data.splits["val"][0], MappedImages) and "memory budget" in caplog.text
    with pytest.raises(DataError) as caught:
        folder(root, in_memory=True, memory_budget=100).setup("fit")
    message = str(caught.value)
    assert "\n" not in message and "the splits take 3.5 kB" in message and "budget of 100 B" in message
    assert "data.in_memory=auto" in message and "data.memory_budget" in message
    assert mapped.available_memory() > 0  # /proc/meminfo's MemAvailable (or the free pages)


def test_a_truncated_cache_is_decoded_again(tmp_path, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    first = folder(root)
    first.setup("fit")
    (cache,) = root.glob(".litvision-cache-*.npy")
    with open(cache, "r+b") as handle:
        handle.truncate(cache.stat().st_size - 10)
    caplog.set_level(logging.INFO)
    again = folder(root)
    again.setup("fit")
    assert "incomplete or from another version" in caplog.text and "decoding 18 files" in caplog.text
    assert torch.equal(again.splits["train"][0], first.splits["train"][0]) and len(caches(root)) == 2


def test_a_full_disk_is_one_line_and_leaves_no_partial_cache(tmp_path, monkeypatch):
    root = write_colour_folder(tmp_path / "images", per_class=6)

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(DataError, match="no space left for the decoded images") as caught:
        folder(root).setup("fit")
    assert "\n" not in str(caught.value) and caches(root) == []


def test_decoding_in_worker_processes_fills_the_cache_like_one_process(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=50)
    (root / "red" / "zz.png").write_text("not an image")
    one, two = folder(root, decode_workers=1, cache=False), folder(root, decode_workers=2)
    one.setup("fit")
    two.setup("fit")
    for split in ("train", "val", "test"):
        assert torch.equal(one.splits[split][0], two.splits[split][0])
    assert len(one.skipped) == len(two.skipped) == 1 and caches(root) != []


# -- a mid-epoch resume counts examples, not batches (issue 29, item 8) ------------------------------------
def _resumable(batch_size: int, saved_batch_size: int, batches_done: int) -> _ResumableBatchLoader:
    saved = {"epoch": 0, "batches_done": batches_done, "train_batch_size": saved_batch_size, "world_size": 1}
    datamodule = SimpleNamespace(trainer=SimpleNamespace(training=True), resume_point=saved)
    images, labels = torch.zeros(100, 1, 1, 1, dtype=torch.uint8), torch.arange(100)
    loader = TensorBatchLoader(images, labels, batch_size, EpochSampler(100, shuffle=True, seed=3))
    return _ResumableBatchLoader(loader, datamodule)


def test_a_resume_with_a_smaller_batch_size_skips_the_examples_seen_and_a_larger_one_is_refused(caplog):
    caplog.set_level(logging.INFO)
    order = EpochSampler(100, shuffle=True, seed=3).indices()
    resumed = torch.cat([labels for _, labels in _resumable(16, saved_batch_size=32, batches_done=2)])
    assert torch.equal(resumed, order[64:]) and "after its first 64 training images" in caplog.text
    with pytest.raises(DataError, match=re.escape("continues only with data.batch_size<=32")):
        list(_resumable(64, saved_batch_size=32, batches_done=2))


@pytest.mark.slow
def test_an_interrupted_mapped_run_resumes_in_memory_to_the_uninterrupted_result(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=20)
    args = ["data=folder", f"data.data_dir={root}", "data.batch_size=8", "trainer.max_epochs=2", *FAST]
    reference = train(compose_train([*args, "data.in_memory=true", "callbacks.rng_state=null"], tmp_path / "ref"))
    stopped = tmp_path / "stopped"
    sender = ["+callbacks.signal_at._target_=test_faults.SignalAt", "+callbacks.signal_at.signum=SIGINT"]
    sender += ["+callbacks.signal_at.epoch=0", "+callbacks.signal_at.batch=2"]
    result = run_main("train.py", *args, "data.in_memory=false", f"hydra.run.dir={stopped}", *sender, check=False)
    assert result.returncode == 130, result.stderr[-2000:]
    ckpt = stopped / "checkpoints" / "interrupted.ckpt"
    position = {key: read_checkpoint(ckpt)["FolderDataModule"][key] for key in ("epoch", "batches_done")}
    assert position == {"epoch": 0, "batches_done": 3}  # stopped at the end of batch 2

    resumed = tmp_path / "resumed"
    run_main("train.py", *args, "data.in_memory=true", f"ckpt_path={ckpt}", f"hydra.run.dir={resumed}")
    metrics = json.loads((resumed / "metrics.json").read_text())["metrics"]
    for name in ("train/loss", "val/loss", "val/acc"):
        assert metrics[name] == pytest.approx(reference[name], abs=1e-6), name


# -- DDP: even shares, one decode per machine --------------------------------------------------------------
def test_training_shares_are_padded_to_one_length_like_distributed_sampler():
    shards = [EpochSampler(33, shuffle=True, seed=1, rank=rank, world_size=2, even=True) for rank in (0, 1)]
    first, second = (shard.indices() for shard in shards)
    assert len(first) == len(second) == len(shards[0]) == 17
    assert set(first.tolist()) | set(second.tolist()) == set(range(33))
    evaluation = [EpochSampler(33, shuffle=False, rank=rank, world_size=2) for rank in (0, 1)]
    assert sorted(torch.cat([shard.indices() for shard in evaluation]).tolist()) == list(range(33))  # exact


def write_split_folder(root: Path, train_per_class: int) -> Path:
    """train/, val/ and test/ folders of three colours: the training split has exactly 3 x train_per_class images."""
    rng = np.random.default_rng(0)
    for split, count in (("train", train_per_class), ("val", 2), ("test", 2)):
        for label, colour in enumerate(((230, 30, 30), (30, 220, 40), (20, 40, 230))):
            (root / split / f"c{label}").mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.integers(-30, 31, (10, 10, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"c{label}" / f"{i}.png")
    return root


@pytest.mark.slow
def test_ddp_on_an_odd_split_finishes_and_the_node_decodes_once(tmp_path):
    # 33 training images, batches of 16, 2 ranks: unpadded shares of 17 and 16 would take 2 and 1 steps,
    # and rank 0 would wait forever in its second gradient all-reduce.
    root = write_split_folder(tmp_path / "images", train_per_class=11)
    run_dir = tmp_path / "run"
    result = run_script(
        "train.py",
        "data=folder",
        f"data.data_dir={root}",
        "data.batch_size=16",
        "trainer=ddp_cpu",
        "trainer.strategy.timeout_s=60",
        "trainer.max_epochs=1",
        f"hydra.run.dir={run_dir}",
        *FAST,
        timeout=300,
    )
    assert json.loads((run_dir / "status.json").read_text())["status"] == "ok"
    assert read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 2
    output = result.stdout + result.stderr  # both ranks' console logs
    assert output.count("decoding 45 files") == 1 and output.count("mapped 45 decoded images") == 1, output[-3000:]
    assert len(list(root.glob(".litvision-cache-*.npy"))) == 1


def test_the_ddp_configs_give_the_process_group_a_timeout(tmp_path):
    cfg = compose_train(["trainer=ddp_cpu", "trainer.strategy.timeout_s=42"], tmp_path)
    strategy = build(cfg.trainer, "trainer", logger=False).strategy
    assert strategy._timeout.total_seconds() == 42  # what DDPStrategy hands to init_process_group


# -- data=streaming: LitData chunks ------------------------------------------------------------------------
@pytest.mark.slow
def test_a_folder_converted_for_streaming_trains_and_resumes_to_the_uninterrupted_result(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=20)
    stream = tmp_path / "stream"
    convert = ["data=folder", f"data.data_dir={root}", "data.image_size=8", f"output={stream}", "num_workers=1"]
    run_main("stream_convert.py", *convert, f"hydra.run.dir={tmp_path / 'convert'}")
    info = json.loads((stream / "litvision.json").read_text())
    assert info["class_names"] == ["blue", "green", "red"] and info["splits"] == {"train": 48, "val": 6, "test": 6}
    source = folder(root)
    source.setup("fit")
    assert info["mean"] == pytest.approx(source.normalization.stats()["mean"])

    args = ["data=streaming", f"data.data_dir={stream}", "data.batch_size=8", "data.num_workers=0", *FAST]
    args = [arg for arg in args if arg != "data.image_size=8"] + ["trainer.max_epochs=2"]
    reference = train(compose_train(args, tmp_path / "ref"))
    stopped = tmp_path / "stopped"
    sender = ["+callbacks.signal_at._target_=test_faults.SignalAt", "+callbacks.signal_at.signum=SIGINT"]
    sender += ["+callbacks.signal_at.epoch=0", "+callbacks.signal_at.batch=2"]
    assert run_main("train.py", *args, f"hydra.run.dir={stopped}", *sender, check=False).returncode == 130
    resumed = tmp_path / "resumed"
    run_main("train.py", *args, f"ckpt_path={stopped / 'checkpoints' / 'interrupted.ckpt'}", f"hydra.run.dir={resumed}")
    metrics = json.loads((resumed / "metrics.json").read_text())["metrics"]
    for name in ("train/loss", "val/loss", "val/acc"):
        assert metrics[name] == pytest.approx(reference[name], abs=1e-6), name


def test_streaming_without_litdata_or_a_converted_dataset_is_one_line(tmp_path, monkeypatch):
    from litvision.data.streaming import StreamingDataModule

    with pytest.raises(DataError, match="litvision.json is missing: convert a dataset first"):
        StreamingDataModule(data_dir=str(tmp_path))
    (tmp_path / "litvision.json").write_text(json.dumps({"num_classes": 2, "class_names": ["a", "b"]}))
    with pytest.raises(DataError, match=re.escape("needs data.in_channels, data.image_size, data.mean, data.std")):
        StreamingDataModule(data_dir=str(tmp_path))
    monkeypatch.setitem(sys.modules, "litdata", None)  # what an install without the extra gives
    facts = {
        "num_classes": 2,
        "class_names": ["a", "b"],
        "in_channels": 1,
        "image_size": 4,
        "mean": [0.5],
        "std": [0.5],
    }
    (tmp_path / "litvision.json").write_text(json.dumps(facts))
    with pytest.raises(LitvisionError, match=re.escape('data=streaming needs litdata: pip install -e ".[streaming]"')):
        StreamingDataModule(data_dir=str(tmp_path))
