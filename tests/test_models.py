"""The model zoo: every model on every dataset, known parameter counts, a short fit, bad sizes, summaries."""

from __future__ import annotations

import importlib.util
import math
import re

import pytest
import torch
from omegaconf import DictConfig

from conftest import CONF_DIR, ROOT, compose_train, data_overrides, run_main
from litvision.models.common import ModelConfigError
from litvision.models.profile import profile
from litvision.support.instantiate import build
from litvision.tasks.train import train

MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml"))

# CPU-sized variants for the training and image-size tests: the same code paths as the defaults, a
# fraction of the work.
SMALL_VARIANTS = {
    "alexnet": ["model.net.hidden=256"],
    "vgg": ["model.net.depth=11", "model.net.width=0.25"],
    "nin": ["model.net.width=0.25"],
    "googlenet": ["model.net.width=0.25"],
    "wide_resnet": ["model.net.depth=10", "model.net.widen_factor=1"],
    "densenet": ["model.net.depth=22", "model.net.growth_rate=8"],
    "torchvision": ["model.net.name=mobilenet_v3_small"],  # the backbone path of resnet18, a fifth of its work
}


@pytest.fixture(autouse=True, scope="module")
def one_intra_op_thread():
    """Batches here are a few images: a second thread adds synchronisation, not speed, and on a busy
    machine with few cores its waiting can cost far more than the work itself."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build_net(tmp_path, model: str, dataset: str, *overrides: str) -> tuple[torch.nn.Module, DictConfig]:
    """The net of ``model=<model> data=<dataset>``, and the composed config it came from."""
    cfg = compose_train([f"model={model}", f"data={dataset}", *overrides], tmp_path)
    return build(cfg.model.net, "model.net"), cfg


NUM_CLASSES = 10  # of every dataset config


def parameter_count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_forward_and_backward_on_every_dataset(model, dataset, tmp_path, image_folder):
    torch.manual_seed(0)
    # The defaults: what `model=<name>` trains, sized by the data config (once, in the model base).
    net, cfg = build_net(tmp_path, model, dataset, *data_overrides(dataset, image_folder))
    sizes = ("in_channels", "image_size", "num_classes")
    assert [cfg.model.net[key] for key in sizes] == [cfg.data[key] for key in sizes]
    shape = (cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
    logits = net(torch.randn(2, *shape))
    assert logits.shape == (2, NUM_CLASSES)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).mean().backward()
    gradients = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in gradients), "a parameter got no or a bad gradient"
    # Every parameter shows in exactly one row of the summary, whatever the net's structure.
    assert sum(call.params for call in profile(net, shape)) == parameter_count(net)


@pytest.mark.parametrize("model,count", [("keras_cnn", 243_786), ("lenet", 61_706)])
def test_tutorial_parameter_counts_at_28_pixels(model, count, tmp_path):
    net, _ = build_net(tmp_path, model, "mnist")
    assert parameter_count(net) == count


# Published CIFAR-10 (3x32x32, 10 classes) parameter counts of the same architectures; VGG-16 is
# pytorch-cifar's 14,728,266 less the 4,224 convolution biases it keeps in front of BatchNorm. These
# nets end in global pooling, so the count does not depend on the image size: 8 pixels keep the
# construction's dry forward cheap.
PUBLISHED_COUNTS = [
    ("resnet", ["model.net.depth=18"], 11_173_962),
    ("resnet", ["model.net.depth=50"], 23_520_842),
    ("vgg", ["model.net.depth=16"], 14_728_266 - 4_224),
    ("wide_resnet", ["model.net.depth=16", "model.net.widen_factor=4"], 2_748_890),
    ("densenet", ["model.net.depth=100", "model.net.growth_rate=12"], 769_162),
]


@pytest.mark.parametrize(
    "model,overrides,count", PUBLISHED_COUNTS, ids=lambda v: "-".join(v) if isinstance(v, list) else None
)
def test_classic_families_match_published_parameter_counts(model, overrides, count, tmp_path):
    net, _ = build_net(tmp_path, model, "cifar10", *overrides, "data.image_size=8")
    assert parameter_count(net) == count


@pytest.mark.parametrize("model", MODELS)
def test_one_epoch_fit_on_tiny_data(model, tiny_data_dir, image_folder, tmp_path):
    # Each dataset gets a share of the models; data=streaming trains in test_data_scale (it needs a converted dataset).
    datasets = [name for name in DATASETS if name != "streaming"]
    dataset = datasets[MODELS.index(model) % len(datasets)]
    cfg = compose_train(
        [
            f"model={model}",
            f"data={dataset}",
            *SMALL_VARIANTS.get(model, []),
            f"data.data_dir={image_folder if dataset == 'folder' else tiny_data_dir}",
            "data.val_size=100",
            "data.batch_size=8",
            "data.eval_batch_size=8",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
            "test=false",
            "callbacks=none",
            "~logger",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["val/loss"])
    assert "val/acc" in metrics


def net_at(cfg, image_size: int) -> torch.nn.Module:
    """The net of ``cfg`` for ``data.image_size=<image_size>`` (its size keys interpolate the data config)."""
    cfg.data.image_size = image_size
    return build(cfg.model.net, "model.net")


def accepted_sizes_message(cfg, image_size: int) -> str | None:
    try:
        net_at(cfg, image_size)
    except ModelConfigError as err:
        return str(err)
    return None


@pytest.mark.parametrize("model", MODELS)
def test_a_too_small_image_fails_at_construction_naming_the_smallest_size(model, tmp_path):
    cfg = compose_train([f"model={model}", "data=mnist", *SMALL_VARIANTS.get(model, [])], tmp_path)
    message = accepted_sizes_message(cfg, 2)
    smallest = 2 if message is None else int(re.search(r"at least (\d+)x\1", message).group(1))
    if message is not None:
        assert model in message and "got 2x2" in message
        assert accepted_sizes_message(cfg, smallest - 1) is not None
    # The smallest size it accepts really goes through it (2x2 for a net that takes any size).
    net = net_at(cfg, smallest)
    assert net.eval()(torch.zeros(1, cfg.data.in_channels, smallest, smallest)).shape == (1, NUM_CLASSES)


def test_too_small_image_is_one_line_at_the_command_line():
    result = run_main("model_summary.py", "model=lenet", "data.image_size=8", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: lenet needs images of at least 12x12 pixels, got 8x8 (data.image_size=12 or more resizes the batches)"
    )


def test_unknown_model_lists_the_available_ones():
    # Hydra refuses it while composing train.yaml, the same for every script built on it: one line, exit 2.
    result = run_main("model_summary.py", "model=lenet5", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: model=lenet5: no such option (closest: lenet")
    listed = result.stderr.rsplit("model takes one of: ", 1)[1].strip().split(", ")
    assert listed == MODELS


def test_summary_prints_the_keras_table_without_dataset_files(tmp_path):
    # Run from an empty folder: no data/ to read and nothing written (a summary is not a run).
    result = run_main("model_summary.py", "model=keras_cnn", "data=fashion_mnist", "data.download=false", cwd=tmp_path)
    rows = {
        line.split()[0]: line.split()
        for line in result.stdout.splitlines()
        if line.startswith(("features.", "classifier."))
    }
    # Hand-computed: conv 26*26*64*(1*9) MACs, conv 11*11*64*(64*9), dense 1600*128 and 128*10.
    assert rows["features.0"][-2:] == ["640", "389,376"]
    assert rows["features.3"][-2:] == ["36,928", "4,460,544"]
    assert rows["classifier.0"][-2:] == ["204,928", "204,800"]
    assert rows["classifier.2"][-2:] == ["1,290", "1,280"]
    assert "(64, 13, 13)" in result.stdout and "(1600,)" in result.stdout
    assert "Total params: 243,786" in result.stdout
    assert "MACs per image: 5,056,000" in result.stdout
    assert list(tmp_path.iterdir()) == []


def load_model_table_script():
    spec = importlib.util.spec_from_file_location("model_table", ROOT / "scripts" / "model_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_table_measures_and_replaces_only_its_region():
    model_table = load_model_table_script()
    row = model_table.measure("keras_cnn")
    assert row["1×28×28"] == (243_786, 5_056_000)
    assert row["origin"].startswith("The Keras CNN of the MNIST tutorial")
    region = model_table.render([row])
    assert "| `keras_cnn` |" in region and "| 243,786 | 5.06M |" in region
    readme = f"intro\n{model_table.START}\nstale\n{model_table.END}\noutro\n"
    assert (
        model_table.with_region(readme, region) == f"intro\n{model_table.START}\n{region}\n{model_table.END}\noutro\n"
    )


def test_models_page_lists_every_model_config():
    page = (ROOT / "docs" / "models.md").read_text(encoding="utf-8")
    region = page.split("<!-- models:start -->")[1].split("<!-- models:end -->")[0]
    listed = sorted(re.findall(r"^\| `(\w+)` \|", region, flags=re.MULTILINE))
    assert listed == MODELS, "run python scripts/model_table.py"
