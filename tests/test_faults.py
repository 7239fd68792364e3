"""Fault injection: hostile and inconsistent data files, an unwritable run folder, SIGINT/SIGTERM, a kill mid-save.

Runs happen in this process where the outcome does not depend on a real process (signals sent by
this process to itself land at a chosen batch, so the tests are deterministic); one real process is
interrupted from outside to show what a user sees: exit status 130, no traceback, the resume command.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning import Callback

from conftest import DEBIAN_FASHION_MNIST, QUIET, ROOT, compose_train, require_real_data, run_main
from datafiles import IDX_NAMES, idx_bytes, write_cifar10, write_idx_dataset
from litvision.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule
from litvision.data.cifar import CIFAR10Files
from litvision.data.datasets import FASHION_MNIST_FILES, ensure_available
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import DataError
from litvision.tasks.train import train

MNIST_FACTS = dict(num_classes=10, class_names=[str(i) for i in range(10)], mean=[0.13], std=[0.31])
CIFAR_FACTS = dict(num_classes=10, class_names=[f"c{i}" for i in range(10)], mean=[0.5] * 3, std=[0.25] * 3)


def one_line_naming(error: DataError, *names: str) -> str:
    message = str(error)
    assert "\n" not in message, message
    for name in names:
        assert name in message, message
    return message


# -- data files ------------------------------------------------------------------------------------
class _RunsCode:
    """What a hostile pickle holds: unpickling it calls os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("name", ["data_batch_2", "test_batch", "batches.meta"])
def test_a_hostile_cifar_file_runs_no_code_and_is_named(name, tmp_path):
    write_cifar10(tmp_path, per_batch=20, test=10)
    marker = tmp_path / "pwned"
    hostile = tmp_path / "cifar-10-batches-py" / name
    hostile.write_bytes(pickle.dumps({"data": _RunsCode(f"touch {marker}"), "labels": [0]}, protocol=2))
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, download=False, **CIFAR_FACTS)
    with pytest.raises(DataError) as caught:
        datamodule.setup("fit")
    message = one_line_naming(caught.value, str(hostile))
    assert "posix.system" in message or "os.system" in message
    with pytest.raises(DataError):  # the per-image path (data.loader=dataloader) reads them the same way
        CIFAR10Files(str(tmp_path), train=name != "test_batch")
    assert not marker.exists()


def test_real_format_cifar_pickles_are_admitted(tmp_path):
    # Python 3 protocol-2 pickles (what write_cifar10 and re-packers write): numpy reconstruct + _codecs.encode.
    write_cifar10(tmp_path, per_batch=8, test=4)
    parsed = CIFAR10Files(str(tmp_path), train=True)
    assert parsed.data.shape == (40, 32, 32, 3) and parsed.data.dtype == np.uint8 and len(parsed.targets) == 40
    assert parsed.classes[0] == "airplane"


def _rewrite_idx(path: Path, array: np.ndarray) -> None:
    path.write_bytes(idx_bytes(array))


def test_labels_out_of_range_are_named_with_file_and_value(tmp_path):
    raw = write_idx_dataset(tmp_path / "MNIST" / "raw", train=120, test=40)
    labels = np.frombuffer((raw / IDX_NAMES[("test", "labels")]).read_bytes()[8:], dtype=np.uint8).copy()
    labels[7] = 12
    _rewrite_idx(raw / IDX_NAMES[("test", "labels")], labels)
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=20, download=False, **MNIST_FACTS)
    with pytest.raises(DataError) as caught:
        datamodule.setup("fit")
    one_line_naming(caught.value, "label 12", "t10k-labels-idx1-ubyte", "test split")

    write_cifar10(tmp_path, per_batch=10, test=10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    entry = pickle.loads(batch.read_bytes())
    entry["labels"][3] = -1
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    datamodule = CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, download=False, **CIFAR_FACTS)
    with pytest.raises(DataError) as caught:
        datamodule.setup("fit")
    one_line_naming(caught.value, "label -1", str(batch), "image 3")


def test_count_and_shape_mismatches_are_named(tmp_path):
    raw = write_idx_dataset(tmp_path / "MNIST" / "raw", train=120, test=40)
    labels = raw / IDX_NAMES[("train", "labels")]
    _rewrite_idx(labels, np.frombuffer(labels.read_bytes()[8:], dtype=np.uint8)[:-5])  # a consistent, shorter file
    datamodule = MNISTDataModule(data_dir=str(tmp_path), val_size=20, download=False, **MNIST_FACTS)
    with pytest.raises(DataError) as caught:
        datamodule.setup("fit")
    one_line_naming(caught.value, "120 images", "115 labels", "train-labels-idx1-ubyte")

    write_idx_dataset(raw, train=120, test=40)
    _rewrite_idx(raw / IDX_NAMES[("test", "images")], np.zeros((40, 32, 32), dtype=np.uint8))
    with pytest.raises(DataError) as caught:
        MNISTDataModule(data_dir=str(tmp_path), val_size=20, download=False, **MNIST_FACTS).setup("fit")
    one_line_naming(caught.value, "1x32x32", "expected 1x28x28", "t10k-images-idx3-ubyte")

    write_cifar10(tmp_path, per_batch=10, test=10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    entry = pickle.loads(batch.read_bytes())
    entry["labels"].append(1)
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    with pytest.raises(DataError) as caught:
        CIFAR10DataModule(data_dir=str(tmp_path), val_size=10, download=False, **CIFAR_FACTS).setup("fit")
    one_line_naming(caught.value, str(batch), "10 images but 11 labels")


def test_archives_in_the_raw_folder_are_decompressed_and_checked(tmp_path):
    raw = write_idx_dataset(tmp_path / "FashionMNIST" / "raw", train=120, test=40, gzipped=True)
    ensure_available(FASHION_MNIST_FILES, tmp_path, search_dirs=[], download=False)
    datamodule = FashionMNISTDataModule(data_dir=str(tmp_path), val_size=20, download=False, **MNIST_FACTS)
    datamodule.setup("fit")
    assert datamodule.splits["test"][0].shape == (40, 1, 28, 28)

    # A corrupt archive is named; nothing partial is left in its place.
    broken = tmp_path / "broken"
    raw = write_idx_dataset(broken / "FashionMNIST" / "raw", train=120, test=40, gzipped=True)
    archive = raw / "train-images-idx3-ubyte.gz"
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DataError) as caught:
        ensure_available(FASHION_MNIST_FILES, broken, search_dirs=[], download=False)
    one_line_naming(caught.value, str(archive))
    assert not (raw / "train-images-idx3-ubyte").exists()


def test_debians_archives_placed_in_the_raw_folder_are_found(tmp_path):
    debian = DEBIAN_FASHION_MNIST
    require_real_data(debian, "apt-get install dataset-fashion-mnist")  # fails in CI when missing
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in IDX_NAMES.values():
        shutil.copy(debian / f"{name}.gz", raw)
    ensure_available(FASHION_MNIST_FILES, tmp_path, search_dirs=[], download=False)
    header = (raw / "t10k-labels-idx1-ubyte").read_bytes()[:8]
    assert int.from_bytes(header[4:], "big") == 10000
    assert gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes())[:8] == header


# -- run folder ------------------------------------------------------------------------------------
def test_an_output_folder_that_cannot_be_created_gives_one_line_and_status_2(tiny_data_dir):
    result = run_main("train.py", "hydra.run.dir=/proc/litvision/run", f"data.data_dir={tiny_data_dir}", check=False)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "/proc/litvision/run" in lines[0] and "hydra.run.dir" in lines[0], result.stderr


# -- interrupted runs ------------------------------------------------------------------------------
class SignalAt(Callback):
    """Test-only: this process sends itself ``signum`` as training batch ``batch`` of epoch ``epoch`` starts."""

    def __init__(self, signum: str, epoch: int, batch: int):
        self.signum, self.epoch, self.batch = signal.Signals[signum], epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


# Small batches, so an epoch has enough of them to stop in the middle; no dashboards.
RUN = [
    "trainer=cpu",
    "trainer.max_epochs=2",
    "data.batch_size=50",
    "model.net.widths=[8,16,16]",
    "data.val_size=100",
    "logger=none",
    "callbacks.lr_monitor=null",
    "callbacks.epoch_timer=null",
    "callbacks.hparams=null",
    "callbacks.train_samples=null",
    "callbacks.val_predictions=null",
    "callbacks.confusion_matrix=null",
    "callbacks.learning_curves=null",
    *QUIET,
]
COMPARED = ["train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/loss", "test/acc"]


def _args(data_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [f"data.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *RUN, *extra]


@pytest.fixture(scope="module")
def reference(tiny_data_dir, tmp_path_factory) -> dict[str, float]:
    """The final metrics of the same run, uninterrupted (shared by the resume tests)."""
    run_dir = tmp_path_factory.mktemp("reference")
    cfg = compose_train([f"data.data_dir={tiny_data_dir}", *RUN], run_dir)
    return train(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("signame,epoch,batch", [("SIGINT", 0, 5), ("SIGTERM", 1, 2)])
def test_a_signal_mid_epoch_leaves_a_run_that_resumes_to_the_same_result(
    signame, epoch, batch, tiny_data_dir, tmp_path, reference
):
    stopped = tmp_path / "stopped"
    sender = [f"+callbacks.signal_at._target_={__name__}.SignalAt", f"+callbacks.signal_at.signum={signame}"]
    sender += [f"+callbacks.signal_at.epoch={epoch}", f"+callbacks.signal_at.batch={batch}"]
    result = run_main("train.py", *_args(tiny_data_dir, stopped, *sender), check=False)
    signum = signal.Signals[signame]
    assert result.returncode == 128 + signum, result.stderr[-3000:]
    assert "Traceback" not in result.stderr

    status = json.loads((stopped / "status.json").read_text())
    ckpt = stopped / "checkpoints" / "interrupted.ckpt"
    assert status["status"] == "interrupted" and status["signal"] == signame and status["ckpt_path"] == str(ckpt)
    assert status["resume"] in result.stderr and status["resume"].endswith(f"ckpt_path={ckpt}")
    assert status["resume"].startswith("python scripts/train.py ") and "data.batch_size=50" in status["resume"]
    # Stopped at the end of the batch the signal arrived in: mid-epoch, with the loop state to continue there.
    saved = read_checkpoint(ckpt)
    batches_per_epoch = (600 - 100) // 50
    assert saved["global_step"] == epoch * batches_per_epoch + batch + 1
    assert "rng" in saved["callbacks"]["RandomStateCheckpoint"]  # the generators, put back when it resumes

    resumed = tmp_path / "resumed"
    run_main("train.py", *_args(tiny_data_dir, resumed, f"ckpt_path={ckpt}"))
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["epochs"] == 2
    # The same weights at the end (val and test metrics equal to the digit): the resumed run continued
    # from the batch where it stopped, with the same data order and random draws; the epoch that was cut
    # counts its batches from before the stop too (the running totals travel in the checkpoint).
    for name in COMPARED:
        assert metrics["metrics"][name] == pytest.approx(reference[name], abs=1e-6), name


@pytest.mark.slow
def test_ctrl_c_on_a_real_run_exits_130_with_the_resume_command(tiny_data_dir, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    # Enough epochs that the signal lands during training wherever the (loaded) machine is.
    args = _args(tiny_data_dir, run_dir, "trainer.max_epochs=50", "data.batch_size=8")
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        for line in process.stdout:  # Hydra's console log: the callback says when signals are handled
            if "Ctrl-C or SIGTERM now stops training" in line or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "resume with:" in err
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "interrupted" and status["signal"] == "SIGINT"
    assert status["resume"] in err
    read_checkpoint(status["ckpt_path"])  # complete and loadable


# -- a kill while a checkpoint is written ----------------------------------------------------------
class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs in the real case, so the test looks at the disk first."""


@pytest.mark.slow
def test_a_kill_while_last_ckpt_is_written_leaves_the_previous_one_to_resume_from(
    tiny_data_dir, tmp_path, monkeypatch, reference
):
    """The second write of last.ckpt (end of epoch 1) dies half-way; what is on disk at that moment resumes."""
    checkpoints = tmp_path / "run" / "checkpoints"
    on_disk = tmp_path / "on-disk-at-the-kill"
    real_save = torch.save
    saves = []

    def dying_save(obj, target, *args, **kwargs):
        if (
            hasattr(target, "write")
            and str(getattr(target, "name", "")).endswith(".tmp")
            and "last.ckpt" in target.name
        ):
            saves.append(target.name)
            if len(saves) == 2:
                real_save(obj, target, *args, **kwargs)
                target.flush()
                os.truncate(target.name, os.path.getsize(target.name) // 2)  # half the bytes reached the disk
                shutil.copytree(checkpoints, on_disk)  # what a SIGKILL at this moment leaves behind
                raise _Killed
        return real_save(obj, target, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dying_save)
    cfg = compose_train([f"data.data_dir={tiny_data_dir}", *RUN], tmp_path / "run")
    with pytest.raises(_Killed):
        train(cfg)
    monkeypatch.setattr(torch, "save", real_save)

    assert {path.name for path in on_disk.glob("*.ckpt")} >= {"last.ckpt"}
    last = read_checkpoint(on_disk / "last.ckpt")  # the complete previous checkpoint, not half of the new one
    assert last["epoch"] == 0
    resumed = tmp_path / "resumed"
    run_main("train.py", *_args(tiny_data_dir, resumed, f"ckpt_path={on_disk / 'last.ckpt'}"))
    metrics = json.loads((resumed / "metrics.json").read_text())["metrics"]
    for name in ["train/loss", "val/loss", "val/acc", "test/acc"]:
        assert metrics[name] == pytest.approx(reference[name], abs=1e-6), name
