"""Pretrained backbones (model=torchvision, model=timm): weights from the caches or a file, never downloaded.

The weights files are made here: a torchvision resnet18 state dict where torch's cache looks for
ResNet18_Weights.IMAGENET1K_V1 (a tmp TORCH_HOME) and as a plain file; a timm resnet10t in a tmp
Hugging Face cache, and timm's test_vit as a file.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import timm
import torch
import torchvision
from lightning import Callback
from PIL import Image
from safetensors.torch import save_file

from conftest import QUIET, compose_train, run_main
from litvision.models.pretrained import WeightsError, apply_weights_preprocessing
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build, plain
from litvision.tasks.train import train

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name of ResNet18_Weights.IMAGENET1K_V1's url
TIMM_REPO = "models--timm--resnet10t.c3_in1k"
SHORT = ["data.val_size=100", "data.batch_size=16", "data.eval_batch_size=64", "logger=none", *QUIET]
SHORT += ["trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.num_sanity_val_steps=0"]
# Checkpoints only: the figures and the report are other tests' business.
SHORT += [f"callbacks.{name}=null" for name in ("train_samples", "val_predictions", "confusion_matrix")]
SHORT += [f"callbacks.{name}=null" for name in ("learning_curves", "report", "hparams", "epoch_timer")]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory) -> Path:
    """torch's cache (hub/checkpoints), a Hugging Face cache (hf/) and plain files, all made here."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=1000).state_dict()
    (root / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(resnet, root / "hub" / "checkpoints" / RESNET18_FILE)
    torch.save(resnet, root / "resnet18.pt")
    torch.save(torchvision.models.squeezenet1_1().state_dict(), root / "squeezenet.pt")
    snapshot = root / "hf" / TIMM_REPO / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    (root / "hf" / TIMM_REPO / "refs").mkdir()
    (root / "hf" / TIMM_REPO / "refs" / "main").write_text("0123456789abcdef")
    save_file(timm.create_model("resnet10t").state_dict(), str(snapshot / "model.safetensors"))
    torch.save(timm.create_model("test_vit", num_classes=7).state_dict(), root / "test_vit.pth")
    return root


@pytest.fixture
def caches(weights_dir, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(weights_dir))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(weights_dir / "hf"))
    return weights_dir


@pytest.fixture
def empty_caches(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def _net(overrides: list[str], tmp_path: Path):
    cfg = compose_train(overrides, tmp_path)
    return build(cfg.model.net, "model.net"), cfg


def test_torchvision_weights_load_from_torch_s_cache_with_a_new_head_and_one_channel(caches, tmp_path):
    net, _ = _net(["model=torchvision", "model.net.weights=DEFAULT", "data=mnist"], tmp_path)
    saved = torch.load(caches / "hub" / "checkpoints" / RESNET18_FILE, weights_only=True)
    own = net.model.state_dict()
    assert net.pretrained and net.head() is net.model.fc and net.head().out_features == 10
    for name, tensor in own.items():
        if name == "conv1.weight":  # 1-channel MNIST: the RGB kernel summed over its channels
            torch.testing.assert_close(tensor, saved[name].sum(dim=1, keepdim=True), rtol=0, atol=0)
        elif not name.startswith("fc."):
            torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    assert net.eval()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_timm_weights_load_from_the_hugging_face_cache_and_from_a_file(caches, tmp_path):
    net, _ = _net(["model=timm", "model.net.weights=DEFAULT", "data=cifar10"], tmp_path)
    saved = timm.models.load_state_dict(str(next((caches / "hf").rglob("model.safetensors"))))
    assert net.head().out_features == 10
    for name, tensor in net.model.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(tensor, saved[name], rtol=0, atol=0)
    vit_file = ["model.net.name=test_vit", f"model.net.weights={caches / 'test_vit.pth'}", "data.image_size=32"]
    vit, _ = _net(["model=timm", *vit_file], tmp_path)
    saved = torch.load(caches / "test_vit.pth", weights_only=True)
    torch.testing.assert_close(vit.model.blocks[0].attn.qkv.weight, saved["blocks.0.attn.qkv.weight"], rtol=0, atol=0)
    assert vit.head().out_features == 10  # the file's 7-class head is replaced


def test_the_weights_preprocessing_becomes_the_data_config_s(caches, tmp_path):
    cfg = compose_train(["model=torchvision", "model.net.weights=DEFAULT", "data=mnist"], tmp_path)
    apply_weights_preprocessing(cfg)
    # ImageNet's RGB mean/std averaged for one channel, and the 224-pixel crop of weights.transforms().
    assert cfg.data.mean == [pytest.approx(0.449)] and cfg.data.std == [pytest.approx(0.226)]
    assert cfg.data.image_size == cfg.model.net.image_size == 224
    cfg = compose_train(["model=timm", "model.net.weights=DEFAULT", "model.net.preprocessing=[mean]"], tmp_path)
    apply_weights_preprocessing(cfg)
    assert cfg.data.mean == [pytest.approx(0.449)] and cfg.data.std == [0.3530] and cfg.data.image_size == 28
    cfg = compose_train(["model=torchvision", f"model.net.weights={caches / 'resnet18.pt'}"], tmp_path)
    apply_weights_preprocessing(cfg)  # a file's preprocessing is unknown: the data's own
    assert cfg.data.image_size == 28


def test_offline_missing_weights_are_one_line_naming_file_folder_and_the_alternative(empty_caches):
    result = run_main("train.py", "model=torchvision", "model.net.weights=DEFAULT", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: resnet18 ResNet18_Weights.IMAGENET1K_V1 weights: resnet18-f37072fd.pth is not in ")
    assert str(empty_caches / "torch" / "hub" / "checkpoints") in line and "model.net.weights=<path>" in line
    with pytest.raises(WeightsError, match=r"model.safetensors of timm/resnet10t.c3_in1k is not in .*models--timm"):
        _net(["model=timm", "model.net.weights=DEFAULT"], empty_caches)


def test_bad_names_and_files_are_one_clear_error(caches, tmp_path):
    with pytest.raises(LitvisionError, match="unknown torchvision model 'resnet19'; closest: resnet18"):
        _net(["model=torchvision", "model.net.name=resnet19"], tmp_path)
    with pytest.raises(LitvisionError, match="unknown weights for resnet18 'IMAGENET1K_V2'; closest: IMAGENET1K_V1"):
        _net(["model=torchvision", "model.net.weights=IMAGENET1K_V2"], tmp_path)
    with pytest.raises(LitvisionError, match="unknown timm model 'resnet10x'; closest: resnet10t"):
        _net(["model=timm", "model.net.name=resnet10x"], tmp_path)
    with pytest.raises(WeightsError, match="does not fit this network: tensors .* weights of another architecture"):
        _net(["model=torchvision", f"model.net.weights={caches / 'squeezenet.pt'}"], tmp_path)
    with pytest.raises(
        WeightsError, match="resnet10t: .* does not fit this network: .*weights of another architecture"
    ):
        _net(["model=timm", f"model.net.weights={caches / 'test_vit.pth'}"], tmp_path)
    with pytest.raises(WeightsError, match="no such file"):
        _net(["model=torchvision", f"model.net.weights={tmp_path / 'gone.pt'}"], tmp_path)


def test_model_timm_without_timm_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import fails as if it were not installed
    with pytest.raises(LitvisionError, match=r'^model=timm needs timm: pip install -e "\.\[timm\]"$'):
        _net(["model=timm"], tmp_path)


class _Watch(Callback):
    """Parameters and BatchNorm buffers when training starts and after each epoch; the optimizer's group rates."""

    latest: _Watch | None = None  # the instance the run's config built

    def __init__(self):
        self.taken: list[dict[str, torch.Tensor]] = []
        self.rates: list[tuple[float, ...]] = []
        _Watch.latest = self

    def _take(self, module) -> None:
        self.taken.append({n: t.detach().clone() for n, t in module.net.state_dict().items()})

    def on_train_start(self, trainer, module) -> None:
        self._take(module)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.rates.append(tuple(group["lr"] for group in trainer.optimizers[0].param_groups))

    def on_train_epoch_end(self, trainer, module) -> None:
        self._take(module)


@pytest.mark.slow
def test_fine_tune_freezes_then_trains_the_backbone_at_its_rate_and_predict_matches_export(
    caches, tiny_data_dir, tmp_path
):
    run = ["model=torchvision", f"model.net.weights={caches / 'resnet18.pt'}", "data=mnist"]
    run += [f"data.data_dir={tiny_data_dir}", "data.image_size=32", "model.freeze_epochs=1"]
    run += ["model.backbone_lr_scale=0.1", "trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false"]
    run += SHORT
    train(compose_train([*run, "+callbacks.watch._target_=test_backbones._Watch"], tmp_path))
    watch = _Watch.latest
    start, frozen, unfrozen = watch.taken
    head = {name for name in start if name.startswith("model.fc.")}
    backbone = set(start) - head
    assert all(torch.equal(frozen[name], start[name]) for name in backbone), "backbone and BN statistics held"
    assert all(not torch.equal(frozen[name], start[name]) for name in head), "the head trains from the start"
    assert any(not torch.equal(unfrozen[name], frozen[name]) for name in backbone), "unfrozen in epoch 1"
    assert all(backbone_lr == pytest.approx(0.1 * head_lr) for head_lr, backbone_lr in watch.rates)

    # Predict and export rebuild the net without its pretrained file: the checkpoint's weights follow.
    (caches / "resnet18.pt").rename(caches / "moved.pt")
    try:
        ckpt, images = tmp_path / "checkpoints" / "last.ckpt", _pngs(tmp_path / "photos")
        predict = [f"ckpt_path={ckpt}", f"inputs={tmp_path / 'photos'}", "top_k=10", "show=0", "progress_bar=false"]
        run_main("predict.py", *predict, f"hydra.run.dir={tmp_path / 'predict'}")
        run_main("export.py", f"ckpt_path={ckpt}", "format=onnx", f"output={tmp_path / 'm.onnx'}")
    finally:
        (caches / "moved.pt").rename(caches / "resnet18.pt")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images})[0]
    with (tmp_path / "predict" / "predictions.csv").open() as stream:
        for row, probs in zip(csv.DictReader(stream), exported):
            for rank in range(1, 11):
                assert float(row[f"prob_{rank}"]) == pytest.approx(probs[int(row[f"class_{rank}"])], abs=1e-5)


def _pngs(folder: Path) -> np.ndarray:
    """Three 32x32 grey PNGs in ``folder`` (sorted names), and the uint8 batch predict reads from them."""
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (3, 32, 32), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image).save(folder / f"{i}.png")
    return pixels[:, None]


@pytest.mark.slow
def test_timm_and_the_finetune_folder_recipe_train_predict_and_export(caches, image_folder, tmp_path):
    run = ["experiment=finetune_folder", f"data.data_dir={image_folder}", "model=timm", "model.net.name=test_vit"]
    run += [f"model.net.weights={caches / 'test_vit.pth'}", "data.image_size=32", "data.augment.crop_padding=2"]
    run += ["trainer=cpu", "trainer.precision=32-true", "trainer.max_epochs=2", "trainer.limit_train_batches=1"]
    cfg = compose_train([*run, *SHORT], tmp_path)
    saved = plain(cfg.model)
    metrics = train(cfg)
    assert np.isfinite(metrics["test/acc"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = run_main("export.py", f"ckpt_path={ckpt}", "format=onnx", f"output={tmp_path / 'm.onnx'}")
    assert "largest difference from the checkpoint" in result.stdout + result.stderr
    assert saved["freeze_epochs"] == 1 and saved["backbone_lr_scale"] == 0.1 and saved["net"]["name"] == "test_vit"
