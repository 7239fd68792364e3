"""scripts/predict.py and scripts/export.py on a checkpoint trained here on the tiny MNIST files."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import QUIET, compose_train, run_main
from litvision.data.datasets import MNIST_FILES, load_split
from litvision.support.checkpoint import read_checkpoint, saved_configs
from litvision.tasks.export import check_batch, checkpoint_probabilities
from litvision.tasks.train import train


@pytest.fixture(scope="module")
def mnist_ckpt(tiny_data_dir, tmp_path_factory) -> Path:
    """last.ckpt of one epoch of the default model on the tiny MNIST files."""
    run_dir = tmp_path_factory.mktemp("mnist-run")
    overrides = ["data=mnist", f"data.data_dir={tiny_data_dir}", "data.val_size=100", "trainer.max_epochs=1"]
    train(compose_train([*overrides, "test=false", "logger=none", *QUIET], run_dir))
    return run_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def train_images(tiny_data_dir) -> torch.Tensor:
    return load_split(MNIST_FILES, tiny_data_dir, train=True, num_classes=10, shape=(1, 28))[0][:8]


def test_predict_writes_the_checkpoints_own_predictions(mnist_ckpt, train_images, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, image in enumerate(train_images[:5]):
        Image.fromarray(image[0].numpy()).save(photos / f"digit_{i}.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    out = tmp_path / "out"
    result = run_main(
        "predict.py",
        f"ckpt_path={mnist_ckpt}",
        f"inputs=[{photos},{notes}]",
        "batch_size=2",  # the unreadable file lands in a batch of its own, after three full-ish batches
        "top_k=3",
        "contact_sheet=true",
        f"hydra.run.dir={out}",
    )
    with (out / "predictions.csv").open() as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3", "prob_3", "error"]
    assert [Path(row["path"]).name for row in rows] == [f"digit_{i}.png" for i in range(5)] + ["notes.txt"]
    expected = checkpoint_probabilities(read_checkpoint(mnist_ckpt), train_images[:5])
    for row, probs in zip(rows[:5], expected):
        assert row["error"] == ""
        assert row["class_1"] == str(int(probs.argmax()))  # MNIST's class names are the digits
        assert float(row["prob_1"]) == pytest.approx(float(probs.max()), abs=1e-5)
        assert float(row["prob_1"]) >= float(row["prob_2"]) >= float(row["prob_3"])
    assert rows[5]["class_1"] == "" and "not a readable image" in rows[5]["error"]
    assert (out / "contact_sheet.png").stat().st_size > 0
    assert "predictions (first 6 of 6)" in result.stdout  # the printed table


def test_predict_errors_are_one_line(mnist_ckpt, tmp_path):
    missing = run_main("predict.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", "inputs=x.png", check=False)
    assert missing.returncode == 2 and "checkpoint not found" in missing.stderr
    nothing = run_main("predict.py", f"ckpt_path={mnist_ckpt}", f"inputs={tmp_path / 'empty' / '*.png'}", check=False)
    assert nothing.returncode == 2 and "no input files matched" in nothing.stderr
    assert "Traceback" not in missing.stderr + nothing.stderr


def _run_exported(path: Path, fmt: str, images: torch.Tensor) -> torch.Tensor:
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    return torch.jit.load(str(path))(images)


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_matches_the_checkpoint_at_any_batch_size(fmt, suffix, mnist_ckpt, train_images, tmp_path):
    ckpt = shutil.copy(mnist_ckpt, tmp_path / "model.ckpt")  # the default output goes beside the checkpoint
    result = run_main("export.py", f"ckpt_path={ckpt}", f"format={fmt}", f"hydra.run.dir={tmp_path / 'run'}")
    assert "self-check batch: 8 test images" in result.stdout + result.stderr  # the tiny data is found
    exported = tmp_path / f"model{suffix}"
    meta = json.loads((tmp_path / f"model{suffix}.json").read_text())
    assert meta["format"] == fmt and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["channels"] == 1 and meta["image_size"] == 28 and meta["mean"] == [0.1307]
    checkpoint = read_checkpoint(ckpt)
    for batch in (train_images[:1], train_images[:5]):  # the batch dimension is dynamic
        probs = _run_exported(exported, fmt, batch)
        assert probs.shape == (len(batch), 10)
        torch.testing.assert_close(probs, checkpoint_probabilities(checkpoint, batch), atol=1e-4, rtol=0)


def test_export_check_uses_random_images_where_the_data_is_missing(mnist_ckpt, tmp_path):
    _, data_config = saved_configs(read_checkpoint(mnist_ckpt))
    images, source = check_batch({**data_config, "data_dir": str(tmp_path)}, channels=1, size=28)
    assert images.dtype == torch.uint8 and images.shape == (8, 1, 28, 28)
    assert source.startswith("8 random uint8 images")
    assert not list(tmp_path.iterdir()), "nothing may be downloaded for the check"


def test_export_without_onnxruntime_names_the_extra(mnist_ckpt, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    result = run_main(
        "export.py", f"ckpt_path={mnist_ckpt}", "format=onnx", f"output={tmp_path / 'm.onnx'}", check=False
    )
    assert result.returncode == 2 and "pip install 'litvision[export]'" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


@pytest.fixture(scope="module")
def mirrored_ckpt(mnist_ckpt, tmp_path_factory) -> Path:
    """mnist_ckpt's weights with the model option tta_flip switched on."""
    checkpoint = torch.load(mnist_ckpt, weights_only=True)
    checkpoint["hyper_parameters"]["tta_flip"] = True
    path = tmp_path_factory.mktemp("tta") / "tta.ckpt"
    torch.save(checkpoint, path)
    return path


def test_tta_flip_gives_an_image_and_its_mirror_one_answer_also_when_exported(
    mnist_ckpt, mirrored_ckpt, train_images, tmp_path
):
    plain = checkpoint_probabilities(read_checkpoint(mnist_ckpt), train_images)
    tta = checkpoint_probabilities(read_checkpoint(mirrored_ckpt), train_images)
    torch.testing.assert_close(checkpoint_probabilities(read_checkpoint(mirrored_ckpt), train_images.flip(-1)), tta)
    assert (plain - tta).abs().max() > 1e-3  # digits are not mirror-symmetric: averaging changes the answer
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".pt")):
        exported = tmp_path / f"tta{suffix}"
        run_main(
            "export.py",
            f"ckpt_path={mirrored_ckpt}",
            f"format={fmt}",
            f"output={exported}",
            f"hydra.run.dir={tmp_path}",
        )
        torch.testing.assert_close(_run_exported(exported, fmt, train_images), tta, atol=1e-4, rtol=0)
