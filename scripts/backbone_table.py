"""Write the table of a few pretrained backbones into docs/backbones.md: python scripts/backbone_table.py [--check].

Parameter counts, input sizes and mean/std come from the libraries' own metadata (torchvision's weights
enums, timm's pretrained configs; timm's counts by building the net, which downloads nothing): nothing in
the table is typed by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import timm
import torchvision.models as tv_models

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "backbones.md"
START, END = "<!-- backbones:start -->", "<!-- backbones:end -->"
TORCHVISION = ["resnet18", "resnet50", "efficientnet_b0", "mobilenet_v3_small", "convnext_tiny", "vit_b_16"]
TIMM = ["resnet10t", "efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224"]


def _values(values) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def torchvision_row(name: str) -> list[str]:
    weights = tv_models.get_model_weights(name).DEFAULT
    transforms = weights.transforms()
    sizes = f"{transforms.crop_size[0]} (resized to {transforms.resize_size[0]})"
    stats = f"{_values(transforms.mean)} / {_values(transforms.std)}"
    return ["torchvision", f"`{name}`", weights.name, f"{weights.meta['num_params']:,}", sizes, stats]


def timm_row(name: str) -> list[str]:
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    data = timm.data.resolve_data_config(pretrained_cfg=cfg)
    params = sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters())
    sizes = f"{data['input_size'][-1]} (crop {data['crop_pct']:.3g})"
    tag = cfg.get("tag") or "default"
    return ["timm", f"`{name}`", tag, f"{params:,}", sizes, f"{_values(data['mean'])} / {_values(data['std'])}"]


def render() -> str:
    header = ["library", "model.net.name", "DEFAULT weights", "parameters (1,000 classes)", "image_size", "mean / std"]
    rows = [torchvision_row(name) for name in TORCHVISION] + [timm_row(name) for name in TIMM]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is out of date; write nothing")
    args = parser.parse_args()
    page = PAGE.read_text(encoding="utf-8")
    head, rest = page.split(START)
    _, tail = rest.split(END)
    updated = f"{head}{START}\n{render()}\n{END}{tail}"
    if args.check:
        if updated != page:
            sys.exit("the backbone table of docs/backbones.md is out of date: run python scripts/backbone_table.py")
        print("the backbone table of docs/backbones.md is up to date")
    elif updated != page:
        PAGE.write_text(updated, encoding="utf-8")
        print(f"wrote the backbone table to {PAGE}")


if __name__ == "__main__":
    main()
