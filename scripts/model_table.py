"""Regenerate the model table of docs/models.md from the model configs: python scripts/model_table.py

Builds every conf/model/<name>.yaml with its defaults on a 1x28x28 and a 3x32x32 image (no dataset
files needed) and writes name, origin (the first paragraph of the net's module docstring),
parameters and multiply-accumulates between the models markers of docs/models.md. ``--check`` only
reports whether that page is up to date (exit status 1 if not).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from litvision.models.profile import format_count, profile, totals
from litvision.support.instantiate import build

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "models.md"
START, END = "<!-- models:start -->", "<!-- models:end -->"
DATASETS = (("fashion_mnist", "1×28×28"), ("cifar10", "3×32×32"))

INTRO = """\
Every model is a `model=<name>` option (`conf/model/<name>.yaml`). `conf/model/base/classifier.yaml`
gives every net `in_channels`, `num_classes` and `image_size` from the data config, so any model runs
on any dataset. To pick one: the table is sorted by compute (MACs at 3×32×32), so the tutorial nets
come first and the classic families, sized for CIFAR-10 and a GPU, after them. All are adapted to
28-32 pixel images (a 3x3 stride-1 stem instead of the 224-pixel one; each module's docstring says
what changed), so nothing is upsampled; `data.image_size=<n>` resizes the batches on the device for
anyone who wants the original input size, e.g. `model=alexnet data.image_size=224
model.net.first_kernel=11 model.net.first_stride=4`. The numbers are for each config's defaults
(ResNet-18, VGG-16, WRN-16-4, DenseNet-BC-100, ...) with 10 classes; `model.net.depth=50`,
`model.net.width=0.5` and the like pick other variants. MACs are the multiply-accumulates of the
convolutions and linear layers for one image; `python scripts/model_summary.py model=<name>
data=<dataset>` lists them layer by layer. Written by `python scripts/model_table.py`."""


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("train", overrides=overrides)


def origin(net) -> str:
    """The first paragraph of the docstring of the module defining ``net``'s class, on one line."""
    doc = inspect.getmodule(type(net)).__doc__ or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


def measure(model: str) -> dict:
    row: dict = {"name": model}
    for dataset, shape_label in DATASETS:
        cfg = compose_train([f"model={model}", f"data={dataset}"])
        net = build(cfg.model.net, f"model {model}")
        input_shape = (cfg.data.in_channels, cfg.data.image_size, cfg.data.image_size)
        total = totals(net, profile(net, input_shape))
        row["origin"] = origin(net)
        row[shape_label] = (total.params, total.macs)
    return row


def render(rows: list[dict]) -> str:
    labels = [label for _, label in DATASETS]
    header = ["model", "origin"] + [f"{what}, {label}" for label in labels for what in ("params", "MACs")]
    lines = ["| " + " | ".join(header) + " |", "| --- | --- |" + " ---: |" * (len(header) - 2)]
    for row in sorted(rows, key=lambda r: (r[labels[-1]][1], r["name"])):
        numbers = [text for label in labels for text in (f"{row[label][0]:,}", format_count(row[label][1]))]
        lines.append("| " + " | ".join([f"`{row['name']}`", row["origin"], *numbers]) + " |")
    return "\n".join([INTRO, "", *lines])


def with_region(page: str, region: str) -> str:
    if page.count(START) != 1 or page.count(END) != 1 or page.index(START) > page.index(END):
        sys.exit(f"error: {PAGE} needs exactly one {START} ... {END} pair")
    head, rest = page.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{region}\n{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the table in docs/models.md is out of date; write nothing"
    )
    args = parser.parse_args()
    models = sorted(path.stem for path in (ROOT / "conf" / "model").glob("*.yaml"))
    page = PAGE.read_text(encoding="utf-8")
    updated = with_region(page, render([measure(model) for model in models]))
    if args.check:
        if updated != page:
            sys.exit("the model table of docs/models.md is out of date: run python scripts/model_table.py")
        print("the model table of docs/models.md is up to date")
        return
    if updated != page:
        PAGE.write_text(updated, encoding="utf-8")
    print(f"wrote the table of {len(models)} models to {PAGE}")


if __name__ == "__main__":
    main()
