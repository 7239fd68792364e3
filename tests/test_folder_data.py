"""data=folder: images in class folders, decoded by read_image, cached, split and k-folded."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import litvision.data.folder_files as folder_files
from conftest import QUIET, compose_train, run_main
from litvision.data import FolderDataModule, read_image
from litvision.data.images import IMAGE_SUFFIXES
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import DataError
from litvision.tasks.predict import load_classifier, probability_model
from litvision.tasks.train import train

COLOURS = {"blue": (20, 40, 230), "green": (30, 220, 40), "red": (230, 30, 30)}  # sorted by name: labels 0, 1, 2


def colour_image(colour, rng, width=24, height=20) -> np.ndarray:
    """A flat colour with noise: what tells the classes apart is the colour."""
    noise = rng.integers(-30, 31, (height, width, 3))
    return np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)


def write_colour_folder(root: Path, per_class: int = 30, seed: int = 0, formats=("png",)) -> Path:
    """One class folder per colour, images in the given formats (cycled), of a few sizes."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            width, height = (24, 20) if i % 2 else (18, 30)
            suffix = formats[i % len(formats)]
            Image.fromarray(colour_image(colour, rng, width, height)).save(root / name / f"{i:03d}.{suffix}")
    return root


def statistics(checkpoint: dict) -> dict:
    """The folder's mean and std in a checkpoint's data-module state (which also holds the data position)."""
    return {key: checkpoint["FolderDataModule"][key] for key in ("mean", "std")}


def datamodule(data_dir: Path, **kwargs) -> FolderDataModule:
    options = dict(image_size=16, batch_size=16, split_seed=0, shuffle_seed=0, augment={})
    return FolderDataModule(data_dir=str(data_dir), **{**options, **kwargs})


# -- read_image ----------------------------------------------------------------------------------
def test_read_image_reads_every_format_and_mode(tmp_path):
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 200
    for suffix in ("png", "jpg", "bmp", "webp", "gif", "tiff"):
        Image.fromarray(red).save(tmp_path / f"red.{suffix}")
        image = read_image(tmp_path / f"red.{suffix}", channels=3, size=8)
        assert image.shape == (3, 8, 8) and image.dtype == torch.uint8
        assert abs(int(image[0].float().mean()) - 200) <= 6 and int(image[1:].max()) <= 12, suffix
        gray = read_image(tmp_path / f"red.{suffix}", channels=1, size=8)
        assert gray.shape == (1, 8, 8) and abs(int(gray.float().mean()) - round(200 * 0.299)) <= 6, suffix
    # 16-bit grayscale: scaled to 8 bit (65535 -> 255), not clipped.
    deep = np.full((10, 10), 32896, np.uint16)  # 128 * 257
    deep[:, 5:] = 65535
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png", channels=3, size=10)
    assert image.shape == (3, 10, 10) and image[:, :, :5].unique().tolist() == [128]
    assert image[:, :, 5:].unique().tolist() == [255]
    # RGBA: transparent pixels composited on white, opaque ones kept.
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0], rgba[:5, :, 3] = 255, 255  # opaque red top half, transparent bottom half
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png", channels=3, size=10)
    assert image[:, :5].flatten(1).float().mean(1).tolist() == [255.0, 0.0, 0.0]
    assert image[:, 5:].unique().tolist() == [255]
    # Grayscale to 3 channels, palette images.
    Image.fromarray(np.full((6, 6), 90, np.uint8)).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png", channels=3, size=6).unique().tolist() == [90]
    Image.fromarray(red).convert("P").save(tmp_path / "palette.png")
    assert read_image(tmp_path / "palette.png", channels=3, size=6)[0].float().mean() > 190
    assert {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif"} <= IMAGE_SUFFIXES


def test_crop_cuts_the_centre_and_pad_fits_the_whole_image(tmp_path):
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10] = 255  # white left third
    Image.fromarray(wide).save(tmp_path / "wide.png")
    cropped = read_image(tmp_path / "wide.png", channels=1, size=10, resize="crop")
    assert cropped.max() == 0  # the centre 10x10 is the black middle third
    padded = read_image(tmp_path / "wide.png", channels=1, size=30, resize="pad")
    assert padded.shape == (1, 30, 30)
    assert padded[0, :10].max() == 0 and padded[0, 20:].max() == 0  # black bars above and below
    assert padded[0, 15, :9].min() == 255 and padded[0, 15, 11:].max() == 0


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high with a red top-left quadrant; EXIF orientation 6: shown rotated 90 degrees
    # clockwise, 20 wide x 40 high, red in the top-right quadrant.
    stored = np.full((20, 40, 3), 255, np.uint8)
    stored[:10, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rotated.jpg", channels=3, size=40, resize="pad").int()
    # Padded left and right by 10 columns; the shown image spans columns 10..29.
    assert image[:, :, :8].max() <= 10 and image[:, :, 32:].max() <= 10
    is_red = (image[0] > 200) & (image[1] < 60)
    assert is_red[2:18, 22:28].all(), "the red quadrant is not at the top right"
    assert not is_red[2:18, 12:18].any() and not is_red[22:38].any()


def test_unreadable_files_raise_data_error_naming_the_path(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "whole.png")
    (tmp_path / "truncated.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])
    for name in ("notes.txt", "truncated.png", "missing.png"):
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / name}: not a readable image (")):
            read_image(tmp_path / name, channels=3, size=8)


# -- the data module -----------------------------------------------------------------------------
def test_mixed_folder_is_decoded_split_per_class_and_bad_files_skipped_with_one_warning(tmp_path, caplog):
    root = write_colour_folder(tmp_path / "images", per_class=20, formats=("png", "jpg", "bmp", "webp", "gif"))
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "green" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (root / ".DS_Store").write_text("hidden files are ignored")
    with caplog.at_level(logging.WARNING, logger="litvision.data.folder"):
        data = datamodule(root, val_fraction=0.2, test_fraction=0.1)
        data.setup("fit")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 2 unreadable" in warnings[0].getMessage()
    assert str(root / "red" / "notes.txt") in warnings[0].getMessage()
    assert str(root / "green" / "broken.jpg") in warnings[0].getMessage()
    assert data.class_names == ["blue", "green", "red"] and data.num_classes == 3
    # Per class (20 or 21 files): about 2 test, 4 validation and the rest training images.
    per_class = {split: torch.bincount(labels, minlength=3) for split, (_, labels) in data.splits.items()}
    assert sum(int(counts.sum()) for counts in per_class.values()) == 60  # the two bad files left out
    # The split is planned over the file list, so a bad file leaves its split one short in its class.
    assert per_class["test"].tolist() == [2, 2, 2] and per_class["val"].tolist() in ([4, 4, 4], [4, 4, 3], [4, 3, 4])
    for split, (images, labels) in data.splits.items():
        assert images.shape[1:] == (3, 16, 16) and images.dtype == torch.uint8
        # The colour decides the class: the dominant channel is blue, green, red for labels 0, 1, 2.
        dominant = images.float().mean(dim=(2, 3)).argmax(dim=1)
        assert torch.equal(dominant, torch.tensor([2, 1, 0])[labels]), split
    # Mean/std from the training split, per channel.
    train = data.splits["train"][0].float() / 255
    assert data.state_dict()["mean"] == pytest.approx(train.mean(dim=(0, 2, 3)).tolist(), abs=1e-4)
    assert data.state_dict()["std"] == pytest.approx(train.std(dim=(0, 2, 3), correction=0).tolist(), abs=1e-4)

    with pytest.raises(DataError, match=r"not a readable image .*\(and 1 more\); data.on_bad_image=skip"):
        datamodule(root, on_bad_image="error").setup("fit")


def test_train_val_test_folders_are_used_as_given_and_grayscale_pad_works(tmp_path):
    for split, count in (("train", 8), ("val", 3), ("test", 4)):
        write_colour_folder(tmp_path / split, per_class=count, seed=count)
    data = datamodule(tmp_path, in_channels=1, resize="pad", image_size=12)
    data.setup("fit")
    assert {s: len(labels) for s, (_, labels) in data.splits.items()} == {"train": 24, "val": 9, "test": 12}
    assert data.splits["train"][0].shape[1:] == (1, 12, 12) and len(data.state_dict()["mean"]) == 1


def test_cache_is_reused_and_invalidated_when_a_file_or_a_setting_changes(tmp_path, monkeypatch):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    first = datamodule(root)
    first.setup("fit")
    caches = list(root.glob(".litvision-cache-*.npy"))
    assert len(caches) == 1

    calls = []
    real = folder_files.read_image_array

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache matches")

    monkeypatch.setattr(folder_files, "read_image_array", refuse)
    second = datamodule(root)
    second.setup("fit")
    for split in ("train", "val", "test"):
        assert all(torch.equal(a, b) for a, b in zip(first.splits[split], second.splits[split]))

    monkeypatch.setattr(folder_files, "read_image_array", counting)
    changed = root / "red" / "000.png"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    datamodule(root).setup("fit")
    assert len(calls) == 18  # the whole folder decoded again
    assert list(root.glob(".litvision-cache-*.npy")) != caches and len(list(root.glob(".litvision-cache-*"))) == 2

    calls.clear()
    datamodule(root, image_size=8).setup("fit")  # other decode settings: a cache of their own
    assert len(calls) == 18 and len(list(root.glob(".litvision-cache-*.npy"))) == 2


@pytest.mark.parametrize(
    "layout,message",
    [
        ({}, "has no class folders"),
        ({"cats": 3}, "has one class folder (cats)"),
        ({"cats": 3, "dogs": 0}, "empty class folder"),
        ({"cats": 2, "dogs": 2, "_num_classes": 3}, "data.num_classes=3 but"),
    ],
)
def test_folder_problems_are_one_clear_error(layout, message, tmp_path):
    layout = dict(layout)
    num_classes = layout.pop("_num_classes", None)
    for name, count in layout.items():
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name / f"{i}.png")
    with pytest.raises(DataError, match=re.escape(message)):
        datamodule(tmp_path, num_classes=num_classes).setup("fit")


@pytest.mark.parametrize(
    "options,message",
    [
        ({"in_channels": 4}, "data.in_channels must be 1 or 3"),
        ({"image_size": 0}, "data.image_size must be an integer >= 1"),
        ({"resize": "stretch"}, "data.resize must be crop or pad"),
        ({"on_bad_image": "ignore"}, "data.on_bad_image"),
        ({"val_fraction": 1.0}, "data.val_fraction must be in [0, 1)"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "data.val_fraction + data.test_fraction must be < 1"),
        ({"decode_workers": 0}, "data.decode_workers"),
        ({"in_memory": "maybe"}, "data.in_memory must be auto, true or false"),
        ({"memory_budget": 0}, "data.memory_budget must be"),
        ({"mean": [0.5, 0.5, 0.5]}, "data.mean and data.std: give both or neither"),
        ({"augment": {"flip": "yes"}}, "data.augment.flip"),  # the options every data module has
    ],
)
def test_bad_folder_options_are_one_line_before_any_file_is_decoded(options, message, tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=2)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        datamodule(root, **options)
    assert "\n" not in str(caught.value) and not list(root.glob(".litvision-cache-*"))


def test_missing_folder_is_one_line_at_the_command_line(tmp_path):
    nowhere = tmp_path / "nowhere"
    result = run_main("train.py", "data=folder", f"data.data_dir={nowhere}", f"paths.root_dir={tmp_path}", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "is not a folder" in result.stderr


def test_dataloader_path_yields_the_same_examples_and_skips_bad_files(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=6)
    (root / "red" / "zz.txt").write_text("not an image")
    tensor = datamodule(root, val_fraction=0.2)
    tensor.setup("fit")
    loader = datamodule(root, val_fraction=0.2, loader="dataloader")
    loader.setup("fit")
    for split, method in (("val", loader.val_dataloader), ("test", loader.test_dataloader)):
        batches = list(method())
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        assert torch.equal(images, tensor.splits[split][0]) and torch.equal(labels, tensor.splits[split][1])
    seen = sum(len(labels) for _, labels in loader.train_dataloader())
    assert seen == len(tensor.splits["train"][1])  # the unreadable file dropped from its batch


# -- whole runs ----------------------------------------------------------------------------------
def test_training_on_a_folder_learns_a_separable_task(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=40, formats=("png", "jpg"))
    run_main(
        "train.py",
        "data=folder",
        f"data.data_dir={root}",
        "data.image_size=16",
        "data.batch_size=8",
        "model=mlp",
        "trainer.max_epochs=5",
        f"paths.root_dir={tmp_path}",
        *QUIET,
    )
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert metrics["test/acc"] >= 0.9, metrics  # chance: 1/3


def test_a_folder_runs_statistics_travel_in_its_checkpoint_to_resume_predict_and_export(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=12)
    args = ["data=folder", f"data.data_dir={root}", "data.image_size=8", "model=mlp", "logger=none", "test=false"]
    train(compose_train([*args, *QUIET, "trainer.max_epochs=1"], tmp_path / "first"))
    first = tmp_path / "first" / "checkpoints" / "last.ckpt"
    trained_with = FolderDataModule(data_dir=str(root), image_size=8)
    trained_with.setup("fit")
    stats = trained_with.state_dict()  # what the training split gives
    saved = read_checkpoint(first)
    assert statistics(saved) == stats  # the data module's state, under its class name
    assert saved["hyper_parameters"]["data_config"]["mean"] is None  # the model's config is the run's, untouched

    # Prediction normalizes as the training batches were: the same probabilities for the same pixels.
    model, data_config = probability_model(saved)
    assert data_config["mean"] == pytest.approx(stats["mean"]) and data_config["std"] == pytest.approx(stats["std"])
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        trained = load_classifier(saved)(trained_with.prepare_batch(images, augment=False)).softmax(dim=1)
        torch.testing.assert_close(model(images), trained)
    run_main("export.py", f"ckpt_path={first}", "format=torchscript", f"hydra.run.dir={tmp_path / 'export'}")
    meta = json.loads(first.with_suffix(".pt.json").read_text())
    assert meta["mean"] == pytest.approx(stats["mean"]) and meta["std"] == pytest.approx(stats["std"])

    # A resumed run keeps the statistics its weights were trained with, even after the folder changed.
    for i in range(6):
        Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(root / "red" / f"white_{i}.png")
    resumed = tmp_path / "resumed"
    train(compose_train([*args, *QUIET, "trainer.max_epochs=2", f"ckpt_path={first}"], resumed))
    continued = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert continued["epoch"] == 1 and statistics(continued) == statistics(saved)


@pytest.mark.slow
def test_k_fold_sweep_runs_every_fold_and_summarize_reports_mean_and_std(tmp_path):
    root = write_colour_folder(tmp_path / "images", per_class=12)
    sweep = tmp_path / "sweep"
    run_main(
        "train.py",
        "-m",
        "data=folder",
        f"data.data_dir={root}",
        "data.image_size=8",
        "data.num_folds=3",
        "data.fold=0,1,2",
        "model=mlp",
        "trainer.max_epochs=1",
        f"paths.root_dir={tmp_path}",
        f"hydra.sweep.dir={sweep}",
        *QUIET,
    )
    table = run_main("summarize.py", str(sweep)).stdout
    assert "Mean ± std over folds:" in table, table
    assert re.search(r"\| 0,1,2 \| \d\.\d{4} ± \d\.\d{4} \|", table), table
