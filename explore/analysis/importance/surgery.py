"""Channel surgery: the smaller model a pruning plan describes.

Attention units are rebuilt as the same class with smaller widths
(:class:`explore.nn.CascadedGroupAttention` / :class:`explore.nn.MultiHeadSelfAttention` with
``head_ids``, ``qk_dims`` and ``v_channels``), into which the kept rows and columns of the
unpruned weights are loaded; their forward is the block's own. FFN and MBConv hidden channels are
cut by torch-pruning's dependency graph where its group stays inside the unit, otherwise by
slicing the unit's Conv+Norm layers (:func:`slice_convnorm`).

Every pruned model computes exactly what the unpruned model computes with the removed channels
zeroed, in eval mode.

Follows: arXiv:2305.07027 §3.2 (the attention it prunes) and §3.3 (reallocation).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from explore.analysis.importance.plan import PruningPlan
from explore.analysis.importance.units import AttentionUnit, HiddenUnit, Unit
from explore.nn import CascadedGroupAttention, ConvNorm, LayerNorm2d, MultiHeadSelfAttention

__all__ = ["sliced_state", "slice_convnorm", "pruned_attention", "hidden_modules", "PrunedModel", "prune_model"]

Keep = Mapping[int, tuple[Sequence[int], Sequence[int]]]
"""Kept head -> (kept Q/K pair channels, kept V channels), original indices."""


def _index(idx: Sequence[int] | None, device: torch.device) -> torch.Tensor | None:
    return None if idx is None else torch.as_tensor(list(idx), dtype=torch.long, device=device)


def _depthwise(conv: nn.Conv2d) -> bool:
    return conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def sliced_state(cn: ConvNorm, out_idx: Sequence[int] | None = None,
                 in_idx: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """The state dict of a Conv+Norm keeping output channels ``out_idx`` and input channels
    ``in_idx`` (None: all): conv rows and columns, conv bias and every per-channel norm tensor
    (BatchNorm statistics and affine, LayerNorm affine). A depthwise conv keeps the same channels
    in and out (``out_idx``).

    Raises:
        TypeError: a grouped, non-depthwise conv (none is pruned).
    """
    conv = cn.conv
    if conv.groups > 1 and not _depthwise(conv):
        raise TypeError("grouped (non-depthwise) convs are not pruned")
    out_t, in_t = _index(out_idx, conv.weight.device), _index(in_idx, conv.weight.device)
    state = {}
    for key, tensor in cn.state_dict().items():
        tensor = tensor.detach()
        if key == "conv.weight":
            tensor = tensor if out_t is None else tensor[out_t]
            tensor = tensor if in_t is None or _depthwise(conv) else tensor[:, in_t]
        elif out_t is not None and tensor.dim() == 1 and (key == "conv.bias" or key.startswith("norm.")):
            tensor = tensor[out_t]
        state[key] = tensor.clone()
    return state


def _resized_norm(norm: nn.Module, channels: int) -> nn.Module:
    """A norm of the same kind and settings over ``channels`` channels (values loaded later)."""
    if isinstance(norm, nn.Identity):
        return nn.Identity()
    if isinstance(norm, nn.BatchNorm2d):
        return nn.BatchNorm2d(channels, eps=norm.eps, momentum=norm.momentum, affine=norm.affine,
                              track_running_stats=norm.track_running_stats)
    if isinstance(norm, LayerNorm2d):
        return LayerNorm2d(channels, eps=norm.eps, elementwise_affine=norm.elementwise_affine)
    raise TypeError(f"cannot slice a {type(norm).__name__}")


def slice_convnorm(cn: ConvNorm, out_idx: Sequence[int] | None = None, in_idx: Sequence[int] | None = None) -> ConvNorm:
    """A Conv+Norm(+act) of the same kind with the kept channels only (see :func:`sliced_state`).

    Raises:
        TypeError: a grouped, non-depthwise conv, or a norm that cannot be sliced.
    """
    conv = cn.conv
    state = sliced_state(cn, out_idx, in_idx)
    n_out = state["conv.weight"].shape[0]
    n_in = n_out if _depthwise(conv) else state["conv.weight"].shape[1]
    new = copy.deepcopy(cn)
    new.conv = nn.Conv2d(n_in, n_out, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                         groups=n_out if _depthwise(conv) else 1, bias=conv.bias is not None,
                         padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    if out_idx is not None:
        new.norm = _resized_norm(cn.norm, n_out).to(conv.weight.device)
    new.load_state_dict(state)
    return new


def _check_keep(keep: Keep, heads: int) -> None:
    if not keep:
        raise ValueError("a pruned attention module keeps at least one head")
    for h, (qk_idx, v_idx) in keep.items():
        if not 0 <= h < heads:
            raise ValueError(f"head {h} out of range 0..{heads - 1}")
        if not qk_idx or not v_idx:
            raise ValueError(f"kept head {h} needs at least one Q/K pair and one V channel")


def pruned_attention(source: CascadedGroupAttention | MultiHeadSelfAttention,
                     keep: Keep) -> CascadedGroupAttention | MultiHeadSelfAttention:
    """The same attention class as ``source`` built with the kept heads and widths, holding the
    kept rows and columns of ``source``'s weights: (B, C, H, W) -> (B, C, H, W), equal to
    ``source`` with the removed channels zeroed (K and V after their norm).

    Args:
        source: an unpruned CGA or MHSA module (weights are copied; it is not changed).
        keep: kept head -> (kept Q/K pair channels, kept V channels), original indices; at least one
            head, each with at least one pair and one V channel.

    Raises:
        ValueError: an empty keep, a head out of range, or a kept head with no Q/K pair or V channel.
    """
    heads, qk, v = source.groups, source.qk_dim, source.v_dim
    _check_keep(keep, heads)
    if source.head_ids != tuple(range(heads)):
        raise ValueError("prune an unpruned attention module (all heads, full widths)")
    head_ids = sorted(keep)
    widths = dict(head_ids=head_ids, qk_dims=[len(keep[h][0]) for h in head_ids],
                  v_channels=[list(keep[h][1]) for h in head_ids])
    dim = source.proj[1].conv.out_channels
    state: dict[str, torch.Tensor] = {"attention_biases": source.attention_biases.detach()[head_ids].clone()}
    proj_in: list[int] = []
    if isinstance(source, CascadedGroupAttention):
        new: CascadedGroupAttention | MultiHeadSelfAttention = CascadedGroupAttention(
            dim, heads, qk, v, source.kernels, source.table_side, source.norm_name, source.act_name,
            cascade=source.cascade, **widths)
        for j, h in enumerate(head_ids):
            qk_idx, v_idx = list(keep[h][0]), list(keep[h][1])
            rows = qk_idx + [qk + c for c in qk_idx] + [2 * qk + c for c in v_idx]  # [Q | K | V] of head h
            state.update({f"qkvs.{j}.{k}": t for k, t in sliced_state(source.qkvs[h], out_idx=rows).items()})
            state.update({f"dws.{j}.{k}": t for k, t in sliced_state(source.dws[h], out_idx=qk_idx).items()})
            proj_in += [h * v + c for c in v_idx]
    else:
        new = MultiHeadSelfAttention(dim, heads, qk, v, source.table_side, source.norm_name, source.act_name, **widths)
        rows = []
        for h in head_ids:
            off, qk_idx, v_idx = h * (2 * qk + v), list(keep[h][0]), list(keep[h][1])
            rows += [off + c for c in qk_idx] + [off + qk + c for c in qk_idx] + [off + 2 * qk + c for c in v_idx]
            proj_in += [h * v + c for c in v_idx]
        state.update({f"qkv.{k}": t for k, t in sliced_state(source.qkv, out_idx=rows).items()})
    state.update({f"proj.1.{k}": t for k, t in sliced_state(source.proj[1], in_idx=proj_in).items()})
    new = new.to(source.attention_biases.device)
    new.load_state_dict(state)
    return new


def _prune_hidden_own(module: nn.Module, kind: str, kept: Sequence[int]) -> None:
    """Our own surgery of an FFN / MBConv hidden layer, in place."""
    if kind == "ffn":
        module.pw1 = slice_convnorm(module.pw1, out_idx=kept)
        module.pw2 = slice_convnorm(module.pw2, in_idx=kept)
    else:
        module.inverted_conv = slice_convnorm(module.inverted_conv, out_idx=kept)
        module.depth_conv = slice_convnorm(module.depth_conv, out_idx=kept)
        module.point_conv = slice_convnorm(module.point_conv, in_idx=kept)


def hidden_modules(module: nn.Module, kind: str) -> tuple[nn.Conv2d, set[nn.Module]]:
    """(the conv whose output channels are the hidden layer of an FFN / MBConv, the layers its
    torch-pruning group must touch: exactly the unit's own)."""
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
    own surgery. Attention units: always our own (:func:`pruned_attention`: the same CGA / MHSA class
    built with the kept widths, swapped in for the ``attn`` of the window wrapper).

    Args:
        model: the model the units were found in.
        units: from :func:`find_units`.
        plan: from :func:`plan_pruning`.
        img_size: input side in pixels of the dependency graph's trace.
        in_chans: its input channels.
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
            first, expected = hidden_modules(module, u.kind)
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
        new = pruned_attention(source, keep)
        new.train(source.training)
        setattr(parent, attr, new)
        backends[u.path] = "own"
    return PrunedModel(pruned, backends)
