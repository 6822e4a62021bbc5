"""Units of a built model that can be pruned, their channel groups, and what each group costs.

A unit is an attention module (CGA or MHSA: Q/K pairs, V channels and heads) or the hidden layer
of an FFN or MBConv (hidden channels); :func:`find_units` lists them with the token counts their
MACs scale with, and :func:`unit_blocks` names the parameter slices of each group (see
:mod:`explore.analysis.importance`).

Follows: arXiv:2305.07027 §3.3 (the components whose widths Fig. 5 reports).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from explore.nn import FFN, CascadedGroupAttention, ConvNorm, MBConv, MultiHeadSelfAttention

__all__ = ["GROUPS", "AttentionUnit", "HiddenUnit", "Unit", "Spec", "Block", "find_units", "unit_blocks",
           "block_vector", "block_costs", "unit_location"]

GROUPS = ("qk", "v", "head", "hidden")
"""Prunable group kinds (see :mod:`explore.analysis.importance`)."""


@dataclass(frozen=True)
class AttentionUnit:
    """A CGA or MHSA module whose Q/K pairs, V channels and heads can be pruned.

    Attributes:
        path: module name in the model (``stages.1.blocks.0.mixer.m.attn``).
        kind: ``"cga"`` or ``"mhsa"``.
        stage, block: position in the model (stage index, block index within the stage).
        width: channels C of the block input (B, C, H, W).
        heads: heads H.
        qk_dim: Q (and K) channels per head.
        v_dim: V channels per head.
        kernels: CGA's depthwise kernel on Q per head (empty for MHSA).
        table_side: side of the attention-bias table.
        tokens: tokens through the 1x1 convs for one image (all windows, padding included).
        window_tokens: tokens N per window (the attention matrices are N x N).
        windows: windows per image.
    """

    path: str
    kind: str
    stage: int
    block: int
    width: int
    heads: int
    qk_dim: int
    v_dim: int
    kernels: tuple[int, ...]
    table_side: int
    tokens: int
    window_tokens: int
    windows: int


@dataclass(frozen=True)
class HiddenUnit:
    """An FFN or MBConv whose hidden channels can be pruned.

    Attributes:
        path: module name in the model.
        kind: ``"ffn"`` or ``"mbconv"``.
        stage: the stage the module sits in.
        block: its block index, or None in a downsample.
        config_stage: the stage of the config whose ``ffn_ratio`` / ``expand_ratio`` sets its
            hidden width (a patch-merging downsample's first FFN runs at the previous stage's width).
        in_chs: input channels (what the hidden width is a ratio of).
        hidden: hidden channels.
        tokens_in: output tokens of the first (1x1) conv for one image.
        tokens: output tokens of the hidden layer for one image (after a stride, for MBConv).
    """

    path: str
    kind: str
    stage: int
    block: int | None
    config_stage: int
    in_chs: int
    hidden: int
    tokens_in: int
    tokens: int


Unit = AttentionUnit | HiddenUnit

_PATH_RE = re.compile(r"^stages\.(\d+)\.(?:blocks\.(\d+)|downsample)(?:\.|$)")


@dataclass(frozen=True)
class Spec:
    """One parameter slice of a channel block: ``param`` along ``dim`` from ``start``; ``tokens`` is
    the output token count of the conv owning the weight (MACs per element), 0 for norms/biases."""

    param: str
    dim: int
    start: int
    tokens: int = 0


@dataclass(frozen=True)
class Block:
    """``count`` channels of one group kind (``qk``, ``v``, ``hidden`` or ``bias``) of one head."""

    group: str
    head: int | None
    count: int
    specs: tuple[Spec, ...]
    extra_macs: int = 0  # per channel, not tied to a weight (the attention matmuls)


def _token_counts(model: nn.Module, img_size: int, in_chans: int) -> tuple[dict[str, int], dict[str, tuple[int, int]]]:
    """Output tokens (B*H*W for one image) of every Conv2d, and (windows, N) of every CGA/MHSA."""
    conv_tokens: dict[str, int] = {}
    attn_shape: dict[str, tuple[int, int]] = {}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            def conv_hook(_m, _inp, out, name=name):
                conv_tokens[name] = out.numel() // out.shape[1]
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, (CascadedGroupAttention, MultiHeadSelfAttention)):
            def attn_hook(_m, inp, name=name):
                x = inp[0]
                attn_shape[name] = (int(x.shape[0]), int(x.shape[2] * x.shape[3]))
            hooks.append(module.register_forward_pre_hook(attn_hook))
    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, img_size, img_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return conv_tokens, attn_shape


def find_units(model: nn.Module, img_size: int, in_chans: int) -> list[Unit]:
    """The prunable units of a model built by :func:`explore.nn.build`, in module order.

    Args:
        model: the generated model (modules named ``stages.<i>.blocks.<j>...`` /
            ``stages.<i>.downsample...``).
        img_size: input side in pixels (one forward pass of a zero image, batch 1, counts the
            tokens of every unit).
        in_chans: input channels.

    Returns:
        :class:`AttentionUnit` for every CGA/MHSA module and :class:`HiddenUnit` for every FFN and
        MBConv inside the stages (the MIT stem's DSConv and the patch-merging convs are not
        prunable groups).
    """
    conv_tokens, attn_shape = _token_counts(model, img_size, in_chans)
    units: list[Unit] = []
    for name, module in model.named_modules():
        match = _PATH_RE.match(name)
        if match is None:
            continue
        stage = int(match.group(1))
        block = None if match.group(2) is None else int(match.group(2))
        if isinstance(module, (CascadedGroupAttention, MultiHeadSelfAttention)):
            windows, n = attn_shape[name]
            is_cga = isinstance(module, CascadedGroupAttention)
            width = module.qkvs[0].conv.in_channels * module.groups if is_cga else module.qkv.conv.in_channels
            kernels = tuple(int(dw.conv.kernel_size[0]) for dw in module.dws) if is_cga else ()
            units.append(AttentionUnit(
                path=name, kind="cga" if is_cga else "mhsa", stage=stage, block=-1 if block is None else block,
                width=width, heads=module.heads, qk_dim=module.qk_dim, v_dim=module.v_dim, kernels=kernels,
                table_side=module.table_side, tokens=windows * n, window_tokens=n, windows=windows))
        elif isinstance(module, FFN):
            config_stage = stage - 1 if ".res1." in name + "." and block is None else stage
            units.append(HiddenUnit(
                path=name, kind="ffn", stage=stage, block=block, config_stage=config_stage,
                in_chs=module.pw1.conv.in_channels, hidden=module.pw1.conv.out_channels,
                tokens_in=conv_tokens[f"{name}.pw1.conv"], tokens=conv_tokens[f"{name}.pw1.conv"]))
        elif isinstance(module, MBConv):
            units.append(HiddenUnit(
                path=name, kind="mbconv", stage=stage, block=block, config_stage=stage,
                in_chs=module.inverted_conv.conv.in_channels, hidden=module.inverted_conv.conv.out_channels,
                tokens_in=conv_tokens[f"{name}.inverted_conv.conv"], tokens=conv_tokens[f"{name}.depth_conv.conv"]))
    return units


def _convnorm_out(prefix: str, cn: ConvNorm, start: int, tokens: int) -> list[Spec]:
    """Specs of output channels ``start..`` of a Conv+Norm: conv rows, conv bias, norm weight/bias."""
    specs = [Spec(f"{prefix}.conv.weight", 0, start, tokens)]
    if cn.conv.bias is not None:
        specs.append(Spec(f"{prefix}.conv.bias", 0, start))
    for pname, _ in cn.norm.named_parameters():
        specs.append(Spec(f"{prefix}.norm.{pname}", 0, start))
    return specs


def unit_blocks(unit: Unit, module: nn.Module) -> list[Block]:
    """The channel blocks of a unit (one per group kind and head), with their parameter slices
    (``module`` is the unit's module in the model)."""
    p = unit.path
    if isinstance(unit, AttentionUnit):
        qk, v, t = unit.qk_dim, unit.v_dim, unit.tokens
        attn_macs = unit.window_tokens * unit.tokens  # N*N per window, per channel
        blocks: list[Block] = []
        for h in range(unit.heads):
            if unit.kind == "cga":
                qkv_prefix, off = f"{p}.qkvs.{h}", 0
                qkv_cn = module.qkvs[h]
            else:
                qkv_prefix, off = f"{p}.qkv", h * (2 * qk + v)
                qkv_cn = module.qkv
            qk_specs = _convnorm_out(qkv_prefix, qkv_cn, off, t) + _convnorm_out(qkv_prefix, qkv_cn, off + qk, t)
            if unit.kind == "cga":
                qk_specs += _convnorm_out(f"{p}.dws.{h}", module.dws[h], 0, t)
            v_specs = _convnorm_out(qkv_prefix, qkv_cn, off + 2 * qk, t)
            v_specs.append(Spec(f"{p}.proj.1.conv.weight", 1, h * v, t))
            blocks.append(Block("qk", h, qk, tuple(qk_specs), attn_macs))
            blocks.append(Block("v", h, v, tuple(v_specs), attn_macs))
            blocks.append(Block("bias", h, 1, (Spec(f"{p}.attention_biases", 0, h),)))
        return blocks
    t = unit.tokens
    if unit.kind == "ffn":
        specs = _convnorm_out(f"{p}.pw1", module.pw1, 0, t) + [Spec(f"{p}.pw2.conv.weight", 1, 0, t)]
    else:
        specs = (_convnorm_out(f"{p}.inverted_conv", module.inverted_conv, 0, unit.tokens_in)
                 + _convnorm_out(f"{p}.depth_conv", module.depth_conv, 0, t)
                 + [Spec(f"{p}.point_conv.conv.weight", 1, 0, t)])
    return [Block("hidden", None, unit.hidden, tuple(specs))]


def block_vector(tensors: Mapping[str, torch.Tensor], block: Block) -> torch.Tensor:
    """Per-channel sum (count,) float64 of the block's slices of ``tensors`` (same shapes as params)."""
    total = torch.zeros(block.count, dtype=torch.float64)
    for spec in block.specs:
        t = tensors[spec.param].detach().movedim(spec.dim, 0)[spec.start : spec.start + block.count]
        total += t.reshape(block.count, -1).sum(1).to(device="cpu", dtype=torch.float64)
    return total


def block_costs(params: Mapping[str, torch.Tensor], block: Block) -> tuple[int, int]:
    """(params, MACs) of one channel of the block."""
    n_params, macs = 0, block.extra_macs
    for spec in block.specs:
        per_channel = params[spec.param].numel() // params[spec.param].shape[spec.dim]
        n_params += per_channel
        macs += per_channel * spec.tokens
    return n_params, macs


def unit_location(unit: Unit) -> str:
    """``downsample`` for an FFN / MBConv of a stage's downsample, else ``block``."""
    if isinstance(unit, HiddenUnit) and unit.block is None:
        return "downsample"
    return "block"
