"""Taylor importance of attention and FFN channels, structured pruning, and parameter reallocation.

The CGA paper chose the widths of its blocks by pruning a trained Swin-T with first-order Taylor
importance and reading which components keep their channels (arXiv:2305.07027 §3.3 "Parameter
Reallocation", Fig. 5): Q/K and FFN lose most of their channels, V keeps most of its own, and the
later blocks shrink more. This module makes that analysis a function of any model of our spaces:

1. :func:`find_units` lists the prunable units of a built model: the attention modules (CGA, MHSA)
   and the hidden layers of the FFNs and MBConvs, with the token counts their MACs scale with.
2. :func:`taylor_scores` accumulates, over N batches, the first-order Taylor importance
   ``|w * dL/dw|`` of every parameter element and sums it per *group* (Molchanov et al., CVPR 2019,
   arXiv:1906.10771, as the CGA paper uses it). The groups:

   * ``qk``: one Q channel and the K channel it is multiplied with, in one head (pruned as a pair;
     for CGA also the channel's depthwise filter on Q);
   * ``v``: one V channel of one head, with the column of the output projection that reads it;
   * ``head``: a whole head (all its Q/K/V channels and its row of the attention-bias table);
   * ``hidden``: one hidden channel of an FFN (pw1 row, pw2 column) or of an MBConv (inverted-conv
     row, depthwise filter, point-conv column).

   The result is a DataFrame, one row per group, with its score, params and MACs.
3. :func:`plan_pruning` ranks all groups of the model globally, by score per unit of cost (params
   or MACs removed; the default) or by raw score (Molchanov et al.'s ranking), and removes the
   cheapest-to-lose ones until a target fraction of the prunable cost is gone, in one shot (no
   fine-tuning between steps); :func:`prune_model` turns the plan into a real, smaller
   ``nn.Module``. :func:`sensitivity_frame` repeats the plan for other targets and rankings.
4. :func:`retained_frame` gives the retained QK, V and FFN widths per block, normalised by the
   block's input width (the layout of Fig. 5); :func:`suggest_config` turns them into a reallocated
   :class:`~explore.config.ArchConfig` (per stage ``heads``, ``qk_dim``, ``v_ratio``, ``ffn_ratio``
   or ``expand_ratio``; widths and depths unchanged); :func:`space_params` maps it onto the
   parameters of a study's search space for ``study.enqueue_trial``.

Pruning back-ends: FFN and MBConv hidden channels are pruned with torch-pruning's dependency graph
(``tp.DependencyGraph`` traced on the whole model, one ``prune_conv_out_channels`` group per unit),
which couples exactly the layers of the unit. For attention it cannot be used: its graph follows
Q, K and V through the attention matmuls and the softmax into the bias table, the other heads (the
CGA cascade) and the next blocks, so the group of one CGA Q channel spans 31 layers of a 3-block
test model (and takes seconds to minutes to build, with index lists of N^2 entries). Attention units are therefore cut by our own
grouping and channel surgery (:class:`PrunedCascadedGroupAttention`,
:class:`PrunedMultiHeadSelfAttention`). A hidden unit whose torch-pruning group touches any layer
outside the unit, or any run without torch-pruning installed, falls back to our own surgery for that
unit; :attr:`PrunedModel.backends` says which back-end cut each unit.

Every pruned model computes exactly what the unpruned model computes with the removed channels
zeroed (K and V after their norm, FFN hidden after pw1's norm, MBConv hidden after its depthwise
conv), in eval mode; the tests check this and the exact parameter counts.

Zero-initialised norms (the last norm of every FFN and attention branch starts at weight 0, so all
upstream gradients are 0 at init) would give all-zero scores before training. The command trains
first; in addition, a unit whose Taylor scores sum to 0 or are not finite is scored by weight
magnitude ``|w|`` instead, rescaled to the median score-per-parameter of the Taylor-scored units,
and the rows say so (``source = "magnitude"``). The check is per unit, not per group kind: a Q/K
pair of a one-token window really has zero importance (the softmax over one token ignores it) and
keeps its zero score.

Token mixers without per-head Q/K/V widths to reallocate (``linear``, ``msla``: one head dim for Q,
K and V alike) are not scored; their blocks report FFN/MBConv only.

The rendering at the end (:func:`plot_retained`, :func:`render_summary`,
:func:`write_importance_report`) works from the DataFrames only and imports matplotlib lazily.

Follows: arXiv:2305.07027 §3.3 (parameter reallocation), Fig. 5 (ratio of the retained channels to
the input embedding per block, for QK, V and FFN).
"""

from __future__ import annotations

import copy
import json
import math
import re
import shlex
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from explore.config import ArchConfig
from explore.errors import ConfigError, ExploreError
from explore.nn.attention import CascadedGroupAttention, MultiHeadSelfAttention, relative_bias_index
from explore.nn.layers import FFN, ConvNorm, LayerNorm2d, MBConv
from explore.report import safe_name

__all__ = [
    "GROUPS",
    "RANKINGS",
    "RANK_BY",
    "AttentionUnit",
    "HiddenUnit",
    "ImportanceResult",
    "ImportanceSettings",
    "PreparedImportance",
    "PrunedCascadedGroupAttention",
    "PrunedModel",
    "PrunedMultiHeadSelfAttention",
    "PruningPlan",
    "UnitKeep",
    "command_line",
    "find_units",
    "paper_trend",
    "plan_pruning",
    "plot_retained",
    "prepare_importance",
    "prune_model",
    "render_summary",
    "resolve_model",
    "retained_frame",
    "run_importance",
    "sensitivity_frame",
    "space_params",
    "suggest_config",
    "taylor_scores",
    "write_importance_report",
]

GROUPS = ("qk", "v", "head", "hidden")
"""Prunable group kinds (see the module docstring)."""
RANK_BY = ("params", "macs")
"""The cost a target is a fraction of (and that ``per-cost`` ranking divides by)."""
RANKINGS = ("per-cost", "score")
"""Global ranking of groups: Taylor score per unit of cost (params or MACs), or the raw score."""


# --------------------------------------------------------------------------------------------------
# units: what can be pruned, where, and at which token count
@dataclass(frozen=True)
class AttentionUnit:
    """A CGA or MHSA module whose Q/K pairs, V channels and heads can be pruned.

    Attributes:
        path: module name in the model (``stages.1.blocks.0.mixer.m.attn``).
        kind: ``"cga"`` or ``"mhsa"``.
        stage, block: position in the model (stage index, block index within the stage).
        width: channels C of the block input (B, C, H, W).
        heads: heads H; qk_dim: Q (and K) channels per head; v_dim: V channels per head.
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
        stage: the stage the module sits in; block: its block index, or None in a downsample.
        config_stage: the stage of the config whose ``ffn_ratio`` / ``expand_ratio`` sets its
            hidden width (a patch-merging downsample's first FFN runs at the previous stage's width).
        in_chs: input channels (what the hidden width is a ratio of); hidden: hidden channels.
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
class _Spec:
    """One parameter slice of a channel block: ``param`` along ``dim`` from ``start``; ``tokens`` is
    the output token count of the conv owning the weight (MACs per element), 0 for norms/biases."""

    param: str
    dim: int
    start: int
    tokens: int = 0


@dataclass(frozen=True)
class _Block:
    """``count`` channels of one group kind (``qk``, ``v``, ``hidden`` or ``bias``) of one head."""

    group: str
    head: int | None
    count: int
    specs: tuple[_Spec, ...]
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
    """The prunable units of a model built by :func:`explore.models.build`, in module order.

    Args:
        model: the generated model (modules named ``stages.<i>.blocks.<j>...`` /
            ``stages.<i>.downsample...``).
        img_size: input side in pixels; in_chans: input channels (one forward pass of a zero
            image, batch 1, counts the tokens of every unit).

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
            width = module.qkvs[0].conv.in_channels * module.heads if is_cga else module.qkv.conv.in_channels
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


def _convnorm_out(prefix: str, cn: ConvNorm, start: int, tokens: int) -> list[_Spec]:
    """Specs of output channels ``start..`` of a Conv+Norm: conv rows, conv bias, norm weight/bias."""
    specs = [_Spec(f"{prefix}.conv.weight", 0, start, tokens)]
    if cn.conv.bias is not None:
        specs.append(_Spec(f"{prefix}.conv.bias", 0, start))
    for pname, _ in cn.norm.named_parameters():
        specs.append(_Spec(f"{prefix}.norm.{pname}", 0, start))
    return specs


def _unit_blocks(unit: Unit, module: nn.Module) -> list[_Block]:
    """The channel blocks of a unit (one per group kind and head), with their parameter slices."""
    p = unit.path
    if isinstance(unit, AttentionUnit):
        qk, v, t = unit.qk_dim, unit.v_dim, unit.tokens
        attn_macs = unit.window_tokens * unit.tokens  # N*N per window, per channel
        blocks: list[_Block] = []
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
            v_specs.append(_Spec(f"{p}.proj.1.conv.weight", 1, h * v, t))
            blocks.append(_Block("qk", h, qk, tuple(qk_specs), attn_macs))
            blocks.append(_Block("v", h, v, tuple(v_specs), attn_macs))
            blocks.append(_Block("bias", h, 1, (_Spec(f"{p}.attention_biases", 0, h),)))
        return blocks
    t = unit.tokens
    if unit.kind == "ffn":
        specs = _convnorm_out(f"{p}.pw1", module.pw1, 0, t) + [_Spec(f"{p}.pw2.conv.weight", 1, 0, t)]
    else:
        specs = (_convnorm_out(f"{p}.inverted_conv", module.inverted_conv, 0, unit.tokens_in)
                 + _convnorm_out(f"{p}.depth_conv", module.depth_conv, 0, t)
                 + [_Spec(f"{p}.point_conv.conv.weight", 1, 0, t)])
    return [_Block("hidden", None, unit.hidden, tuple(specs))]


def _block_vector(tensors: Mapping[str, torch.Tensor], block: _Block) -> torch.Tensor:
    """Per-channel sum (count,) float64 of the block's slices of ``tensors`` (same shapes as params)."""
    total = torch.zeros(block.count, dtype=torch.float64)
    for spec in block.specs:
        t = tensors[spec.param].detach().movedim(spec.dim, 0)[spec.start : spec.start + block.count]
        total += t.reshape(block.count, -1).sum(1).to(device="cpu", dtype=torch.float64)
    return total


def _block_costs(params: Mapping[str, torch.Tensor], block: _Block) -> tuple[int, int]:
    """(params, MACs) of one channel of the block."""
    n_params, macs = 0, block.extra_macs
    for spec in block.specs:
        per_channel = params[spec.param].numel() // params[spec.param].shape[spec.dim]
        n_params += per_channel
        macs += per_channel * spec.tokens
    return n_params, macs


# --------------------------------------------------------------------------------------------------
# scores
def _module(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def _unit_location(unit: Unit) -> str:
    if isinstance(unit, HiddenUnit) and unit.block is None:
        return "downsample"
    return "block"


def taylor_scores(model: nn.Module, units: Sequence[Unit], batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> pd.DataFrame:
    """First-order Taylor importance of every prunable group, accumulated over batches.

    For each batch, in eval mode (running norm statistics, no dropout), the cross-entropy loss is
    back-propagated and ``|w * dL/dw|`` is added per parameter element; a group's score is the sum
    over its elements and batches (Molchanov et al. 2019, first order, as in arXiv:2305.07027 §3.3).
    A unit whose scores sum to 0 or are not finite (e.g. zero-initialised output norms of an
    untrained model) is scored by ``|w|`` instead, rescaled so that its mean score per parameter
    equals the median of the Taylor-scored units (1 when none is), marked ``source = "magnitude"``.

    Args:
        model: the model the units were found in; its gradients are cleared afterwards and its
            train/eval mode is restored.
        units: from :func:`find_units`.
        batches: (x (B, C_in, H, W) float32 normalised input, y (B,) int64 labels) on the model's
            device.

    Returns:
        One row per group: ``unit``, ``unit_kind`` (cga, mhsa, ffn, mbconv), ``stage``, ``block``
        (-1 in a downsample), ``location`` (block or downsample), ``config_stage``, ``group``
        (qk, v, head, hidden), ``head`` (-1 for hidden), ``channel`` (-1 for head rows), ``score``
        (summed |w dL/dw|), ``params`` and ``macs`` removed with the group (MACs of one image;
        a head row: the whole head), ``source`` (taylor or magnitude).

    Raises:
        ExploreError: no batch was given.
    """
    params = dict(model.named_parameters())
    unit_blocks = [(u, _unit_blocks(u, _module(model, u.path))) for u in units]
    names = sorted({s.param for _, blocks in unit_blocks for b in blocks for s in b.specs})
    acc = {n: torch.zeros_like(params[n], dtype=torch.float64) for n in names}
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            with torch.no_grad():
                for n in names:
                    grad = params[n].grad
                    if grad is not None:
                        acc[n] += (params[n].detach() * grad).abs().to(torch.float64)
            n_batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if n_batches == 0:
        raise ExploreError("--score-batches", 0, "expected at least one batch to score on")
    magnitude = {n: params[n].detach().abs() for n in names}

    per_unit = []
    for unit, blocks in unit_blocks:
        taylor = [_block_vector(acc, b) for b in blocks]
        total = float(sum(v.sum() for v in taylor))
        ok = math.isfinite(total) and total > 0 and all(bool(torch.isfinite(v).all()) for v in taylor)
        vectors = taylor if ok else [_block_vector(magnitude, b) for b in blocks]
        costs = [_block_costs(params, b) for b in blocks]
        n_params = sum(c[0] * b.count for c, b in zip(costs, blocks))
        density = float(sum(v.sum() for v in vectors)) / max(1, n_params)
        per_unit.append((unit, blocks, vectors, costs, "taylor" if ok else "magnitude", density))

    taylor_density = [d for *_, src, d in per_unit if src == "taylor"]
    reference = float(pd.Series(taylor_density).median()) if taylor_density else None
    rows: list[dict[str, Any]] = []
    for unit, blocks, vectors, costs, source, density in per_unit:
        scale = 1.0
        if source == "magnitude" and reference is not None and density > 0:
            scale = reference / density
        base = {
            "unit": unit.path, "unit_kind": unit.kind, "stage": unit.stage,
            "block": -1 if unit.block is None else unit.block, "location": _unit_location(unit),
            "config_stage": unit.config_stage if isinstance(unit, HiddenUnit) else unit.stage,
        }
        head_totals: dict[int, list[float]] = {}
        for block, vec, (c_params, c_macs) in zip(blocks, vectors, costs):
            vec = vec * scale
            if block.head is not None:
                tot = head_totals.setdefault(block.head, [0.0, 0, 0])
                tot[0] += float(vec.sum())
                tot[1] += c_params * block.count
                tot[2] += c_macs * block.count
            if block.group == "bias":
                continue
            for c in range(block.count):
                rows.append({**base, "group": block.group, "head": -1 if block.head is None else block.head,
                             "channel": c, "score": float(vec[c]), "params": c_params, "macs": c_macs,
                             "source": source})
        for h, (score, n_params, macs) in head_totals.items():
            rows.append({**base, "group": "head", "head": h, "channel": -1, "score": score, "params": int(n_params),
                         "macs": int(macs), "source": source})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# planning
@dataclass(frozen=True)
class UnitKeep:
    """The channels a unit keeps (original indices, ascending).

    Attributes:
        heads: attention units: kept head -> (kept Q/K pair channels, kept V channels); a head
            missing from the mapping is removed. Empty for hidden units.
        hidden: hidden units: kept hidden channels; None for attention units.
    """

    heads: Mapping[int, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    hidden: tuple[int, ...] | None = None


@dataclass(frozen=True)
class PruningPlan:
    """What :func:`plan_pruning` decided.

    Attributes:
        target: fraction of the prunable cost to remove, in (0, 1).
        by: ``params`` or ``macs``: the cost targeted.
        rank: ``per-cost`` or ``score`` (see :func:`plan_pruning`).
        keep: unit path -> :class:`UnitKeep`.
        prunable_params, prunable_macs: cost of all scored groups (MACs of one image).
        removed_params, removed_macs: cost of the removed groups.
    """

    target: float
    by: str
    rank: str
    keep: Mapping[str, UnitKeep]
    prunable_params: int
    prunable_macs: int
    removed_params: int
    removed_macs: int


def _check_target(target: Any, by: Any, rank: Any = "per-cost") -> None:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise ExploreError("--target", target, "expected a fraction strictly between 0 and 1")
    if by not in RANK_BY:
        raise ExploreError("--by", by, f"expected one of {', '.join(RANK_BY)}")
    if rank not in RANKINGS:
        raise ExploreError("--rank", rank, f"expected one of {', '.join(RANKINGS)}")


def plan_pruning(scores: pd.DataFrame, units: Sequence[Unit], target: float, by: str = "params",
                 rank: str = "per-cost") -> PruningPlan:
    """Rank every group of the model globally and remove groups until ``target`` of the cost is gone.

    Groups are visited by ascending score per unit of cost (``rank="per-cost"``: ``score / params``
    or ``score / macs``, the least estimated loss per parameter or MAC saved goes first, the greedy
    rule for a budget) or by ascending raw score (``rank="score"``: Molchanov et al.'s global
    ranking, which favours removing small groups); ties in model order. A group is removed
    unless that would leave a unit without any head, a kept head without any Q/K pair or V
    channel, or a hidden layer without any channel; a head's cost is what is left of it when it
    goes. Stops once the removed cost reaches ``target`` x the prunable cost.

    Args:
        scores: from :func:`taylor_scores`.
        units: the units the scores are of.
        target: fraction of the prunable params (or MACs) to remove, in (0, 1).
        by: ``params`` or ``macs``.
        rank: ``per-cost`` or ``score``.

    Returns:
        A :class:`PruningPlan`.

    Raises:
        ExploreError: target outside (0, 1) (field ``--target``), unknown ``by`` (``--by``) or
            ``rank`` (``--rank``).
    """
    _check_target(target, by, rank)
    cost_col = by
    qk_kept: dict[tuple[str, int], set[int]] = {}
    v_kept: dict[tuple[str, int], set[int]] = {}
    heads_alive: dict[str, set[int]] = {}
    hidden_kept: dict[str, set[int]] = {}
    for u in units:
        if isinstance(u, AttentionUnit):
            heads_alive[u.path] = set(range(u.heads))
            for h in range(u.heads):
                qk_kept[(u.path, h)] = set(range(u.qk_dim))
                v_kept[(u.path, h)] = set(range(u.v_dim))
        else:
            hidden_kept[u.path] = set(range(u.hidden))

    channel_rows = scores[scores["group"] != "head"]
    head_rows = scores[scores["group"] == "head"]
    per_channel: dict[tuple[str, int, str], tuple[int, int]] = {}
    for row in channel_rows.drop_duplicates(["unit", "head", "group"]).itertuples(index=False):
        per_channel[(row.unit, row.head, row.group)] = (int(row.params), int(row.macs))
    bias_cost: dict[tuple[str, int], tuple[int, int]] = {}
    for row in head_rows.itertuples(index=False):
        qk_p, qk_m = per_channel.get((row.unit, row.head, "qk"), (0, 0))
        v_p, v_m = per_channel.get((row.unit, row.head, "v"), (0, 0))
        n_qk, n_v = len(qk_kept[(row.unit, row.head)]), len(v_kept[(row.unit, row.head)])
        bias_cost[(row.unit, row.head)] = (int(row.params) - n_qk * qk_p - n_v * v_p,
                                           int(row.macs) - n_qk * qk_m - n_v * v_m)
    prunable_params = int(channel_rows["params"].sum()) + sum(c[0] for c in bias_cost.values())
    prunable_macs = int(channel_rows["macs"].sum()) + sum(c[1] for c in bias_cost.values())
    budget = target * (prunable_params if by == "params" else prunable_macs)

    order = scores.assign(_pos=range(len(scores)))
    divisor = order[cost_col].clip(lower=1) if rank == "per-cost" else 1
    order = order.assign(_density=order["score"] / divisor)
    order = order.sort_values(["_density", "_pos"], kind="mergesort")
    removed_params = removed_macs = 0
    for row in order.itertuples(index=False):
        if (removed_params if by == "params" else removed_macs) >= budget:
            break
        cost = (0, 0)
        if row.group == "hidden":
            kept = hidden_kept[row.unit]
            if row.channel in kept and len(kept) > 1:
                kept.discard(row.channel)
                cost = (int(row.params), int(row.macs))
        elif row.group in ("qk", "v"):
            if row.head not in heads_alive[row.unit]:
                continue
            kept = (qk_kept if row.group == "qk" else v_kept)[(row.unit, row.head)]
            if row.channel in kept and len(kept) > 1:
                kept.discard(row.channel)
                cost = (int(row.params), int(row.macs))
        else:  # a whole head
            alive = heads_alive[row.unit]
            if row.head in alive and len(alive) > 1:
                alive.discard(row.head)
                key = (row.unit, row.head)
                qk_p, qk_m = per_channel[(row.unit, row.head, "qk")]
                v_p, v_m = per_channel[(row.unit, row.head, "v")]
                n_qk, n_v = len(qk_kept[key]), len(v_kept[key])
                cost = (n_qk * qk_p + n_v * v_p + bias_cost[key][0], n_qk * qk_m + n_v * v_m + bias_cost[key][1])
        removed_params += cost[0]
        removed_macs += cost[1]

    keep: dict[str, UnitKeep] = {}
    for u in units:
        if isinstance(u, AttentionUnit):
            keep[u.path] = UnitKeep(heads={h: (tuple(sorted(qk_kept[(u.path, h)])), tuple(sorted(v_kept[(u.path, h)])))
                                           for h in sorted(heads_alive[u.path])})
        else:
            keep[u.path] = UnitKeep(hidden=tuple(sorted(hidden_kept[u.path])))
    return PruningPlan(target=float(target), by=by, rank=rank, keep=keep, prunable_params=prunable_params,
                       prunable_macs=prunable_macs, removed_params=removed_params, removed_macs=removed_macs)


# --------------------------------------------------------------------------------------------------
# channel surgery (ours)
def _slice_norm(norm: nn.Module, idx: torch.Tensor) -> nn.Module:
    """A norm over the channels ``idx`` only (BatchNorm2d statistics and affine, LayerNorm2d affine)."""
    if isinstance(norm, nn.Identity):
        return nn.Identity()
    n = int(idx.numel())
    if isinstance(norm, nn.BatchNorm2d):
        new = nn.BatchNorm2d(n, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                             track_running_stats=norm.track_running_stats)
        with torch.no_grad():
            if norm.affine:
                new.weight.copy_(norm.weight[idx])
                new.bias.copy_(norm.bias[idx])
            if norm.track_running_stats:
                new.running_mean.copy_(norm.running_mean[idx])
                new.running_var.copy_(norm.running_var[idx])
                new.num_batches_tracked.copy_(norm.num_batches_tracked)
        return new.to(norm.weight.device if norm.affine else norm.running_mean.device)
    if isinstance(norm, LayerNorm2d):
        new = LayerNorm2d(n, eps=norm.eps, elementwise_affine=norm.elementwise_affine)
        with torch.no_grad():
            if norm.elementwise_affine:
                new.weight.copy_(norm.weight[idx])
                new.bias.copy_(norm.bias[idx])
        return new.to(norm.weight.device) if norm.elementwise_affine else new
    raise TypeError(f"cannot slice a {type(norm).__name__}")


def _slice_convnorm(cn: ConvNorm, out_idx: Sequence[int] | None = None, in_idx: Sequence[int] | None = None) -> ConvNorm:
    """A copy of a Conv+Norm(+act) keeping output channels ``out_idx`` and input channels ``in_idx``.

    A depthwise conv (groups = channels) keeps the same channels in and out (``out_idx``).

    Raises:
        TypeError: a grouped, non-depthwise conv (none is pruned by this module).
    """
    conv = cn.conv
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
    if conv.groups > 1 and not depthwise:
        raise TypeError("grouped (non-depthwise) convs are not pruned")
    device = conv.weight.device
    out_t = torch.arange(conv.out_channels, device=device) if out_idx is None else torch.as_tensor(out_idx, dtype=torch.long, device=device)
    in_t = torch.arange(conv.in_channels, device=device) if in_idx is None else torch.as_tensor(in_idx, dtype=torch.long, device=device)
    weight = conv.weight.detach()[out_t]
    if not depthwise:
        weight = weight[:, in_t]
    n_out = int(out_t.numel())
    n_in = n_out if depthwise else int(in_t.numel())
    new_conv = nn.Conv2d(n_in, n_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                         groups=n_out if depthwise else 1, bias=conv.bias is not None,
                         padding_mode=conv.padding_mode, device=device, dtype=conv.weight.dtype)
    with torch.no_grad():
        new_conv.weight.copy_(weight)
        if conv.bias is not None:
            new_conv.bias.copy_(conv.bias.detach()[out_t])
    new = copy.deepcopy(cn)
    new.conv = new_conv
    new.norm = _slice_norm(cn.norm, out_t) if out_idx is not None else copy.deepcopy(cn.norm)
    return new


class _BiasTable(nn.Module):
    """The kept heads' rows of a relative-position bias table (see
    :func:`explore.nn.attention.relative_bias_index`)."""

    def __init__(self, biases: torch.Tensor, table_side: int) -> None:
        super().__init__()
        self.table_side = table_side
        self.attention_biases = nn.Parameter(biases.detach().clone())
        self._index_cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def attention_bias(self, height: int, width: int) -> torch.Tensor:
        """Bias (kept heads, N, N) for an H x W window, N = H*W."""
        device = self.attention_biases.device
        key = (height, width, str(device))
        index = self._index_cache.get(key)
        if index is None:
            with torch.inference_mode(False):  # a cached index must stay usable outside inference mode
                index = relative_bias_index(height, width, self.table_side, device)
            self._index_cache[key] = index
        return self.attention_biases[:, index]


class PrunedCascadedGroupAttention(_BiasTable):
    """Cascaded group attention with per-head Q/K and V widths and removed heads:
    (B, C, H, W) -> (B, C, H, W).

    The input is still split into the original H groups of C/H channels. Kept head ``h`` (original
    index) projects its split (plus the cascade) to ``qk_dims[j]`` Q and K channels and
    ``v_dims[j]`` V channels. The softmax scale stays ``qk_dim ** -0.5`` of the unpruned module
    (removed Q/K pairs contribute 0 to the logits, they do not change the scale).

    The cascade: in the unpruned module head ``h`` adds the output of head ``h - 1`` (V channel c)
    to channel c of its split, for c < min(V dim, C/H) (``CascadedGroupAttention._cascade``). Here
    the kept V channels of head ``h - 1`` whose original index c is below C/H are added (an
    ``index_add``) into channel c of split ``h``; removed V channels add 0, exactly as zeroed ones
    would. A removed head outputs nothing, so the next head sees its split alone, and the removed
    head's own split is unused.

    Args:
        source: the unpruned module (weights are copied).
        keep: kept head -> (kept Q/K pair channels, kept V channels), original indices; at least one
            head, each with at least one pair and one V channel.

    Raises:
        ValueError: an empty keep, or a kept head with no Q/K pair or V channel.

    Follows: arXiv:2305.07027 §3.2, Eq. (1)-(2) (the module it prunes) and §3.3 (reallocation).
    """

    def __init__(self, source: CascadedGroupAttention, keep: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> None:
        _check_keep(keep, source.heads)
        head_ids = tuple(sorted(keep))
        super().__init__(source.attention_biases[list(head_ids)], source.table_side)
        qk, v = source.qk_dim, source.v_dim
        self.in_heads = source.heads
        self.head_ids = head_ids
        self.qk_dims = tuple(len(keep[h][0]) for h in head_ids)
        self.v_dims = tuple(len(keep[h][1]) for h in head_ids)
        self.scale = source.scale
        self.qkvs = nn.ModuleList()
        self.dws = nn.ModuleList()
        proj_in: list[int] = []
        split = source.qkvs[0].conv.in_channels
        for j, h in enumerate(head_ids):
            qk_idx, v_idx = list(keep[h][0]), list(keep[h][1])
            rows = qk_idx + [qk + c for c in qk_idx] + [2 * qk + c for c in v_idx]
            self.qkvs.append(_slice_convnorm(source.qkvs[h], out_idx=rows))
            self.dws.append(_slice_convnorm(source.dws[h], out_idx=qk_idx))
            proj_in += [h * v + c for c in v_idx]
            # cascade into this head from the previous head, when that one is kept
            if j > 0 and head_ids[j - 1] == h - 1:
                prev_v = list(keep[h - 1][1])
                src = [i for i, c in enumerate(prev_v) if c < split]
                dst = [prev_v[i] for i in src]
            else:
                src, dst = [], []
            self.register_buffer(f"cascade_src_{j}", torch.as_tensor(src, dtype=torch.long), persistent=False)
            self.register_buffer(f"cascade_dst_{j}", torch.as_tensor(dst, dtype=torch.long), persistent=False)
        self.proj = nn.Sequential(copy.deepcopy(source.proj[0]), _slice_convnorm(source.proj[1], in_idx=proj_in))
        self.to(source.attention_biases.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _C, H, W = x.shape
        splits = x.chunk(self.in_heads, dim=1)  # in_heads x (B, C/H, H, W)
        bias = self.attention_bias(H, W)  # (kept heads, N, N)
        outs = []
        prev: torch.Tensor | None = None
        for j, h in enumerate(self.head_ids):
            feat = splits[h]
            src = getattr(self, f"cascade_src_{j}")
            if prev is not None and src.numel():  # cascade: kept V channels of head h-1 join split h
                feat = feat.index_add(1, getattr(self, f"cascade_dst_{j}"), prev.index_select(1, src))
            q, k, v = self.qkvs[j](feat).split([self.qk_dims[j], self.qk_dims[j], self.v_dims[j]], dim=1)
            q = self.dws[j](q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # (B, qk_j, N), (B, qk_j, N), (B, v_j, N)
            attn = ((q * self.scale).transpose(-2, -1) @ k + bias[j]).softmax(dim=-1)  # (B, N, N)
            prev = (v @ attn.transpose(-2, -1)).view(B, self.v_dims[j], H, W)  # (B, v_j, H, W)
            outs.append(prev)
        return self.proj(torch.cat(outs, dim=1))


class PrunedMultiHeadSelfAttention(_BiasTable):
    """Multi-head softmax attention with per-head Q/K and V widths and removed heads:
    (B, C, H, W) -> (B, C, H, W).

    One 1x1 Conv+Norm projects C channels to the kept [Q_j | K_j | V_j] of every kept head j; each
    head attends with its own widths (``scaled_dot_product_attention`` per head, the unpruned
    module's scale and bias rows); the V outputs, concatenated in head order, go through the
    activation and the output Conv+Norm (whose input columns follow the kept V channels).

    Args:
        source: the unpruned module (weights are copied).
        keep: kept head -> (kept Q/K pair channels, kept V channels), original indices.

    Raises:
        ValueError: an empty keep, or a kept head with no Q/K pair or V channel.

    Follows: arXiv:2305.07027 Table 6 ("CGA -> MHSA") for the module, §3.3 for the reallocation.
    """

    def __init__(self, source: MultiHeadSelfAttention, keep: Mapping[int, tuple[Sequence[int], Sequence[int]]]) -> None:
        _check_keep(keep, source.heads)
        head_ids = tuple(sorted(keep))
        super().__init__(source.attention_biases[list(head_ids)], source.table_side)
        qk, v = source.qk_dim, source.v_dim
        self.head_ids = head_ids
        self.qk_dims = tuple(len(keep[h][0]) for h in head_ids)
        self.v_dims = tuple(len(keep[h][1]) for h in head_ids)
        self.scale = source.scale
        rows: list[int] = []
        proj_in: list[int] = []
        for h in head_ids:
            off = h * (2 * qk + v)
            qk_idx, v_idx = list(keep[h][0]), list(keep[h][1])
            rows += [off + c for c in qk_idx] + [off + qk + c for c in qk_idx] + [off + 2 * qk + c for c in v_idx]
            proj_in += [h * v + c for c in v_idx]
        self.qkv = _slice_convnorm(source.qkv, out_idx=rows)
        self.proj = nn.Sequential(copy.deepcopy(source.proj[0]), _slice_convnorm(source.proj[1], in_idx=proj_in))
        self.to(source.attention_biases.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _C, H, W = x.shape
        qkv = self.qkv(x).flatten(2)  # (B, sum_j (2 qk_j + v_j), N)
        bias = self.attention_bias(H, W)  # (kept heads, N, N)
        sizes = [2 * a + b for a, b in zip(self.qk_dims, self.v_dims)]
        outs = []
        for j, chunk in enumerate(qkv.split(sizes, dim=1)):
            q, k, v = chunk.split([self.qk_dims[j], self.qk_dims[j], self.v_dims[j]], dim=1)  # (B, d, N)
            q, k, v = (t.transpose(1, 2).unsqueeze(1) for t in (q, k, v))  # (B, 1, N, d)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[j].to(q.dtype), scale=self.scale)
            outs.append(out.squeeze(1).transpose(1, 2))  # (B, v_j, N)
        return self.proj(torch.cat(outs, dim=1).reshape(B, -1, H, W))


def _check_keep(keep: Mapping[int, tuple[Sequence[int], Sequence[int]]], heads: int) -> None:
    if not keep:
        raise ValueError("a pruned attention module keeps at least one head")
    for h, (qk_idx, v_idx) in keep.items():
        if not 0 <= h < heads:
            raise ValueError(f"head {h} out of range 0..{heads - 1}")
        if not qk_idx or not v_idx:
            raise ValueError(f"kept head {h} needs at least one Q/K pair and one V channel")


def _prune_hidden_own(module: nn.Module, kind: str, kept: Sequence[int]) -> None:
    """Our own surgery of an FFN / MBConv hidden layer, in place."""
    if kind == "ffn":
        module.pw1 = _slice_convnorm(module.pw1, out_idx=kept)
        module.pw2 = _slice_convnorm(module.pw2, in_idx=kept)
    else:
        module.inverted_conv = _slice_convnorm(module.inverted_conv, out_idx=kept)
        module.depth_conv = _slice_convnorm(module.depth_conv, out_idx=kept)
        module.point_conv = _slice_convnorm(module.point_conv, in_idx=kept)


def _hidden_modules(module: nn.Module, kind: str) -> tuple[nn.Conv2d, set[nn.Module]]:
    """(the conv whose output channels are the hidden layer, the layers its group must touch)."""
    cns = (module.pw1, module.pw2) if kind == "ffn" else (module.inverted_conv, module.depth_conv, module.point_conv)
    expected: set[nn.Module] = set()
    for i, cn in enumerate(cns):
        expected.add(cn.conv)
        if i < len(cns) - 1 and not isinstance(cn.norm, nn.Identity):
            expected.add(cn.norm)
    return cns[0].conv, expected


@dataclass
class PrunedModel:
    """The outcome of :func:`prune_model`.

    Attributes:
        model: the pruned ``nn.Module`` (a deep copy; channels physically removed). It keeps the
            original's ``config`` attribute for reference, although its widths differ.
        backends: unit path -> ``"torch-pruning"`` or ``"own"`` (which surgery cut it; units
            without removed channels are not listed).
    """

    model: nn.Module
    backends: dict[str, str]


def _torch_pruning() -> Any | None:
    try:
        import torch_pruning
    except ImportError:  # optional: our own surgery does every group then
        return None
    return torch_pruning


def prune_model(model: nn.Module, units: Sequence[Unit], plan: PruningPlan, img_size: int, in_chans: int,
                *, use_torch_pruning: bool = True) -> PrunedModel:
    """Build the smaller model a plan describes (the input model is not changed).

    FFN / MBConv hidden channels: torch-pruning (``DependencyGraph`` traced on the whole model with
    one (1, in_chans, img_size, img_size) input; a ``prune_conv_out_channels`` group on the unit's
    first conv), used only when the group touches exactly the unit's layers (first conv and norm,
    MBConv depthwise conv and norm, last conv's input); otherwise, or without torch-pruning, our
    own surgery. Attention units: always our own (:class:`PrunedCascadedGroupAttention`,
    :class:`PrunedMultiHeadSelfAttention`, swapped in for the ``attn`` of the window wrapper).

    Args:
        model: the model the units were found in.
        units: from :func:`find_units`; plan: from :func:`plan_pruning`.
        img_size, in_chans: the input the dependency graph is traced with.
        use_torch_pruning: False forces our own surgery everywhere (for comparisons).

    Returns:
        :class:`PrunedModel`, in the input model's train/eval mode.
    """
    pruned = copy.deepcopy(model)
    backends: dict[str, str] = {}
    tp = _torch_pruning() if use_torch_pruning else None
    hidden = [u for u in units if isinstance(u, HiddenUnit) and len(plan.keep[u.path].hidden or ()) < u.hidden]
    graph = None
    if tp is not None and hidden:
        was_training = pruned.training
        pruned.eval()
        device = next(pruned.parameters()).device
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(
                pruned, example_inputs=torch.zeros(1, in_chans, img_size, img_size, device=device), verbose=False)
        pruned.train(was_training)
    for u in hidden:
        module = pruned.get_submodule(u.path)
        kept = list(plan.keep[u.path].hidden or ())
        removed = sorted(set(range(u.hidden)) - set(kept))
        done = False
        if graph is not None:
            first, expected = _hidden_modules(module, u.kind)
            group = graph.get_pruning_group(first, tp.prune_conv_out_channels, idxs=removed)
            all_modules = {m for _, m in pruned.named_modules()}
            touched = {dep.target.module for dep, _ in group if dep.target.module in all_modules}
            if touched == expected and graph.check_pruning_group(group):
                group.prune()
                done = True
                backends[u.path] = "torch-pruning"
        if not done:
            _prune_hidden_own(module, u.kind, kept)
            backends[u.path] = "own"
    for u in units:
        if not isinstance(u, AttentionUnit):
            continue
        keep = plan.keep[u.path].heads
        full = len(keep) == u.heads and all(len(a) == u.qk_dim and len(b) == u.v_dim for a, b in keep.values())
        if full:
            continue
        parent_path, _, attr = u.path.rpartition(".")
        parent = pruned.get_submodule(parent_path)
        source = getattr(parent, attr)
        cls = PrunedCascadedGroupAttention if u.kind == "cga" else PrunedMultiHeadSelfAttention
        new = cls(source, keep)
        new.train(source.training)
        setattr(parent, attr, new)
        backends[u.path] = "own"
    return PrunedModel(pruned, backends)


# --------------------------------------------------------------------------------------------------
# the Fig. 5 view and the reallocated config
def retained_frame(units: Sequence[Unit], plan: PruningPlan, scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """Retained Q/K, V and FFN (or MBConv) widths per block, normalised by the block's input width.

    One row per block (``location = "block"``; its attention unit and its FFNs / MBConv summed)
    and one per downsample FFN / MBConv (``location = "downsample"``). Widths are totals over
    heads (QK: channels of Q, the same as of K). Ratios are to the block's input width C, as in
    arXiv:2305.07027 Fig. 5; ``ffn_ratio_*`` is per FFN (a sandwich block's two FFNs are averaged),
    so it compares with the config's ``ffn_ratio`` (``expand_ratio`` for MBConv).

    Returns:
        Columns: ``label`` (s<i>.b<j> or s<i>.down.<part>), ``index`` (1-based block number, 0 for
        downsample rows), ``stage``, ``block``, ``location``, ``config_stage``, ``width`` (C),
        ``mixer``, ``heads_before/after``, ``qk_before/after``, ``v_before/after``,
        ``ffn_kind``, ``n_ffn``, ``ffn_before/after`` (hidden channels summed over the FFNs),
        ``qk_ratio_before/after``, ``v_ratio_before/after``, ``ffn_ratio_before/after`` and the
        retained fractions ``qk_kept``, ``v_kept``, ``ffn_kept``, ``heads_kept`` (NaN where a
        block has no such part). With ``scores`` (from :func:`taylor_scores`) also
        ``qk_score_per_param``, ``v_score_per_param``, ``ffn_score_per_param``: the median over
        the row's groups of Taylor score / params (how much each parameter of the part matters,
        whatever the target).
    """
    rows: dict[tuple, dict[str, Any]] = {}
    order: list[tuple] = []

    def row_for(key: tuple, **init: Any) -> dict[str, Any]:
        if key not in rows:
            rows[key] = {"heads_before": 0, "heads_after": 0, "qk_before": 0, "qk_after": 0, "v_before": 0,
                         "v_after": 0, "ffn_before": 0, "ffn_after": 0, "n_ffn": 0, "ffn_kind": "", "mixer": "",
                         "_units": [], **init}
            order.append(key)
        return rows[key]

    for u in units:
        keep = plan.keep[u.path]
        if isinstance(u, AttentionUnit):
            r = row_for((u.stage, u.block, "block"), stage=u.stage, block=u.block, location="block",
                        config_stage=u.stage, width=u.width, label=f"s{u.stage}.b{u.block}")
            r["mixer"] = u.kind
            r["_units"].append(u.path)
            r["heads_before"] += u.heads
            r["heads_after"] += len(keep.heads)
            r["qk_before"] += u.heads * u.qk_dim
            r["qk_after"] += sum(len(a) for a, _ in keep.heads.values())
            r["v_before"] += u.heads * u.v_dim
            r["v_after"] += sum(len(b) for _, b in keep.heads.values())
        else:
            if u.block is None:
                part = u.path.split(".downsample", 1)[1].strip(".").split(".")[0] or u.kind
                key = (u.stage, u.path, "downsample")
                r = row_for(key, stage=u.stage, block=-1, location="downsample", config_stage=u.config_stage,
                            width=u.in_chs, label=f"s{u.stage}.down.{part}")
            else:
                r = row_for((u.stage, u.block, "block"), stage=u.stage, block=u.block, location="block",
                            config_stage=u.config_stage, width=u.in_chs, label=f"s{u.stage}.b{u.block}")
            r["ffn_kind"] = u.kind
            r["_units"].append(u.path)
            r["n_ffn"] += 1
            r["ffn_before"] += u.hidden
            r["ffn_after"] += len(keep.hidden or ())
    frame = pd.DataFrame([rows[k] for k in order])
    if frame.empty:
        return frame
    frame = frame.sort_values(["stage", "location", "block"], key=lambda s: s.map({"downsample": 0, "block": 1})
                              if s.name == "location" else s, kind="mergesort").reset_index(drop=True)
    is_block = frame["location"] == "block"
    frame["index"] = 0
    frame.loc[is_block, "index"] = range(1, int(is_block.sum()) + 1)
    width = frame["width"].astype(float)
    nan = float("nan")
    for part in ("qk", "v"):
        has = frame[f"{part}_before"] > 0
        for when in ("before", "after"):
            frame[f"{part}_ratio_{when}"] = (frame[f"{part}_{when}"] / width).where(has, nan)
        frame[f"{part}_kept"] = (frame[f"{part}_after"] / frame[f"{part}_before"]).where(has, nan)
    has_ffn = frame["n_ffn"] > 0
    for when in ("before", "after"):
        frame[f"ffn_ratio_{when}"] = (frame[f"ffn_{when}"] / (width * frame["n_ffn"].clip(lower=1))).where(has_ffn, nan)
    frame["ffn_kept"] = (frame["ffn_after"] / frame["ffn_before"]).where(has_ffn, nan)
    frame["heads_kept"] = (frame["heads_after"] / frame["heads_before"]).where(frame["heads_before"] > 0, nan)
    if scores is not None:
        density = scores[scores["group"] != "head"].assign(
            _density=scores["score"] / scores["params"].clip(lower=1))
        medians = density.groupby(["unit", "group"])["_density"].apply(list)
        for part, group in (("qk", "qk"), ("v", "v"), ("ffn", "hidden")):
            frame[f"{part}_score_per_param"] = [
                float(pd.Series([d for u in paths for d in medians.get((u, group), [])]).median())
                if any((u, group) in medians.index for u in paths) else nan
                for paths in frame["_units"]]
    frame = frame.drop(columns="_units")
    first = ["label", "index", "stage", "block", "location", "config_stage", "width", "mixer"]
    return frame[first + [c for c in frame.columns if c not in first]]


def _round_to(value: float, step: float, low: float) -> float:
    return max(low, round(value / step) * step)


def suggest_config(config: ArchConfig, retained: pd.DataFrame, name: str | None = None) -> ArchConfig:
    """A reallocated architecture from the retained widths: widths, depths, mixers unchanged.

    Per stage, over its blocks' means: ``heads`` = the retained heads rounded (for CGA the nearest
    divisor of the width at or above it, at most the original heads); ``qk_dim`` = the retained
    Q/K channels per kept head, rounded to a multiple of 4 (>= 4); ``v_ratio`` = the retained V
    channels over the width, to a multiple of 1/8 (>= 1/8, at least one V channel per head);
    ``ffn_ratio`` (patch-16 layouts) or ``expand_ratio`` (mbconv) = the retained hidden channels
    per FFN / MBConv over its input width, over every FFN / MBConv the stage's ratio sizes
    (downsample ones included), to a multiple of 1/4 (>= 1/4). Stages without scored attention
    keep their attention fields.

    Args:
        config: the analysed architecture.
        retained: from :func:`retained_frame`.
        name: the new config's ``name``.

    Returns:
        A validated :class:`ArchConfig`.

    Raises:
        ConfigError: the result is infeasible (should not happen: every rounding keeps it valid).
    """
    stages = []
    for i, stage in enumerate(config.stages):
        changes: dict[str, Any] = {}
        attn = retained[(retained["location"] == "block") & (retained["stage"] == i) & (retained["qk_before"] > 0)]
        if not attn.empty:
            heads = max(1, round(float(attn["heads_after"].mean())))
            if stage.token_mixer == "cga":
                heads = min(d for d in range(heads, stage.heads + 1) if stage.width % d == 0)
            heads = min(heads, stage.heads)
            qk_dim = int(_round_to(float(attn["qk_after"].mean()) / heads, 4, 4))
            v_ratio = _round_to(float(attn["v_after"].mean()) / stage.width, 0.125, 0.125)
            while int(v_ratio * stage.width / heads + 1e-9) < 1:
                v_ratio += 0.125
            changes.update(heads=heads, qk_dim=qk_dim, v_ratio=v_ratio)
        hidden = retained[(retained["config_stage"] == i) & (retained["n_ffn"] > 0)]
        if not hidden.empty:
            ratio = float(hidden["ffn_after"].sum() / (hidden["width"] * hidden["n_ffn"]).sum())
            key = "expand_ratio" if config.layout == "mbconv" else "ffn_ratio"
            changes[key] = _round_to(ratio, 0.25, 0.25)
        stages.append(replace(stage, **changes) if changes else stage)
    return replace(config, stages=tuple(stages), name=name)


def _rank_corr(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson on average ranks); NaN for fewer than 2 points or a constant."""
    if len(a) < 2:
        return float("nan")
    ra, rb = pd.Series(list(a)).rank(), pd.Series(list(b)).rank()
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(ra.corr(rb))


def paper_trend(retained: pd.DataFrame) -> dict[str, Any]:
    """Check the trend of arXiv:2305.07027 §3.3 / Fig. 5 on a retained frame.

    The paper's reading: V keeps a larger share of its channels than Q/K, and the FFN hidden layer
    shrinks, more in later blocks. Checked on the blocks (downsample rows excluded):

    * ``v_over_qk``: the mean retained fraction of V > that of QK (over blocks with attention).
      Where both are equal (typically 1: the target was met without touching attention), it is
      decided by the Taylor score per parameter instead, when the frame has those columns: V's
      median is higher than QK's in more than half of the attention blocks (``v_over_qk_basis``
      says which: ``retained`` or ``score per parameter``);
    * ``ffn_shrinks``: mean retained FFN fraction < 1;
    * ``ffn_later_more``: Spearman rho of the FFN retained fraction against the block index < 0,
      and the later half of the blocks keeps less than the earlier half.

    Returns:
        The means, per-block counts, rho, the three booleans (None where not measurable) and
        ``verdict``: ``holds`` (all three), ``partly`` (some), ``does not hold`` (none) or ``n/a``.
    """
    blocks = retained[retained["location"] == "block"].sort_values("index")
    attn = blocks[blocks["qk_before"] > 0]
    ffn = blocks[blocks["n_ffn"] > 0]
    out: dict[str, Any] = {"attention_blocks": len(attn), "ffn_blocks": len(ffn), "v_over_qk": None,
                           "v_over_qk_basis": None}
    if len(attn):
        out["qk_kept_mean"] = float(attn["qk_kept"].mean())
        out["v_kept_mean"] = float(attn["v_kept"].mean())
        out["qk_ratio_after_mean"] = float(attn["qk_ratio_after"].mean())
        out["v_ratio_after_mean"] = float(attn["v_ratio_after"].mean())
        out["blocks_v_over_qk"] = int((attn["v_kept"] > attn["qk_kept"]).sum())
        if "v_score_per_param" in attn:
            ratio = attn["v_score_per_param"] / attn["qk_score_per_param"]  # inf where Q/K do not matter
            out["v_qk_score_ratio"] = float(ratio.median())
            out["blocks_v_denser"] = int((attn["v_score_per_param"] > attn["qk_score_per_param"]).sum())
        if abs(out["v_kept_mean"] - out["qk_kept_mean"]) > 1e-9:
            out["v_over_qk"] = out["v_kept_mean"] > out["qk_kept_mean"]
            out["v_over_qk_basis"] = "retained"
        elif "blocks_v_denser" in out:
            out["v_over_qk"] = out["blocks_v_denser"] > len(attn) / 2
            out["v_over_qk_basis"] = "score per parameter"
    if len(ffn):
        kept = ffn["ffn_kept"].tolist()
        half = len(kept) // 2
        out["ffn_kept_mean"] = float(pd.Series(kept).mean())
        out["ffn_kept_by_block"] = [round(k, 4) for k in kept]
        out["ffn_rho"] = _rank_corr(ffn["index"].tolist(), kept)
        out["ffn_shrinks"] = out["ffn_kept_mean"] < 1
        if half:
            out["ffn_kept_first_half"] = float(pd.Series(kept[:half]).mean())
            out["ffn_kept_second_half"] = float(pd.Series(kept[len(kept) - half:]).mean())
            rho = out["ffn_rho"]
            out["ffn_later_more"] = bool(math.isfinite(rho) and rho < 0
                                         and out["ffn_kept_second_half"] < out["ffn_kept_first_half"])
        else:
            out["ffn_later_more"] = None
    else:
        out["ffn_shrinks"] = out["ffn_later_more"] = None
    checks = [out[k] for k in ("v_over_qk", "ffn_shrinks", "ffn_later_more") if out[k] is not None]
    if not checks:
        out["verdict"] = "n/a"
    elif all(checks) and len(checks) == 3:
        out["verdict"] = "holds"
    elif any(checks):
        out["verdict"] = "partly"
    else:
        out["verdict"] = "does not hold"
    return out


def sensitivity_frame(scores: pd.DataFrame, units: Sequence[Unit], by: str = "params",
                      targets: Sequence[float] = (0.3, 0.5, 0.7), rankings: Sequence[str] = RANKINGS) -> pd.DataFrame:
    """The trend check under every ranking and several targets, from one set of scores.

    Returns:
        One row per (``rank``, ``target``): ``removed`` (fraction of the prunable ``by`` cost),
        ``qk_kept``, ``v_kept`` (means over attention blocks), ``ffn_kept`` (mean over blocks),
        ``ffn_kept_first_half``, ``ffn_kept_second_half``, ``ffn_rho`` and ``verdict``
        (see :func:`paper_trend`).
    """
    rows = []
    for rank in rankings:
        for target in targets:
            plan = plan_pruning(scores, units, target, by, rank)
            trend = paper_trend(retained_frame(units, plan, scores))
            removed = plan.removed_params / max(1, plan.prunable_params) if by == "params" else \
                plan.removed_macs / max(1, plan.prunable_macs)
            rows.append({"rank": rank, "target": target, "removed": removed,
                         "qk_kept": trend.get("qk_kept_mean", float("nan")),
                         "v_kept": trend.get("v_kept_mean", float("nan")),
                         "ffn_kept": trend.get("ffn_kept_mean", float("nan")),
                         "ffn_kept_first_half": trend.get("ffn_kept_first_half", float("nan")),
                         "ffn_kept_second_half": trend.get("ffn_kept_second_half", float("nan")),
                         "ffn_rho": trend.get("ffn_rho", float("nan")),
                         "v_over_qk_basis": trend["v_over_qk_basis"], "verdict": trend["verdict"]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# mapping a config onto a study's space
def _list_label(value: Sequence[int]) -> str:
    """The label a search space gives a list value in Optuna ((3, 5) -> "3,5", () -> "none"),
    as :mod:`explore.space` draws list knobs."""
    return ",".join(map(str, value)) or "none"


class _ConfigTrial:
    """An Optuna-trial stand-in that answers ``space.sample``'s suggestions with a config's values,
    snapped to the distribution asked for (nearest choice; range clamped and put on its step)."""

    def __init__(self, config: ArchConfig) -> None:
        self.config = config
        self.params: dict[str, Any] = {}
        self.notes: list[str] = []

    def _wanted(self, name: str) -> Any:
        match = re.fullmatch(r"stage(\d+)\.(\w+)", name)
        if match is None:
            value = getattr(self.config, name)
        else:
            i, knob = int(match.group(1)), match.group(2)
            if i >= len(self.config.stages):
                raise ExploreError("--enqueue", name, f"the study's space has more stages than the model "
                                                      f"({len(self.config.stages)})")
            stage = self.config.stages[i]
            kernel = re.fullmatch(r"kernel(\d+)", knob)
            value = stage.kernels[int(kernel.group(1))] if kernel else getattr(stage, knob)
        return _list_label(value) if isinstance(value, tuple) else value

    def _record(self, name: str, wanted: Any, value: Any) -> Any:
        if value != wanted:
            self.notes.append(f"{name}: {wanted!r} -> {value!r} (nearest the space allows)")
        self.params[name] = value
        return value

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        wanted = self._wanted(name)
        if wanted in choices:
            return self._record(name, wanted, wanted)
        numeric = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
        if isinstance(wanted, (int, float)) and numeric:
            return self._record(name, wanted, min(numeric, key=lambda c: (abs(c - wanted), c)))
        raise ExploreError("--enqueue", f"{name}={wanted}", f"the study's space allows only {list(choices)}")

    def _snap(self, name: str, low: float, high: float, step: float | None, cast: type) -> Any:
        wanted = self._wanted(name)
        value = min(max(float(wanted), low), high)
        if step:
            value = min(low + round((value - low) / step) * step, high)
        value = cast(round(value)) if cast is int else round(value, 10)
        return self._record(name, wanted, value)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return self._snap(name, low, high, None if log else step, int)

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        return self._snap(name, low, high, step, float)


def space_params(config: ArchConfig, space: Any, *, in_chans: int, num_classes: int) -> tuple[dict[str, Any], ArchConfig, list[str]]:
    """The Optuna parameters under which ``space.sample`` builds ``config`` (or the nearest point).

    The space drives the draw, so exactly its parameters are produced (``stage1.qk_dim``,
    ``stage0.kernel2``, ...); each answer is the config's value snapped to the knob (nearest
    choice; clamped to the range and rounded to its step). Fixed knobs draw nothing.

    Args:
        config: the architecture to enqueue; space: a :class:`~explore.space.SearchSpace`.
        in_chans, num_classes: as the study samples with (from its dataset).

    Returns:
        (params for ``study.enqueue_trial``, the config the study will build from them, notes on
        every snapped value).

    Raises:
        ExploreError: field ``--enqueue``: a text knob (layout, mixer, norm, ...) has no choice
            equal to the config's, the layout or a stage's mixer is fixed otherwise, the stage counts
            differ, or the snapped point is infeasible.
    """
    trial = _ConfigTrial(config)
    try:
        built = space.sample(trial, in_chans=in_chans, num_classes=num_classes)
    except ConfigError as exc:
        raise ExploreError("--enqueue", exc.field, f"the space's nearest point is infeasible: {exc.expected}") from None
    if len(built.stages) != len(config.stages):
        raise ExploreError("--enqueue", len(built.stages),
                           f"the study's space has {len(built.stages)} stages; the model has {len(config.stages)}")
    if built.layout != config.layout:
        raise ExploreError("--enqueue", config.layout, f"the study's space builds the {built.layout} layout only")
    for i, (a, b) in enumerate(zip(config.stages, built.stages)):
        if a.token_mixer != b.token_mixer:
            raise ExploreError("--enqueue", f"stage{i}.token_mixer={a.token_mixer}",
                               f"the study's space fixes stage {i}'s mixer to {b.token_mixer}")
    for name in ("norm", "activation", "img_size"):
        if getattr(built, name) != getattr(config, name) and not any(n.startswith(f"{name}:") for n in trial.notes):
            trial.notes.append(f"{name}: {getattr(config, name)!r} -> {getattr(built, name)!r} (fixed in the space)")
    return trial.params, built, trial.notes


# --------------------------------------------------------------------------------------------------
# the command: resolve, validate, run, report
def resolve_model(spec: str) -> tuple[ArchConfig, str, bool]:
    """``--model``: a preset name, a config file (.json/.toml) or ``RUN_DIR:TRIAL`` of a study.

    Returns:
        (config, a short name for folders and titles, whether it is a preset: presets are built
        at 224 x 224 and take the command's image size).

    Raises:
        ExploreError: field ``--model``: none of the three, no such trial, or a trial without a
            stored config; ConfigError from an invalid config file.
    """
    from explore.presets import PRESETS

    if spec in PRESETS:
        return PRESETS[spec], spec, True
    path = Path(spec)
    if path.is_file():
        return ArchConfig.from_file(path, "--model"), path.stem, False
    run_dir, sep, number = spec.rpartition(":")
    if sep and run_dir:
        if not number.isdigit():
            raise ExploreError("--model", spec, "expected STUDY:TRIAL with a trial number (e.g. runs/cga:3)")
        from explore.study import open_study

        try:
            study = open_study(run_dir)
        except ExploreError as exc:
            raise ExploreError("--model", spec, f"STUDY is not a study run folder ({exc.expected})") from None
        trials = study.get_trials(deepcopy=False)
        index = {t.number: t for t in trials}
        trial = index.get(int(number))
        if trial is None:
            raise ExploreError("--model", spec, f"no trial {number} in {run_dir} (it has {len(trials)} trials)")
        config_json = trial.user_attrs.get("config")
        if not config_json:
            raise ExploreError("--model", spec, f"trial {number} stored no config (state {trial.state.name})")
        name = f"{Path(run_dir).name}-trial{number}"
        return ArchConfig.from_json(config_json, source=spec), name, False
    raise ExploreError("--model", spec, "expected a preset name, an existing config file (.json/.toml) "
                                        "or STUDY:TRIAL (a study run folder and a trial number)")


@dataclass(frozen=True)
class ImportanceSettings:
    """Everything ``explore importance`` needs.

    Attributes:
        model: preset, config file or ``RUN_DIR:TRIAL``.
        dataset, data_root: as for studies (``fashion_mnist`` at the Debian path by default).
        target: fraction of the prunable params (``by="params"``) or MACs to remove, in (0, 1).
        by: ``params`` or ``macs``.
        rank: ``per-cost`` or ``score`` (see :func:`plan_pruning`).
        img_size: input side; None: 64 for presets, the config's own otherwise.
        epochs, batch_size, max_train, max_val: the proxy training budget (images; None = all).
        score_batches: batches (of ``batch_size`` training images, no augmentation) the Taylor
            scores are summed over.
        seed: training seed (the suggested architecture trains with the same).
        device: training/scoring device; latency always follows the ``cpu-latency`` protocol.
        checkpoint: a state dict (``torch.save``) to load instead of training.
        save_checkpoint: write ``checkpoint.pt`` of the trained model into ``out``.
        retrain: train the suggested architecture with the same budget for its top-1.
        latency_repeats: timed runs of each latency measurement (CPU, batch 16, one thread).
        out: output folder; None: ``runs/importance-<name>``.
        enqueue: a study run folder to enqueue the suggested architecture into.
    """

    model: str
    dataset: str = "fashion_mnist"
    data_root: str | None = None
    target: float = 0.5
    by: str = "params"
    rank: str = "per-cost"
    img_size: int | None = None
    epochs: float = 1.0
    batch_size: int = 128
    max_train: int | None = 5000
    max_val: int | None = 1000
    score_batches: int = 8
    seed: int = 0
    device: str = "cpu"
    checkpoint: str | None = None
    save_checkpoint: bool = False
    retrain: bool = True
    latency_repeats: int = 20
    out: str | None = None
    enqueue: str | None = None


@dataclass(frozen=True)
class PreparedImportance:
    """Validated inputs: the config to analyse, its name, the output folder, the loaded checkpoint
    state (or None) and the study to enqueue into (or None)."""

    config: ArchConfig
    name: str
    out: Path
    state_dict: Mapping[str, torch.Tensor] | None
    study: Any | None


def prepare_importance(settings: ImportanceSettings) -> PreparedImportance:
    """Check every input before anything runs or is written.

    Raises:
        ExploreError: named by option: ``--model`` (unknown, bad STUDY:TRIAL), ``--target``,
            ``--by``, ``--img-size``, ``--score-batches``, ``--latency-repeats``, ``--dataset`` /
            ``--data-root``, ``--device``, ``--checkpoint`` (missing, unreadable, or not this
            model's state dict), ``--enqueue`` (not a study, or a space the model does not fit);
            ConfigError for an invalid config.
    """
    from explore.data import check_dataset, load_dataset
    from explore.device import resolve_device
    from explore.models import build
    from explore.train import ProxyRecipe

    _check_target(settings.target, settings.by, settings.rank)
    for name, value, low in (("--score-batches", settings.score_batches, 1),
                             ("--latency-repeats", settings.latency_repeats, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ExploreError(name, value, f"expected an integer >= {low}")
    if settings.img_size is not None and (isinstance(settings.img_size, bool) or not isinstance(settings.img_size, int)
                                          or settings.img_size < 16):
        raise ExploreError("--img-size", settings.img_size, "expected an integer >= 16 (pixels)")
    ProxyRecipe(epochs=settings.epochs, batch_size=settings.batch_size).validate()
    config, name, is_preset = resolve_model(settings.model)
    check_dataset(settings.dataset, settings.data_root)
    resolve_device(settings.device)
    # the dataset fixes channels and classes; peek at them cheaply (synthetic: tiny draw)
    meta = load_dataset(settings.dataset, settings.data_root, max_train=1, max_val=1)
    img_size = settings.img_size or (64 if is_preset else config.img_size)
    config = config.replace(img_size=img_size, in_chans=meta.in_chans, num_classes=meta.num_classes)
    if not any(isinstance(m, (CascadedGroupAttention, MultiHeadSelfAttention, FFN, MBConv))
               for m in build(config).modules()):
        raise ExploreError("--model", settings.model, "has no prunable attention, FFN or MBConv")
    state_dict = None
    if settings.checkpoint is not None:
        path = Path(settings.checkpoint)
        if not path.is_file():
            raise ExploreError("--checkpoint", settings.checkpoint, "no such file")
        try:
            state_dict = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is bad input here
            raise ExploreError("--checkpoint", settings.checkpoint, f"not a readable state dict ({exc})") from None
        try:
            build(config).load_state_dict(state_dict)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExploreError("--checkpoint", settings.checkpoint, f"does not fit this model: {first}") from None
    study = None
    if settings.enqueue is not None:
        from explore.study import open_study, study_space

        try:
            study = open_study(settings.enqueue)
            space = study_space(study, settings.enqueue)
        except ExploreError as exc:
            raise ExploreError("--enqueue", settings.enqueue, f"{exc.field} = {exc.value!r}: {exc.expected}"
                               if exc.field == "space_file" else exc.expected) from None
        space_params(config, space, in_chans=meta.in_chans, num_classes=meta.num_classes)  # fits at all?
    out = Path(settings.out) if settings.out else Path("runs") / safe_name(f"importance-{name}", fallback="model")
    return PreparedImportance(config=config, name=name, out=out, state_dict=state_dict, study=study)


@dataclass
class ImportanceResult:
    """Everything :func:`run_importance` computed (rendered by :func:`write_importance_report`).

    Attributes:
        settings, config, name: the inputs (config with the dataset's image size, channels, classes).
        units, scores, plan, retained: the analysis (see the functions of this module).
        backends: unit path -> surgery back-end.
        suggested: the reallocated config.
        comparison: rows original / pruned / suggested: params, MACs, latency (ms), top-1 (%).
        trend: :func:`paper_trend` of ``retained``.
        sensitivity: :func:`sensitivity_frame` (the trend under both rankings and other targets).
        device_name, seconds: where and how long (seconds per phase).
        enqueued: the enqueue outcome (params, notes, the config the study will build), or None.
        enqueue_error: why the suggested point could not be enqueued (the report is still written).
        trained_state: the trained model's state dict (for ``--save-checkpoint``).
    """

    settings: ImportanceSettings
    config: ArchConfig
    name: str
    units: list[Unit]
    scores: pd.DataFrame
    plan: PruningPlan
    retained: pd.DataFrame
    backends: dict[str, str]
    suggested: ArchConfig
    comparison: pd.DataFrame
    trend: dict[str, Any]
    sensitivity: pd.DataFrame
    device_name: str
    seconds: dict[str, float]
    enqueued: dict[str, Any] | None = None
    enqueue_error: str | None = None
    trained_state: dict[str, torch.Tensor] | None = None


def _score_batches(data: Any, img_size: int, batch_size: int, n_batches: int, seed: int,
                   device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``n_batches`` batches of training images (a seeded permutation, no augmentation)."""
    from explore.data import to_model_input

    n = len(data.train.labels)
    gen = torch.Generator().manual_seed(int(seed) + 1)
    perm = torch.randperm(n, generator=gen)
    size = min(batch_size, n)
    for i in range(n_batches):
        idx = perm[(i * size) % n : (i * size) % n + size]
        if idx.numel() == 0:
            break
        x = to_model_input(data.train.images[idx].to(device), img_size, data.mean, data.std)
        yield x, data.train.labels[idx].to(device)


def run_importance(settings: ImportanceSettings, prepared: PreparedImportance,
                   log: Callable[[str], None] = lambda _msg: None) -> ImportanceResult:
    """Train (or load) the model, score, prune, reallocate, measure, and optionally enqueue.

    Steps: proxy-train the model (:func:`explore.train.train_proxy`, or load ``--checkpoint``);
    Taylor scores over ``score_batches`` training batches; :func:`plan_pruning` to the target;
    :func:`prune_model`; the retained widths and :func:`suggest_config`; params, MACs (fvcore),
    latency (``cpu-latency`` protocol: CPU, batch 16, one thread, BN fused) and top-1 of the
    original, the pruned model (no fine-tuning) and the suggested architecture (trained from
    scratch with the same budget and seed, unless ``retrain`` is off); then
    ``study.enqueue_trial(params, skip_if_exists=True)`` when ``enqueue`` is set.

    Args:
        settings: the command's settings; prepared: from :func:`prepare_importance`.
        log: called with one line per finished phase.

    Returns:
        :class:`ImportanceResult`.

    Raises:
        ExploreError: a training failure on bad input (e.g. the data), or a suggested point the
            study's space cannot hold (``--enqueue``).
        NonFiniteLossError: the training loss diverged.
    """
    from explore.data import load_dataset
    from explore.device import resolve_device
    from explore.measure import count_macs, count_params
    from explore.models import build
    from explore.protocols import get_protocol, measure
    from explore.train import ProxyRecipe, evaluate, seed_everything, train_proxy

    config = prepared.config
    device = resolve_device(settings.device)
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    data = load_dataset(settings.dataset, settings.data_root, max_train=settings.max_train, max_val=settings.max_val,
                        seed=settings.seed, img_size=config.img_size)
    recipe = ProxyRecipe(epochs=settings.epochs, batch_size=settings.batch_size)
    seed_everything(settings.seed)
    model = build(config)
    if prepared.state_dict is not None:
        model.load_state_dict(prepared.state_dict)
        top1 = evaluate(model, data.val, img_size=config.img_size, mean=data.mean, std=data.std, device=device)
        log(f"loaded {settings.checkpoint}: top-1 {top1:.2f}%")
    else:
        result = train_proxy(model, data, img_size=config.img_size, recipe=recipe, device=device, seed=settings.seed)
        top1 = result.top1
        log(f"trained {prepared.name}: top-1 {top1:.2f}% in {result.train_seconds:.0f} s")
    seconds["train"] = time.perf_counter() - t0
    model.to(device)

    t0 = time.perf_counter()
    units = find_units(model, config.img_size, config.in_chans)
    batches = _score_batches(data, config.img_size, settings.batch_size, settings.score_batches, settings.seed, device)
    scores = taylor_scores(model, units, batches)
    plan = plan_pruning(scores, units, settings.target, settings.by, settings.rank)
    pruned = prune_model(model.cpu(), units, plan, config.img_size, config.in_chans)
    retained = retained_frame(units, plan, scores)
    suggested = suggest_config(config, retained, name=f"{prepared.name}-realloc")
    trend = paper_trend(retained)
    sensitivity = sensitivity_frame(scores, units, settings.by)
    seconds["score_prune"] = time.perf_counter() - t0
    fallback = int((scores.drop_duplicates("unit")["source"] == "magnitude").sum())
    log(f"scored {len(scores)} groups in {len(units)} units ({fallback} by magnitude); removed "
        f"{plan.removed_params:,} of {plan.prunable_params:,} prunable params")

    t0 = time.perf_counter()
    protocol = get_protocol("cpu-latency", img_size=config.img_size, in_chans=config.in_chans,
                            repeats=settings.latency_repeats, warmup=min(5, settings.latency_repeats))
    rows = []

    def add_row(label: str, net: nn.Module, top: float | None, note: str) -> None:
        net = net.cpu()
        latency = measure(net, protocol)
        rows.append({"model": label, "params": count_params(net), "macs": count_macs(net, config.img_size, config.in_chans),
                     "latency_ms": latency.median_ms, "latency_iqr_ms": latency.iqr_ms,
                     "top1": float("nan") if top is None else top, "note": note})

    add_row("original", model, top1, "trained" if prepared.state_dict is None else "checkpoint")
    pruned_top1 = evaluate(pruned.model, data.val, img_size=config.img_size, mean=data.mean, std=data.std, device=device)
    add_row("pruned", pruned.model, pruned_top1, "no fine-tuning")
    seed_everything(settings.seed)
    suggested_model = build(suggested)
    suggested_top1 = None
    if settings.retrain:
        res = train_proxy(suggested_model, data, img_size=config.img_size, recipe=recipe, device=device,
                          seed=settings.seed)
        suggested_top1 = res.top1
        log(f"trained the suggested architecture: top-1 {suggested_top1:.2f}%")
    add_row("suggested", suggested_model, suggested_top1, "trained from scratch" if settings.retrain else "not trained")
    seconds["measure_retrain"] = time.perf_counter() - t0

    enqueued = enqueue_error = None
    if prepared.study is not None:
        from explore.study import study_space

        space = study_space(prepared.study, settings.enqueue)
        try:
            params, built, notes = space_params(suggested, space, in_chans=config.in_chans,
                                                num_classes=config.num_classes)
        except ExploreError as exc:  # the report is worth keeping: say why, enqueue nothing
            enqueue_error = str(exc)
        else:
            prepared.study.enqueue_trial(params, user_attrs={"enqueued_by": "explore importance",
                                                             "importance_of": prepared.name}, skip_if_exists=True)
            enqueued = {"run_dir": settings.enqueue, "params": params, "notes": notes, "config": built.to_dict()}
            log(f"enqueued into {settings.enqueue} ({len(notes)} values snapped)")
    trained_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if settings.save_checkpoint else None
    return ImportanceResult(
        settings=settings, config=config, name=prepared.name, units=units, scores=scores, plan=plan,
        retained=retained, backends=pruned.backends, suggested=suggested, comparison=pd.DataFrame(rows),
        trend=trend, sensitivity=sensitivity, device_name=str(device), seconds=seconds, enqueued=enqueued, enqueue_error=enqueue_error,
        trained_state=trained_state)


def command_line(settings: ImportanceSettings) -> str:
    """The ``explore importance`` command line that reproduces a run (defaults left out)."""
    words = ["explore", "importance", "--model", settings.model]
    defaults = ImportanceSettings(model=settings.model)
    flags = [("dataset", "--dataset"), ("data_root", "--data-root"), ("target", "--target"), ("by", "--by"), ("rank", "--rank"),
             ("img_size", "--img-size"), ("epochs", "--epochs"), ("batch_size", "--batch-size"),
             ("max_train", "--max-train"), ("max_val", "--max-val"), ("score_batches", "--score-batches"),
             ("seed", "--seed"), ("device", "--device"), ("checkpoint", "--checkpoint"),
             ("latency_repeats", "--latency-repeats"), ("out", "--out"), ("enqueue", "--enqueue")]
    for attr, flag in flags:
        value = getattr(settings, attr)
        if value != getattr(defaults, attr):
            words += [flag, "0" if value is None and attr in ("max_train", "max_val") else f"{value:g}"
                      if isinstance(value, float) else str(value)]
    if settings.save_checkpoint:
        words.append("--save-checkpoint")
    if not settings.retrain:
        words.append("--no-retrain")
    return " ".join(shlex.quote(w) for w in words)


# --------------------------------------------------------------------------------------------------
# rendering (from the DataFrames only)
def plot_retained(retained: pd.DataFrame, path: Path, title: str) -> Path:
    """The Fig. 5 layout: per block, the retained QK, V and FFN widths over the block's input width
    (solid, after pruning) and the widths before pruning (dashed); beside it, when the frame has
    them, the median Taylor score per parameter of each part (log scale). Writes a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = retained[retained["location"] == "block"].sort_values("index")
    density = [p for p in ("qk", "v", "ffn") if f"{p}_score_per_param" in blocks
               and (blocks[f"{p}_score_per_param"] > 0).any()]
    width = max(6.0, 0.6 * len(blocks) + 4.5)
    fig, axes = plt.subplots(1, 2 if density else 1, figsize=(width * (1.8 if density else 1), 3.8), squeeze=False)
    colours = {"qk": "tab:blue", "v": "tab:orange", "ffn": "tab:green"}
    names = {"qk": "QK", "v": "V", "ffn": "FFN" if (blocks["ffn_kind"] != "mbconv").all() else "FFN/MBConv"}
    ax = axes[0][0]
    for part, colour in colours.items():
        after, before = blocks[f"{part}_ratio_after"], blocks[f"{part}_ratio_before"]
        if after.notna().any():
            ax.plot(blocks["index"], after, marker="o", color=colour, label=f"{names[part]} after")
            ax.plot(blocks["index"], before, linestyle="--", color=colour, alpha=0.5, label=f"{names[part]} before")
    ax.set_ylabel("channels / block input width")
    ax.set_title(title, fontsize=9)
    if density:
        right = axes[0][1]
        for part in density:
            values = blocks[f"{part}_score_per_param"].where(blocks[f"{part}_score_per_param"] > 0)
            right.plot(blocks["index"], values, marker="o", color=colours[part], label=names[part])
        right.set_yscale("log")
        right.set_ylabel("median Taylor score per parameter")
        right.set_title("importance per parameter (any target)", fontsize=9)
    for a in axes[0]:
        a.set_xticks(list(blocks["index"]))
        a.set_xticklabels(list(blocks["label"]), rotation=45, ha="right", fontsize=8)
        a.set_xlabel("block")
        a.grid(alpha=0.3)
        a.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _md_table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False)


def _stage_table(config: ArchConfig, suggested: ArchConfig) -> pd.DataFrame:
    rows = []
    hidden_key = "expand_ratio" if config.layout == "mbconv" else "ffn_ratio"
    for i, (a, b) in enumerate(zip(config.stages, suggested.stages)):
        rows.append({"stage": i, "width": a.width, "mixer": a.token_mixer, "heads": f"{a.heads} -> {b.heads}",
                     "qk_dim": f"{a.qk_dim} -> {b.qk_dim}", "v_ratio": f"{a.v_ratio:g} -> {b.v_ratio:g}",
                     hidden_key: f"{getattr(a, hidden_key):g} -> {getattr(b, hidden_key):g}"})
    return pd.DataFrame(rows)


def _yes_no(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "no")


def render_summary(result: ImportanceResult, command: str) -> str:
    """Markdown: command, data and budget, the comparison table, the per-block retained ratios,
    the reallocated stages and the verdict on the paper's trend, with numbers."""
    s, plan, trend = result.settings, result.plan, result.trend
    comp = result.comparison.assign(
        params=(result.comparison["params"] / 1e6).round(4), macs=(result.comparison["macs"] / 1e6).round(3),
        latency_ms=result.comparison["latency_ms"].round(3), latency_iqr_ms=result.comparison["latency_iqr_ms"].round(3),
        top1=result.comparison["top1"].round(2),
    ).rename(columns={"params": "params (M)", "macs": "MACs (M)", "latency_ms": "latency (ms)",
                      "latency_iqr_ms": "latency IQR (ms)", "top1": "top-1 (%)"})
    blocks = result.retained[result.retained["location"] == "block"]
    cols = ["label", "width", "mixer", "heads_before", "heads_after", "qk_ratio_before", "qk_ratio_after", "qk_kept",
            "v_ratio_before", "v_ratio_after", "v_kept", "ffn_ratio_before", "ffn_ratio_after", "ffn_kept"]
    per_block = blocks[cols].round(3)
    down = result.retained[result.retained["location"] == "downsample"]
    sources = result.scores.drop_duplicates("unit")["source"].value_counts().to_dict()
    backends = pd.Series(result.backends).value_counts().to_dict() if result.backends else {}
    by_cost = plan.removed_params / max(1, plan.prunable_params), plan.removed_macs / max(1, plan.prunable_macs)
    budget = (f"{s.epochs:g} epoch(s) over {s.max_train or 'all'} training images, batch {s.batch_size}, "
              f"top-1 on {s.max_val or 'all'} held-out images" if s.checkpoint is None else f"checkpoint {s.checkpoint}")
    lines = [
        f"# Taylor importance and parameter reallocation: {result.name}",
        "",
        f"Command: `{command}`",
        "",
        f"Dataset {s.dataset} at {result.config.img_size}x{result.config.img_size}; {budget}; seed {s.seed}; "
        f"scores summed over {s.score_batches} training batches of {s.batch_size}; device {result.device_name}; "
        f"latency: cpu-latency protocol (CPU, batch 16, one thread, BN fused, {s.latency_repeats} repeats); "
        f"time: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items()) + ".",
        "",
        (f"Model: `{result.config.summary()}`. Pruned {s.target:g} of the prunable {s.by} "
        f"(removed {plan.removed_params:,} of {plan.prunable_params:,} prunable params = {by_cost[0]:.1%}, "
        f"{plan.removed_macs:,} of {plan.prunable_macs:,} prunable MACs = {by_cost[1]:.1%}), groups ranked globally "
        + ("by Taylor score per unit of cost" if plan.rank == "per-cost" else "by raw Taylor score")
        + " (arXiv:2305.07027 §3.3)."),
        "",
        "## Original, pruned and suggested",
        "",
        _md_table(comp),
        "",
        ("`pruned` is the original with the channels removed (no fine-tuning); `suggested` is the reallocated "
        "architecture (`suggested_config.json`) trained from scratch with the same budget and seed."),
        "",
        "## Retained channels per block (Fig. 5 layout)",
        "",
        ("Ratios are channels over the block's input width C (QK and V: totals over heads; FFN: per FFN); "
        "`*_kept` = after / before. Plot: `retained.png`; every row: `retained.csv`; every group: `scores.csv`."),
        "",
        _md_table(per_block),
        "",
    ]
    if not down.empty:
        lines += ["Downsample FFN / MBConv hidden layers:", "",
                  _md_table(down[["label", "width", "ffn_kind", "ffn_before", "ffn_after", "ffn_kept"]].round(3)), ""]
    lines += ["## Reallocated stages", "", _md_table(_stage_table(result.config, result.suggested)), ""]
    lines += ["## The paper's trend", ""]
    if trend.get("attention_blocks"):
        dens = (f"; Taylor score per parameter V / QK: median over blocks {trend['v_qk_score_ratio']:.2f}, V "
                f"higher in {trend['blocks_v_denser']} of {trend['attention_blocks']} blocks"
                if "blocks_v_denser" in trend else "")
        basis = ("" if trend["v_over_qk_basis"] != "score per parameter" else
                 " (decided by the score per parameter: the retained fractions tie at this target)")
        lines.append(f"- V keeps a larger share than QK: **{_yes_no(trend['v_over_qk'])}**{basis} — mean retained "
                     f"fraction V {trend['v_kept_mean']:.3f} vs QK {trend['qk_kept_mean']:.3f} (V > QK in "
                     f"{trend['blocks_v_over_qk']} of {trend['attention_blocks']} blocks); ratio to the input width "
                     f"after pruning: V {trend['v_ratio_after_mean']:.3f}, QK {trend['qk_ratio_after_mean']:.3f}"
                     f"{dens}.")
    if trend.get("ffn_blocks"):
        halves = (f"; first half of the blocks keeps {trend['ffn_kept_first_half']:.3f}, second half "
                  f"{trend['ffn_kept_second_half']:.3f}" if "ffn_kept_first_half" in trend else "")
        lines.append(f"- FFN hidden shrinks: **{_yes_no(trend['ffn_shrinks'])}** — mean retained fraction "
                     f"{trend['ffn_kept_mean']:.3f}; by block: {', '.join(f'{k:.3f}' for k in trend['ffn_kept_by_block'])}.")
        lines.append(f"- FFN shrinks more in later blocks: **{_yes_no(trend['ffn_later_more'])}** — Spearman rho of "
                     f"retained fraction vs block index {trend['ffn_rho']:.3f}{halves}.")
    lines += ["", f"Verdict: the paper's trend **{trend['verdict']}** on this model.", ""]
    density_cols = [c for c in ("qk_score_per_param", "v_score_per_param", "ffn_score_per_param") if c in blocks]
    if density_cols:
        table = blocks[["label", *density_cols]].copy()
        for c in density_cols:
            table[c] = table[c].map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
        lines += [("Median Taylor score per parameter of each part, per block (independent of the target and the "
                  "ranking; higher = each parameter matters more):"), "", _md_table(table), ""]
    if not result.sensitivity.empty:
        sens = result.sensitivity.round(3)
        lines += [(f"Sensitivity: the same scores pruned to other targets (fraction of the prunable {s.by}) under "
                  "both rankings (`per-cost`: score / cost; `score`: raw Taylor score, Molchanov et al.'s global "
                  "ranking); `*_kept` are mean retained fractions, `ffn_rho` the rank correlation of the FFN "
                  "retained fraction with the block index:"), "", _md_table(sens), ""]
    lines += ["## How the groups were scored and cut", "",
              (f"- Scores: first-order Taylor |w dL/dw| summed per group over the scoring batches; units scored by "
              f"source: {sources} (magnitude = a unit whose Taylor scores summed to 0 or were not finite)."),
              (f"- Surgery back-ends per pruned unit: {backends} (torch-pruning for FFN/MBConv hidden channels when "
              "its dependency group stays inside the unit; our own grouping for attention Q/K pairs, V channels "
              "and heads)."), ""]
    if result.enqueued is not None:
        lines += ["## Enqueued", "",
                  (f"Into `{result.enqueued['run_dir']}` with `study.enqueue_trial(params, skip_if_exists=True)`: "
                  f"`{json.dumps(result.enqueued['params'], sort_keys=True)}`."),
                  "Snapped to the space: " + ("; ".join(result.enqueued["notes"]) or "nothing") + ".", ""]
    if result.enqueue_error is not None:
        lines += ["## Not enqueued", "", f"`{result.enqueue_error}`", ""]
    return "\n".join(lines)


def write_importance_report(result: ImportanceResult, out_dir: Path, command: str) -> dict[str, Path]:
    """Write ``summary.md``, ``comparison.csv``, ``retained.csv``, ``retained.png``, ``scores.csv``,
    ``sensitivity.csv``, ``suggested_config.json`` (loadable by ``explore describe``), ``enqueued.json`` when enqueued and
    ``checkpoint.pt`` when asked; returns their paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out_dir / "summary.md",
        "comparison": out_dir / "comparison.csv",
        "retained": out_dir / "retained.csv",
        "plot": out_dir / "retained.png",
        "scores": out_dir / "scores.csv",
        "sensitivity": out_dir / "sensitivity.csv",
        "suggested": out_dir / "suggested_config.json",
    }
    result.sensitivity.to_csv(paths["sensitivity"], index=False)
    result.comparison.to_csv(paths["comparison"], index=False)
    result.retained.to_csv(paths["retained"], index=False)
    result.scores.to_csv(paths["scores"], index=False, float_format="%.6g")
    paths["suggested"].write_text(result.suggested.to_json(indent=2) + "\n", encoding="utf-8")
    plot_retained(result.retained, paths["plot"],
                  f"{result.name}: retained channels / input width ({result.settings.target:g} of {result.settings.by} pruned)")
    if result.enqueued is not None:
        paths["enqueued"] = out_dir / "enqueued.json"
        paths["enqueued"].write_text(json.dumps(result.enqueued, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if result.trained_state is not None:
        paths["checkpoint"] = out_dir / "checkpoint.pt"
        torch.save(result.trained_state, paths["checkpoint"])
    paths["summary"].write_text(render_summary(result, command), encoding="utf-8")
    return paths

