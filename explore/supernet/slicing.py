"""Where each weight of a subnet lives in the supernet: for every state-dict entry of
``build(config)``, the supernet tensor it is a slice of and, per dimension, which entries.

Rules (weight entanglement, the first of each dimension is shared):

* every dimension takes a prefix (the first C channels, the first d blocks by name, the first N
  FFNs), except the spatial dims of conv kernels, which take the centre crop of the largest
  kernel (Once-for-All's elastic kernel, without its transform matrices);
* attention weights are laid out per head in the supernet: head j of a subnet is head j of the
  supernet, and inside a head the first Q, K and V channels are shared (``[q | k | v]`` segments
  at the largest QK and V dims); the bias table is cropped to the subnet's window;
* each token-mixer kind of a stage has its own attention weights (``mixer.cga``, ``mixer.mhsa``),
  each multi-scale aggregation kernel its own branch (``aggreg.k5``); the rest is shared;
* each layout x norm group (:func:`~explore.supernet.envelope.subnet_group`) has its own tensors.

Follows: AutoFormer (arXiv:2107.00651 §3.1, weight entanglement by prefix slices) and
Once-for-All (arXiv:1908.09791 §3.2, elastic kernel by centre crop, elastic depth by first blocks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

import torch
from torch import nn

from explore.arch.config import ArchConfig
from explore.nn.attention import CascadedGroupAttention, LiteMLA, MultiHeadSelfAttention
from explore.supernet.envelope import Envelope, StageEnvelope, subnet_group

__all__ = ["Crop", "Slot", "plan_subnet", "resolve"]


@dataclass(frozen=True)
class Crop:
    """A centre crop of ``size`` entries (a kernel's spatial dimension)."""

    size: int


Dim = Union[int, Crop, torch.Tensor]
"""One dimension of a slice: a prefix length, a centre crop, or explicit indices (LongTensor)."""


@dataclass
class Slot:
    """One subnet tensor's place in the supernet.

    Attributes:
        key: the supernet tensor's name.
        dims: per dimension, a prefix length, :class:`Crop` or index tensor.
        shape: the smallest supernet tensor shape that holds every subnet (None: from the dims).
    """

    key: str
    dims: tuple[Dim, ...]
    shape: tuple[int, ...] | None = None

    def extent(self) -> tuple[int, ...]:
        """The supernet shape this slot needs."""
        needed = tuple(d if isinstance(d, int) else d.size if isinstance(d, Crop) else int(d.max()) + 1
                       for d in self.dims)
        return needed if self.shape is None else tuple(max(a, b) for a, b in zip(needed, self.shape))


_MIXER_PATH = re.compile(r"^(stages\.\d+\.blocks\.\d+\.(?:mixer|context))\.")
_STAGE = re.compile(r"^stages\.(\d+)\.")


def _key(config: ArchConfig, name: str, kind: str | None) -> str:
    """The supernet key of a subnet entry: group prefix, mixer kind after the mixer's path."""
    if kind is not None:
        name = _MIXER_PATH.sub(lambda m: f"{m.group(1)}.{kind}.", name)
    return f"{subnet_group(config)}/{name}".replace(".", "/")


def _qkv_rows(qk: int, v: int, QK: int) -> torch.Tensor:
    """One head's [q | k | v] rows in the supernet's [QK | QK | V] segments."""
    return torch.cat([torch.arange(qk), QK + torch.arange(qk), 2 * QK + torch.arange(v)])


def _bias_cols(ts: int, TS: int) -> torch.Tensor:
    """The bias-table entries (|dy| * ts + |dx|) of a ts x ts table in a TS x TS one."""
    return (torch.arange(ts)[:, None] * TS + torch.arange(ts)[None, :]).flatten()


def _per_head(heads: int, stride: int, rows: torch.Tensor) -> torch.Tensor:
    return torch.cat([j * stride + rows for j in range(heads)])


def _generic(shape: torch.Size) -> tuple[Dim, ...]:
    if len(shape) == 4:
        return (shape[0], shape[1], Crop(shape[2]), Crop(shape[3]))
    return tuple(shape)


def _attention_slots(module: nn.Module, local: dict[str, torch.Tensor], env: StageEnvelope) -> dict[str, Slot]:
    """Slots of one attention module's entries (names relative to the module), keys filled later."""
    out: dict[str, Slot] = {}
    H, QK, TS = env.heads, env.qk_dim, env.table_side
    if isinstance(module, (CascadedGroupAttention, MultiHeadSelfAttention)):
        V = env.v_dim
        h, qk, v, ts = module.groups, module.qk_dim, module.v_dim, module.table_side
        rows = _qkv_rows(qk, v, QK)
        out["attention_biases"] = Slot("", (torch.arange(h), _bias_cols(ts, TS)), (H, TS * TS))
        proj_cols = _per_head(h, V, torch.arange(v))
        for name, t in local.items():
            if name == "attention_biases":
                continue
            if name.startswith("proj.1.conv.weight"):
                out[name] = Slot("", (t.shape[0], proj_cols, 1, 1), (env.width, H * V, 1, 1))
            elif name.startswith("proj.1."):
                out[name] = Slot("", _generic(t.shape), (env.width,) if t.dim() else None)
            elif isinstance(module, CascadedGroupAttention) and name.startswith("qkvs."):
                if name.endswith("conv.weight"):
                    out[name] = Slot("", (rows, t.shape[1], 1, 1), (2 * QK + V, env.split, 1, 1))
                else:
                    out[name] = Slot("", (rows,) if t.dim() else (), (2 * QK + V,) if t.dim() else None)
            elif isinstance(module, CascadedGroupAttention) and name.startswith("dws."):
                out[name] = Slot("", _generic(t.shape))
            elif name.startswith("qkv."):  # MHSA: heads of [q | k | v] at the largest dims
                qkv_rows = _per_head(h, 2 * QK + V, rows)
                shape = (H * (2 * QK + V),)
                if name.endswith("conv.weight"):
                    out[name] = Slot("", (qkv_rows, t.shape[1], 1, 1), (*shape, env.width, 1, 1))
                else:
                    out[name] = Slot("", (qkv_rows,) if t.dim() else (), shape if t.dim() else None)
            else:
                out[name] = Slot("", _generic(t.shape))
        return out
    assert isinstance(module, LiteMLA)
    d = module.head_dim
    h = module.qkv.conv.weight.shape[0] // (3 * d)
    D = QK
    rows = _per_head(h, 3 * D, _qkv_rows(d, d, D))
    kernels = [branch[0].kernel_size[0] for branch in module.aggreg]
    slot_of = {k: 1 + env.scales.index(k) for k in kernels}
    proj_cols = torch.cat([(slot * H + j) * D + torch.arange(d)
                           for slot in [0, *(slot_of[k] for k in kernels)] for j in range(h)])
    for name, t in local.items():
        if name == "qkv.conv.weight":
            out[name] = Slot("", (rows, t.shape[1], 1, 1), (3 * H * D, env.width, 1, 1))
        elif name.startswith("aggreg."):  # each kernel size its own branch
            _, branch, rest = name.split(".", 2)
            k = kernels[int(branch)]
            if rest == "0.weight":
                out[name] = Slot(f"aggreg.k{k}.{rest}", (rows, 1, k, k), (3 * H * D, 1, k, k))
            else:
                out[name] = Slot(f"aggreg.k{k}.{rest}", (rows, torch.arange(d), 1, 1), (3 * H * D, D, 1, 1))
        elif name == "proj.conv.weight":
            out[name] = Slot("", (t.shape[0], proj_cols, 1, 1), (env.width, H * D * (1 + len(env.scales)), 1, 1))
        else:
            out[name] = Slot("", _generic(t.shape))
    return out


def plan_subnet(model: nn.Module, config: ArchConfig, envelope: Envelope) -> dict[str, Slot]:
    """Every state-dict entry of ``model = build(config)`` -> its :class:`Slot` in the supernet.

    Args:
        model: ``build(config)`` (any device; only names and shapes are read).
        config: its architecture.
        envelope: the space's envelope (the largest sizes the slots are laid out at).

    Returns:
        entry name -> slot (the supernet key and, per dimension, the entries taken).
    """
    state = model.state_dict(keep_vars=True)
    slots: dict[str, Slot] = {}
    attention = [(path, m) for path, m in model.named_modules()
                 if isinstance(m, (CascadedGroupAttention, MultiHeadSelfAttention, LiteMLA))]
    covered: set[str] = set()
    for path, module in attention:
        stage = int(_STAGE.match(path).group(1))  # type: ignore[union-attr]
        prefix = path + "."
        local = {n[len(prefix):]: t for n, t in state.items() if n.startswith(prefix)}
        kind = config.stages[stage].token_mixer
        for rel, slot in _attention_slots(module, local, envelope.stages[stage]).items():
            name = prefix + rel
            slot.key = _key(config, prefix + (slot.key or rel), kind)
            slots[name] = slot
            covered.add(name)
    for name, t in state.items():
        if name in covered:
            continue
        match = _MIXER_PATH.match(name)
        kind = config.stages[int(_STAGE.match(name).group(1))].token_mixer if match else None  # type: ignore[union-attr]
        slots[name] = Slot(_key(config, name, kind), _generic(t.shape))
    return slots


def resolve(dim: Dim, size: int) -> tuple[str, object]:
    """A dimension of a slot against a supernet dimension of ``size`` entries: ``("narrow",
    (start, length))`` or ``("index", LongTensor)``, or ``("all", None)`` when it is the whole."""
    if isinstance(dim, int):
        return ("all", None) if dim == size else ("narrow", (0, dim))
    if isinstance(dim, Crop):
        return ("all", None) if dim.size == size else ("narrow", ((size - dim.size) // 2, dim.size))
    if dim.numel() == size and bool((dim == torch.arange(size)).all()):
        return ("all", None)
    n = dim.numel()
    if n and int(dim[-1]) - int(dim[0]) == n - 1 and bool((dim[1:] - dim[:-1] == 1).all()):
        return ("narrow", (int(dim[0]), n))
    return ("index", dim)
