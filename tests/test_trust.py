"""Checkpoints and folder names from outside are data: loading them calls nothing, interpolates nothing,
overwrites nothing; a hostile one is one ``error:`` line and exit status 2.

The other loaders have their own files: tests/test_trust_cache.py (decode cache, bombs, interrupted
decodes), test_trust_streaming.py (LitData folders), test_trust_scale.py (many or odd classes),
test_trust_runs.py (run and sweep folders, atomic result files, shared Optuna studies).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import QUIET, compose_train, run_main
from datafiles import Planted
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import CheckpointError
from litvision.support.file_config import UntrustedConfigError, check_targets, escape_interpolation
from litvision.tasks.train import train

LOADERS = {  # each script that opens a checkpoint, with the arguments it needs besides ckpt_path
    "eval.py": [],
    "predict.py": ["inputs={images}"],
    "export.py": ["format=torchscript", "output={out}/model.pt"],
}


@pytest.fixture(scope="module")
def saved(tiny_data_dir, tmp_path_factory) -> dict:
    """The checkpoint dict of a one-epoch MLP run on the tiny MNIST files."""
    run_dir = tmp_path_factory.mktemp("trust-run")
    overrides = ["data=mnist", f"data.data_dir={tiny_data_dir}", "data.val_size=100", "model=mlp"]
    train(compose_train([*overrides, "trainer.max_epochs=1", "test=false", "logger=none", *QUIET], run_dir))
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("L", (28, 28), 128).save(folder / "digit.png")
    return folder


def hostile(saved: dict, tmp_path: Path, **changes) -> Path:
    """A copy of the checkpoint whose hyper_parameters have ``changes`` (dotted keys), saved as a real file."""
    checkpoint = copy.deepcopy(saved)
    for dotted, value in changes.items():
        node, *path, last = [checkpoint["hyper_parameters"], *dotted.split("__")]
        for key in path:
            node = node[key]
        node[last] = value
    path = tmp_path / "hostile.ckpt"
    torch.save(checkpoint, path)
    return path


def run_loader(script: str, ckpt: Path, tmp_path: Path, images: Path):
    out = tmp_path / "out"
    extra = [arg.format(images=images, out=out) for arg in LOADERS[script]]
    return run_main(script, f"ckpt_path={ckpt}", *extra, f"hydra.run.dir={out}", check=False)


def assert_one_error_line(result, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# A net that appends to a file when built: what the hostile probe did to ~/.bashrc.
def appending_net(sentinel: Path) -> dict:
    return {
        "_target_": "shutil.copyfileobj",
        "_args_": [
            {"_target_": "io.StringIO", "_args_": ["echo pwned\n"]},
            {"_target_": "builtins.open", "_args_": [str(sentinel), "a"]},
        ],
    }


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(LOADERS))
def test_a_checkpoint_whose_net_calls_code_is_refused_by_every_loader(script, saved, tmp_path, images):
    sentinel = tmp_path / "bashrc"
    ckpt = hostile(saved, tmp_path, net=appending_net(sentinel))
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    result = run_loader(script, ckpt, tmp_path, images)
    assert_one_error_line(result, "hyper_parameters.net", "shutil.copyfileobj")
    assert not sentinel.exists()
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before  # the input is untouched
    assert not (tmp_path / "out" / "model.pt").exists() and not (tmp_path / "out" / "predictions.csv").exists()


@pytest.mark.parametrize(
    "key, value, named",
    [
        # a nested target inside an allowed one: the optimizer's learning rate "computed" by os.system
        ("optimizer__lr", {"_target_": "os.system", "_args_": ["touch {sentinel}"]}, "hyper_parameters.optimizer.lr"),
        # an allowed package's module attribute leading outside it: torch.optim.lr_scheduler imports torch
        ("scheduler", {"_target_": "torch.optim.lr_scheduler.torch.load", "_args_": ["{sentinel}"]}, "torch.load"),
        ("data_config___target_", "numpy.load", "numpy.load"),
        # a function of an allowed package that is not a builder: not on the short list of factories
        ("net", {"_target_": "litvision.support.atomic.write_text", "_args_": ["{sentinel}", "x"]}, "write_text"),
        ("net", {"_target_": "litvision.models.mlp._private", "width": 1}, "_private"),
        ("metrics__acc", {"_target_": "torchmetrics.classification.MulticlassAccuracy", "_foo_": 1}, "'_foo_'"),
        ("net", {"_target_": "os.path.join('a')"}, "os.path.join"),
        ("net", {"_target_": 42}, "42"),
    ],
)
def test_every_target_in_a_checkpoint_is_held_to_the_allowlist_before_anything_is_called(
    key, value, named, saved, tmp_path
):
    sentinel = tmp_path / "sentinel"
    value = json.loads(json.dumps(value).replace("{sentinel}", str(sentinel)))
    ckpt = hostile(saved, tmp_path, **{key: value})
    with pytest.raises(UntrustedConfigError) as raised:
        read_checkpoint(ckpt)
    assert named in str(raised.value) and str(ckpt) in str(raised.value)
    assert "\n" not in str(raised.value)
    assert not sentinel.exists()


def test_the_allowlist_admits_what_litvision_saves(saved):
    hparams = saved["hyper_parameters"]
    check_targets(hparams, "hyper_parameters", "last.ckpt")  # the real checkpoint passes
    for allowed in (
        {"_target_": "litvision.models.resnet.ResNet"},
        {"_target_": "torchvision.models.resnet.ResNet"},
        {"_target_": "torch.optim.lr_scheduler.OneCycleLR", "_partial_": True},
        {"_target_": "litvision.schedules.warmup_cosine", "_partial_": True},
        {"_target_": "litvision.data.FolderDataModule"},
        {"_target_": "torch.nn.Sequential", "_args_": [{"_target_": "torch.nn.Flatten"}]},
    ):
        check_targets({"net": allowed}, "hyper_parameters", "x.ckpt")


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "net",
            {"_target_": "torch.optim.SGD", "_partial_": True},
            "model.net builds a partial, not a torch nn.Module",
        ),
        ("surprise", 1, "keys ImageClassifier does not take: ['surprise']"),
        ("data_config__class_names", "0123456789", "class_names is not a list of names"),
        ("data_config__std", [0.0], "std=[0.0] is not one positive number per channel"),
        ("data_config__image_size", 10**9, "image_size=1000000000 is not 1 to 8192"),
    ],
)
def test_a_malformed_checkpoint_config_is_one_line(key, value, message, saved, tmp_path, images):
    ckpt = hostile(saved, tmp_path, **{key: value})
    assert_one_error_line(run_loader("predict.py", ckpt, tmp_path, images), message)


def test_a_saved_init_from_path_is_never_opened(saved, tmp_path, images):
    """Evaluation and prediction rebuild the model with the checkpoint's own weights, not a saved path's (and
    without the fine-tuning options, which only training reads)."""
    ckpt = hostile(saved, tmp_path, init_from=str(tmp_path / "missing.ckpt"), backbone_lr_scale=0.1)
    result = run_loader("predict.py", ckpt, tmp_path, images)
    assert result.returncode == 0, result.stderr[-2000:]


def test_lightning_reads_checkpoints_weights_only(saved, tmp_path):
    """The trainer's own load (resume, eval) goes through the project's CheckpointIO: never a full unpickle."""
    from litvision.support.checkpoint_io import AtomicCheckpointIO

    sentinel = tmp_path / "sentinel"

    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "planted": Planted(sentinel)}, path)
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        AtomicCheckpointIO().load_checkpoint(path, weights_only=False)
    assert not sentinel.exists()
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
    assert not sentinel.exists()


# -- strings from files are literal --------------------------------------------------------------------

HOSTILE_NAMES = ["${oc.env:LITVISION_TEST_SECRET}", "x${y", "a\\${b}", "plain"]


def test_escaped_strings_read_back_literally():
    from omegaconf import OmegaConf

    config = OmegaConf.create(
        {"names": escape_interpolation(HOSTILE_NAMES), "one": escape_interpolation("${oc.env:HOME}")}
    )
    assert OmegaConf.to_container(config, resolve=True) == {"names": HOSTILE_NAMES, "one": "${oc.env:HOME}"}


@pytest.mark.slow
def test_class_folders_named_like_interpolations_stay_literal_through_train_eval_and_predict(tmp_path, monkeypatch):
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("LITVISION_TEST_SECRET", secret)
    folder = tmp_path / "folder"
    for label, name in enumerate(HOSTILE_NAMES):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (60 * label, 20 * i, 100)).save(folder / name / f"{i}.png")
    run = tmp_path / "run"
    args = [f"data.data_dir={folder}", "data.image_size=16", "data.val_size=0.25", "model=mlp", "data=folder"]
    trained = run_main("train.py", *args, "trainer.max_epochs=1", "logger=csv", *QUIET, f"hydra.run.dir={run}")
    ckpt = run / "checkpoints" / "last.ckpt"
    saved_names = read_checkpoint(ckpt)["hyper_parameters"]["data_config"]["class_names"]
    assert saved_names == sorted(HOSTILE_NAMES)
    evaluated = run_main(
        "eval.py", f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    predicted = run_main("predict.py", f"ckpt_path={ckpt}", f"inputs={folder}", f"hydra.run.dir={tmp_path / 'p'}")
    predictions = (tmp_path / "p" / "predictions.csv").read_text()
    assert set(line.split(",")[1] for line in predictions.splitlines()[1:]) <= set(HOSTILE_NAMES)
    for result in (trained, evaluated, predicted):
        assert secret not in result.stdout + result.stderr
    for path in [*run.rglob("*"), *(tmp_path / "eval").rglob("*"), *(tmp_path / "p").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# -- export never writes over what it reads ---------------------------------------------------------------


@pytest.mark.parametrize("output", [None, "{folder}/m.pt", "{folder}/./sub/../m.pt"])
def test_export_refuses_to_write_over_its_input_checkpoint(output, saved, tmp_path):
    ckpt = tmp_path / "m.pt"  # format=torchscript writes <ckpt>.pt by default: the checkpoint itself
    torch.save(saved, ckpt)
    (tmp_path / "sub").mkdir()
    json_twin = tmp_path / "m.pt.json"
    before = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    args = [f"ckpt_path={ckpt}", "format=torchscript", f"hydra.run.dir={tmp_path / 'out'}"]
    if output:
        args.append(f"output={output.format(folder=tmp_path)}")
    result = run_main("export.py", *args, check=False)
    assert_one_error_line(result, "would overwrite", str(ckpt))
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == before
    assert not json_twin.exists()


def test_a_run_that_trains_no_step_is_an_error_not_a_result(tiny_data_dir, tmp_path):
    """An epoch without a batch would test the untrained net and report its accuracy as the run's."""
    from conftest import tiny_mlp_args

    result = run_main("train.py", *tiny_mlp_args(tiny_data_dir, tmp_path), "trainer.limit_train_batches=0", check=False)
    assert_one_error_line(result, "training took no step")
    assert not list(tmp_path.rglob("metrics.json"))
