"""Keras-style model summaries: per-layer output shape, parameters and multiply-accumulates for one image.

Forward hooks on the leaf modules record each call of a dry forward, so layers reused in ``forward``
(torchvision's ResNet blocks call one ReLU twice) show once per call, with their parameters counted
at the first. Multiply-accumulates are counted for convolutions and linear layers, where nearly all
of them are; BatchNorm, activations, pooling and the additions of residual blocks count 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class LayerCall:
    name: str  # qualified module name, as in ``net.named_modules()``
    kind: str  # class name
    output_shape: tuple  # per image (no batch dimension)
    params: int  # the module's own parameters, counted at its first call only
    macs: int  # multiply-accumulates of this call for one image


@dataclass
class Totals:
    params: int
    trainable_params: int
    macs: int


def multiply_accumulates(module: nn.Module, output: torch.Tensor) -> int:
    """MACs of one call of ``module`` that produced ``output`` for a batch of one image."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def profile(net: nn.Module, input_shape: Sequence[int]) -> list[LayerCall]:
    """The layer calls of one forward of a single zero image of ``input_shape`` (C, H, W), in order."""
    names = {module: name for name, module in net.named_modules()}
    calls: list[LayerCall] = []
    counted: set[nn.Module] = set()

    def record(module: nn.Module, inputs, output) -> None:
        tensor = output[0] if isinstance(output, (tuple, list)) else output
        params = 0 if module in counted else sum(p.numel() for p in module.parameters(recurse=False))
        counted.add(module)
        calls.append(
            LayerCall(
                names[module] or type(module).__name__,
                type(module).__name__,
                tuple(tensor.shape[1:]),
                params,
                multiply_accumulates(module, tensor),
            )
        )

    # Leaves, plus any container holding parameters of its own, so every parameter shows in some row.
    hooked = [m for m in net.modules() if not next(m.children(), None) or next(m.parameters(recurse=False), None)]
    handles = [module.register_forward_hook(record) for module in hooked]
    was_training = net.training
    net.eval()  # BatchNorm in train mode refuses a batch of one
    try:
        with torch.no_grad():
            net(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        net.train(was_training)
    return calls


def totals(net: nn.Module, calls: Sequence[LayerCall]) -> Totals:
    # From the net, not the rows: a parameter is counted once even when shared by two modules.
    parameters = list(net.parameters())
    return Totals(
        params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        macs=sum(call.macs for call in calls),
    )


def format_summary(title: str, calls: Sequence[LayerCall], total: Totals) -> str:
    """A table like Keras' ``model.summary()``, with a MACs column and MAC totals."""
    header = ("Layer (type)", "Output shape", "Param #", "MACs")
    rows = [(f"{c.name} ({c.kind})", str(c.output_shape), f"{c.params:,}", f"{c.macs:,}") for c in calls]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]

    def line(cells: Sequence[str]) -> str:
        left, shape, params, macs = cells
        return (f"{left:<{widths[0]}}  {shape:<{widths[1]}}  {params:>{widths[2]}}  {macs:>{widths[3]}}").rstrip()

    rule = "=" * len(line(header))
    size_mb = total.params * 4 / 2**20
    return "\n".join(
        [
            title,
            rule,
            line(header),
            rule,
            *(line(row) for row in rows),
            rule,
            f"Total params: {total.params:,} ({size_mb:.2f} MB as float32)",
            f"Trainable params: {total.trainable_params:,}",
            f"Non-trainable params: {total.params - total.trainable_params:,}",
            f"MACs per image: {total.macs:,} ({format_count(total.macs)})",
            "(MACs of Conv and Linear layers; other layers count 0. BatchNorm running statistics are buffers, "
            "not parameters.)",
            rule,
        ]
    )


def format_count(count: int) -> str:
    """3 significant digits with a K/M/G suffix: 574080 -> '574K'."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g}{suffix}"
    return str(count)
