"""A net's head and the rest (its backbone): what fine-tuning freezes and discriminative learning rates scale."""

from __future__ import annotations

from torch import nn


def head_of(net: nn.Module) -> nn.Module:
    """The net's output layer: a backbone's own ``head()``, else its last module with parameters."""
    if callable(getattr(net, "head", None)):
        return net.head()
    return [module for module in net.modules() if module._parameters][-1]


def backbone_parameters(net: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(the parameters outside the head, the head's): the two groups of ``model.backbone_lr_scale``."""
    in_head = {id(p) for p in head_of(net).parameters()}
    params = list(net.parameters())
    return [p for p in params if id(p) not in in_head], [p for p in params if id(p) in in_head]
