"""BatchNorm fusion (deploy time): fold every BN into the conv before it or the linear after it.

The ``fused``, ``compile`` and ``cuda-graph`` latency modes time the fused model, as the papers'
speed tests do (arXiv:2305.07027 §4.1).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["fuse_batchnorm"]


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d computing bn(conv(x)) in eval mode (BN's running statistics folded in)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
                      device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale[:, None, None, None])
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _fold_bn_linear(bn: nn.BatchNorm1d, linear: nn.Linear) -> nn.Linear:
    """A Linear computing linear(bn(x)) in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_in,)
    shift = bn.bias - bn.running_mean * scale
    fused = nn.Linear(linear.in_features, linear.out_features, bias=True,
                      device=linear.weight.device, dtype=linear.weight.dtype)
    fused.weight.copy_(linear.weight * scale[None, :])
    bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features, device=scale.device)
    fused.bias.copy_(bias + linear.weight @ shift)
    return fused


@torch.no_grad()
def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the layer next to it, in place; returns ``model`` in eval mode.

    Folds Conv2d -> BatchNorm2d (a child ``conv`` followed by a child ``norm`` or ``bn``, as in
    :class:`explore.nn.ConvNorm` and the reference implementations' ConvNorm/ConvNormAct) and
    BatchNorm1d -> Linear (children ``norm``/``bn`` then ``linear``, as in :class:`explore.nn.NormLinear`).
    The folded norm becomes Identity, so outputs are unchanged in eval mode (up to float
    rounding). LayerNorm cannot be folded and stays. Works on any device; parameters keep their
    device and dtype. Follows the deploy-time fusion of arXiv:2305.07027 §4.1 (speed tests with BN
    fused).
    """
    model.eval()
    for module in list(model.modules()):
        norm_name = "norm" if isinstance(getattr(module, "norm", None), nn.BatchNorm2d | nn.BatchNorm1d) else (
            "bn" if isinstance(getattr(module, "bn", None), nn.BatchNorm2d | nn.BatchNorm1d) else None)
        if norm_name is None:
            continue
        bn = getattr(module, norm_name)
        conv, linear = getattr(module, "conv", None), getattr(module, "linear", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, "conv", _fold_conv_bn(conv, bn))
            setattr(module, norm_name, nn.Identity())
        elif isinstance(linear, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            setattr(module, "linear", _fold_bn_linear(bn, linear))
            setattr(module, norm_name, nn.Identity())
    return model
