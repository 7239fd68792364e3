"""Many or oddly named classes: per-class keys stay one per class, the confusion picture and the run
report stay bounded with 1,000 classes, and the report's files are written whole or not at all."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning import LightningModule, Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, TensorDataset

from litvision.callbacks.confusion import KEYS_FILE, ConfusionMatrix
from litvision.callbacks.dashboard import class_keys
from litvision.report import analysis
from litvision.report.callback import RunReport
from litvision.report.run_page import PREDICTIONS_FILE, REPORT_FILE, write_run_page
from litvision.support.errors import LitvisionError
from litvision.support.render import MAX_SIDE_PX, confusion_picture

ODD_NAMES = ["猫", "犬", "a b", "a_b", "a/b", "T-shirt/top", "tab\there", "ä", "a_b#2", "9"]
TESTS = Path(__file__).resolve().parent


def fake_trainer(run_dir: Path, names: list[str], loggers=()) -> SimpleNamespace:
    """What the confusion and report callbacks read of a one-process Trainer."""
    return SimpleNamespace(
        global_rank=0,
        world_size=1,
        is_global_zero=True,
        datamodule=SimpleNamespace(class_names=names),
        default_root_dir=str(run_dir),
        loggers=list(loggers),
        sanity_checking=False,
        current_epoch=0,
        max_epochs=1,
        global_step=0,
    )


class _LogRecorder:
    """A LightningModule's logging, recorded: the confusion callback must log its values in one call."""

    def __init__(self):
        self.calls: list[tuple[dict, dict]] = []

    def log_dict(self, values, **options):
        self.calls.append((dict(values), options))

    def log(self, *args, **kwargs):
        raise AssertionError("per-class values go through one log_dict, not a log call each")


def batches_of(classes: int, count: int, batch: int = 1000, seed: int = 0):
    """(logits, (images, labels)) test batches, mostly right, made one at a time (the input is never N x C)."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, count, batch):
        size = min(batch, count - start)
        labels = torch.randint(0, classes, (size,), generator=generator)
        logits = torch.randn(size, classes, generator=generator)
        logits[torch.arange(size), labels] += 4.0
        yield logits, (torch.rand(size, 1, 8, 8, generator=generator), labels)


def drive_report(run_dir: Path, classes: int, count: int, **options) -> Path:
    """The report callback through one test epoch, then report.html from the run folder."""
    trainer = fake_trainer(run_dir, [f"class {i}" for i in range(classes)])
    report = RunReport(dirpath=str(run_dir), **options)
    report.on_test_epoch_start(trainer, None)
    for index, (logits, batch) in enumerate(batches_of(classes, count)):
        report.on_test_batch_end(trainer, None, logits, batch, index)
    report.on_test_epoch_end(trainer, None)
    return write_run_page(run_dir)


def page_pictures(page: Path) -> dict[str, Image.Image]:
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page.read_text())
    return {alt: Image.open(io.BytesIO(base64.b64decode(data))) for alt, data in found}


# -- per-class keys -----------------------------------------------------------------------------
def test_class_keys_are_readable_and_one_per_class():
    keys = class_keys(ODD_NAMES)
    assert len(set(keys)) == len(ODD_NAMES)
    assert keys[:2] == ["猫", "犬"]  # any script kept as it is
    assert keys[3] == "a_b" and keys[8] == "a_b#2" and keys[9] == "9"  # names that are keys already keep them
    assert keys[2] != keys[4] and {keys[2], keys[4]} <= {"a_b#2#2", "a_b#4"}  # "a b", "a/b": the index tells
    assert keys[5] == "T-shirt_top" and keys[6] == "tab_here"
    assert all("/" not in key and not any(ch.isspace() for ch in key) for key in keys)
    assert class_keys([str(i) for i in range(10)]) == [str(i) for i in range(10)]
    assert class_keys(["x", "x"]) == ["x", "x#1"]


def test_confusion_callback_logs_each_class_under_its_own_key_in_one_call(tmp_path):
    names = ODD_NAMES
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="", version="")
    trainer, module = fake_trainer(tmp_path, names, [logger]), _LogRecorder()
    callback = ConfusionMatrix(dirpath=str(tmp_path))
    labels = torch.arange(len(names)).repeat(3)
    logits = torch.nn.functional.one_hot(labels, len(names)).float()
    logits[0] = torch.nn.functional.one_hot(torch.tensor(1), len(names)).float()  # one 猫 taken for 犬
    callback.on_test_epoch_start(trainer, module)
    callback.on_test_batch_end(trainer, module, logits, (torch.zeros(len(labels), 1, 4, 4), labels), 0)
    callback.on_test_epoch_end(trainer, module)

    (values, options), *more = module.calls
    assert not more and options["rank_zero_only"] and options["on_epoch"]  # once, and no all-reduce per class
    keys = class_keys(names)
    assert values == {f"test_class_acc/{key}": (2 / 3 if key == "猫" else 1.0) for key in keys}
    mapping = json.loads((tmp_path / KEYS_FILE).read_text())["classes"]
    assert [(row["name"], row["key"]) for row in mapping] == list(zip(names, keys))


def test_per_class_values_add_no_all_reduce_per_class(tmp_path):
    """A real Trainer: Lightning's sync of each logged value is strategy.reduce; the per-class values,
    already equal on every rank, must not add one call per class."""

    class Linear(LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1000)

        def validation_step(self, batch, batch_idx):
            return self.net(batch[0])

    data = DataLoader(TensorDataset(torch.randn(64, 4), torch.randint(0, 1000, (64,))), batch_size=32)

    def reduce_calls(per_class: bool) -> tuple[int, dict]:
        callback = ConfusionMatrix(per_class_accuracy=per_class, dirpath=str(tmp_path))
        trainer = Trainer(
            accelerator="cpu",
            devices=1,
            logger=False,
            callbacks=[callback],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=str(tmp_path),
        )
        calls, reduce = [], trainer.strategy.reduce
        trainer.strategy.reduce = lambda *args, **kwargs: calls.append(1) or reduce(*args, **kwargs)
        trainer.validate(Linear(), data, verbose=False)
        return len(calls), trainer.callback_metrics

    with_classes, metrics = reduce_calls(True)
    without, _ = reduce_calls(False)
    assert with_classes == without
    assert len([key for key in metrics if key.startswith("val_class_acc/")]) == len(
        set(data.dataset.tensors[1].tolist())
    )


@pytest.mark.slow
def test_odd_class_names_get_distinct_keys_in_metrics_json_and_tensorboard(tiny_data_dir, tmp_path):
    from conftest import QUIET, compose_train
    from litvision.tasks.train import train

    quoted = ",".join(f"'{name}'" for name in ODD_NAMES)  # a Hydra list of quoted strings
    cfg = compose_train(
        ["data=mnist", f"data.data_dir={tiny_data_dir}", "data.val_size=100", "trainer.max_epochs=1", "model=mlp"]
        + [f"data.class_names=[{quoted}]", *QUIET],
        tmp_path,
    )
    train(cfg)
    keys = class_keys(ODD_NAMES)
    saved = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    for stage in ("val", "test"):
        logged = {name.split("/", 1)[1] for name in saved if name.startswith(f"{stage}_class_acc/")}
        assert logged <= set(keys) and len(logged) >= 8  # one key per class with test images, none shared
        tags = {tag.split("/", 1)[1] for tag in events.Tags()["scalars"] if tag.startswith(f"{stage}_class_acc/")}
        assert tags == logged
    assert "test_class_acc/猫" in saved and "test_class_acc/犬" in saved and "test_class_acc/_" not in saved
    mapping = json.loads((tmp_path / KEYS_FILE).read_text())["classes"]
    assert {row["key"]: row["name"] for row in mapping} == dict(zip(keys, ODD_NAMES))


# -- 1,000 classes ------------------------------------------------------------------------------
@pytest.mark.parametrize("classes", [10, 40, 1000, 3000])
def test_the_confusion_picture_stays_bounded(classes):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 5, (classes, classes)) + np.diag(np.full(classes, 50))
    names = [f"{'W' * 40} {i}" for i in range(classes)]  # long names are cut
    picture = confusion_picture(matrix, names, "test confusion matrix")
    assert max(picture.shape[:2]) <= MAX_SIDE_PX and picture.dtype == np.uint8


def test_a_thousand_classes_through_the_confusion_callback(tmp_path):
    names = [f"class_{i}" for i in range(1000)]
    logger = TensorBoardLogger(save_dir=str(tmp_path), name="", version="")
    trainer, module = fake_trainer(tmp_path, names, [logger]), _LogRecorder()
    callback = ConfusionMatrix(dirpath=str(tmp_path))
    callback.on_test_epoch_start(trainer, module)
    for index, (logits, batch) in enumerate(batches_of(1000, 5000)):
        callback.on_test_batch_end(trainer, module, logits, batch, index)
    callback.on_test_epoch_end(trainer, module)
    callback.on_test_end(trainer, module)
    logger.experiment.flush()

    (values, _), *more = module.calls
    assert not more and len(values) == len({key.split("/")[1] for key in values}) > 900
    with Image.open(tmp_path / "confusion_matrix.png") as png:
        assert max(png.size) <= MAX_SIDE_PX
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    events.Reload()
    (image,) = events.Images("test/confusion_matrix")
    assert max(image.width, image.height) <= MAX_SIDE_PX
    assert not (tmp_path / KEYS_FILE).exists()  # every key is its class name: nothing to look up


def test_the_report_keeps_the_top_k_of_a_thousand_classes(tmp_path):
    count, k = 3000, 10
    page = drive_report(tmp_path, classes=1000, count=count, top_k=k)
    with np.load(tmp_path / PREDICTIONS_FILE) as saved:
        arrays = {key: saved[key] for key in saved.files}
    assert "probabilities" not in arrays
    assert arrays["top_classes"].shape == (count, k) and arrays["top_classes"].dtype == np.int16
    assert arrays["top_probabilities"].shape == (count, k) and arrays["top_probabilities"].dtype == np.float16
    per_image = sum(value.nbytes for key, value in arrays.items() if len(value) == count)
    assert per_image <= count * (4 * k + 4 + 16)  # O(N k): ids and probabilities, p(true), label, index
    assert all(value.size <= max(count * k, 1000 * 16 * 64) for value in arrays.values())

    predictions = analysis.Predictions.load(tmp_path / PREDICTIONS_FILE)
    assert (predictions.predicted == arrays["top_classes"][:, 0]).all()
    html = page.read_text()
    table = html.split('<div id="per-class">')[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 1000 + 1  # header, every class, the macro average
    pictures = page_pictures(page)
    assert max(pictures["test confusion matrix"].size) <= MAX_SIDE_PX
    assert 'id="ece"' in html and "highest-loss test images" in pictures


def test_a_few_classes_keep_the_whole_softmax_and_the_same_numbers(tmp_path):
    drive_report(tmp_path, classes=10, count=500)
    with np.load(tmp_path / PREDICTIONS_FILE) as saved:
        probabilities, labels = saved["probabilities"], saved["labels"]
    assert probabilities.shape == (500, 10) and probabilities.dtype == np.float32
    predictions = analysis.Predictions.load(tmp_path / PREDICTIONS_FILE)
    from torchmetrics.classification import MulticlassCalibrationError, MulticlassPrecision

    tensors = torch.from_numpy(probabilities), torch.from_numpy(labels)
    precision = MulticlassPrecision(num_classes=10, average=None)(*tensors).numpy()
    assert np.array_equal(analysis.per_class_scores(predictions)["precision"], precision)
    ece = float(MulticlassCalibrationError(num_classes=10, n_bins=15, norm="l1")(*tensors))
    assert analysis.expected_calibration_error(predictions, 15) == ece


def measure_report_memory(run_dir: str, classes: int, count: int) -> None:
    """In a fresh process: the peak memory the report adds for ``count`` images of ``classes`` classes,
    after a small warm-up run has loaded every library (printed as JSON, in bytes)."""
    import resource

    drive_report(Path(run_dir) / "warm-up", classes=classes, count=2000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    drive_report(Path(run_dir) / "run", classes=classes, count=count)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"added": (after - before) * 1024}))


@pytest.mark.slow
def test_a_thousand_classes_through_the_report_within_a_memory_bound(tmp_path):
    classes, count = 1000, 100_000
    one_softmax = classes * count * 4  # 400 MB: what one float32 copy of the N x C probabilities takes
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import test_trust_scale as t; "
    code += f"t.measure_report_memory({str(tmp_path)!r}, {classes}, {count})"
    # A fixed mmap threshold: glibc's moving one keeps freed batch-sized blocks in the heap, which
    # would be counted here as if the report held them.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    added = json.loads(result.stdout.strip().splitlines()[-1])["added"]
    assert added < one_softmax / 4, f"the report added {added / 2**20:.0f} MB"
    assert (tmp_path / "run" / REPORT_FILE).is_file()


# -- result files written whole -------------------------------------------------------------------
def test_report_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    page = drive_report(tmp_path, classes=10, count=200)
    predictions, before = tmp_path / PREDICTIONS_FILE, page.read_text()
    saved = predictions.read_bytes()

    def interrupted(stream, **arrays):
        stream.write(b"PK half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        drive_report(tmp_path, classes=10, count=200)
    assert predictions.read_bytes() == saved and page.read_text() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([PREDICTIONS_FILE, REPORT_FILE])  # no temp left


def test_hostile_saved_predictions_are_one_line_and_keep_the_page(tmp_path):
    page = drive_report(tmp_path, classes=10, count=200)
    before = page.read_text()
    with np.load(tmp_path / PREDICTIONS_FILE) as saved:
        arrays = {key: saved[key] for key in saved.files}
    for change, message in [
        ({"labels": arrays["labels"] + 10}, "labels holds values outside"),
        ({"probabilities": arrays["probabilities"][:, :3]}, "probabilities has shape"),
        ({"top_indices": arrays["top_indices"] + 10_000}, "top_indices are not all in indices"),
        ({"class_names": np.array([], dtype=str)}, "class_names is empty"),
    ]:
        np.savez(tmp_path / PREDICTIONS_FILE, **{**arrays, **change})
        with pytest.raises(LitvisionError, match=message) as caught:
            write_run_page(tmp_path)
        assert "\n" not in str(caught.value) and page.read_text() == before


def test_a_zip_bomb_in_place_of_the_saved_predictions_is_refused_before_it_inflates(tmp_path):
    import zipfile

    from litvision.report.analysis import Predictions

    path = tmp_path / "test_predictions.npz"
    count = 80 * 2**20  # 80 MB of zeros: under 100 KB compressed
    header = {"descr": "|u1", "fortran_order": False, "shape": (count,)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("labels.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, header)
            chunk = bytes(2**20)
            for _ in range(count // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < 2**20
    with pytest.raises(ValueError, match="labels.npy would inflate"):
        Predictions.load(path)
