"""Token mixers: cascaded group attention (CGA), multi-head softmax attention (MHSA), ReLU linear
attention with optional multi-scale tokens (LiteMLA), and the local window wrapper.

Every mixer takes and returns (B, C, H, W) maps. CGA and MHSA add a learned relative-position
attention bias indexed by the absolute offset (|dy|, |dx|) between tokens (LeViT-style, as in the
CGA paper) and run inside local windows; LiteMLA is global and linear in the number of tokens.

Follows: EfficientViT-M, arXiv:2305.07027 §3.2 (Cascaded Group Attention, Eq. 1-2) and §4
(local window attention, window 7); EfficientViT-B, arXiv:2205.14756 §3.1 (lightweight multi-scale
linear attention, Eq. 1-3, Fig. 3).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from explore.nn.layers import ConvNorm, make_act

__all__ = [
    "relative_bias_index",
    "CascadedGroupAttention",
    "MultiHeadSelfAttention",
    "LiteMLA",
    "LocalWindowAttention",
]


def relative_bias_index(height: int, width: int, table_side: int, device: torch.device | None = None) -> torch.Tensor:
    """Index into a (heads, table_side**2) bias table for every pair of tokens of an H x W grid.

    Token p = (y, x) is row-major; the offset (|dy|, |dx|) maps to ``|dy| * table_side + |dx|``,
    each clamped to ``table_side - 1`` (offsets beyond the table share its last entry, so a model
    runs at a larger resolution than it was built for).

    Returns:
        LongTensor (H*W, H*W).
    """
    ys = torch.arange(height, device=device).repeat_interleave(width)
    xs = torch.arange(width, device=device).repeat(height)
    dy = (ys[:, None] - ys[None, :]).abs().clamp_(max=table_side - 1)
    dx = (xs[:, None] - xs[None, :]).abs().clamp_(max=table_side - 1)
    return dy * table_side + dx


class _BiasedAttention(nn.Module):
    """Shared part of the mixers: the relative-position bias table and its per-grid index cache."""

    def __init__(self, heads: int, table_side: int) -> None:
        super().__init__()
        self.heads = heads
        self.table_side = table_side
        self.attention_biases = nn.Parameter(torch.zeros(heads, table_side * table_side))
        self._index_cache: dict[tuple[int, int, str], torch.Tensor] = {}
        self._bias_cache: dict[tuple[int, int, str], torch.Tensor] = {}

    def attention_bias(self, height: int, width: int) -> torch.Tensor:
        """Bias (heads, N, N) for an H x W window, N = H*W.

        Without autograd (inference), the gathered bias is cached per window shape and device;
        the cache is dropped when the module changes mode or its parameters are loaded.
        """
        device = self.attention_biases.device
        key = (height, width, str(device))
        if not torch.is_grad_enabled() and not self.training:
            bias = self._bias_cache.get(key)
            if bias is None or bias.device != device:
                bias = self._bias_cache[key] = self.attention_biases[:, self._index(key)]
            return bias
        return self.attention_biases[:, self._index(key)]

    def _index(self, key: tuple[int, int, str]) -> torch.Tensor:
        index = self._index_cache.get(key)
        if index is None:
            with torch.inference_mode(False):  # a cached index must stay usable outside inference mode
                index = relative_bias_index(key[0], key[1], self.table_side, self.attention_biases.device)
            self._index_cache[key] = index
        return index

    def train(self, mode: bool = True) -> "_BiasedAttention":
        self._bias_cache = {}
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - torch signature
        self._bias_cache = {}
        super()._load_from_state_dict(*args, **kwargs)


def _head_widths(heads: int, qk_dim: int, v_dim: int, head_ids: Sequence[int] | None,
                 qk_dims: Sequence[int] | None, v_channels: Sequence[Sequence[int]] | None
                 ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(kept heads, Q/K channels per kept head, V channels per kept head as indices of the full
    ``v_dim``), defaults filled in and checked."""
    ids = tuple(range(heads)) if head_ids is None else tuple(int(h) for h in head_ids)
    qks = (qk_dim,) * len(ids) if qk_dims is None else tuple(int(q) for q in qk_dims)
    vs = (tuple(range(v_dim)),) * len(ids) if v_channels is None else tuple(tuple(c) for c in v_channels)
    if not ids or len(set(ids)) != len(ids) or not all(0 <= h < heads for h in ids) or list(ids) != sorted(ids):
        raise ValueError(f"kept heads {list(ids)}: expected distinct, ascending heads of 0..{heads - 1}, at least one")
    if len(qks) != len(ids) or len(vs) != len(ids):
        raise ValueError(f"{len(ids)} kept heads need as many Q/K widths and V channel lists")
    if not all(1 <= q <= qk_dim for q in qks) or not all(vs_j and all(0 <= c < v_dim for c in vs_j) for vs_j in vs):
        raise ValueError(f"every kept head needs 1..{qk_dim} Q/K channels and V channels of 0..{v_dim - 1}")
    return ids, qks, vs


class CascadedGroupAttention(_BiasedAttention):
    """Cascaded group attention: (B, C, H, W) -> (B, C, H, W).

    The channels are split into ``heads`` groups of C/H. Head j takes its split plus the output of
    head j-1 (the cascade, Eq. 2), projects it to Q, K (``qk_dim`` each) and V (``v_dim``) with a
    1x1 Conv+Norm, refines Q with a depthwise conv of kernel ``kernels[j]``, and attends with
    softmax(Q^T K / sqrt(qk_dim) + bias). The V outputs of all heads are concatenated, passed
    through the activation and a 1x1 Conv+Norm back to C channels (Eq. 1).

    Smaller widths (a pruned module, arXiv:2305.07027 §3.3) are the same class built with
    ``head_ids``, ``qk_dims`` and ``v_channels``: only the kept heads attend (each still on its own
    split of the C/H input channels), each with its own Q/K width, and V channel c of head h-1
    joins channel c of split h (for c < C/H) when head h-1 is kept; a removed head outputs nothing.
    The softmax scale stays ``qk_dim ** -0.5``. Such a module computes what the full one computes
    with the removed channels zeroed.

    Args:
        dim: channels C; must be divisible by ``heads``.
        heads: number of heads H (input splits).
        qk_dim: query/key channels per head.
        v_dim: value channels per head.
        kernels: depthwise kernel on Q per head (at least ``heads`` odd sizes; extras unused).
        table_side: side of the window the bias table covers (min(window, feature side)).
        norm: norm name (see :mod:`explore.nn.layers`).
        act: activation name.
        cascade: add head j-1's output to head j's split (Eq. 2); False is plain group attention,
            every head on its own split only (Table 6 "no cascade").
        head_ids: the heads kept (ascending; default all).
        qk_dims: Q/K channels of each kept head (default ``qk_dim``).
        v_channels: for each kept head, which of the ``v_dim`` V channels it keeps (default all);
            the indices route the cascade.

    Raises:
        ValueError: C not divisible by heads, fewer kernels than heads (configs catch both first),
            or kept heads / widths out of range.

    Follows: arXiv:2305.07027 §3.2, Eq. (1)-(2).
    """

    def __init__(self, dim: int, heads: int, qk_dim: int, v_dim: int, kernels: Sequence[int], table_side: int,
                 norm: str = "bn", act: str = "relu", cascade: bool = True, *, head_ids: Sequence[int] | None = None,
                 qk_dims: Sequence[int] | None = None, v_channels: Sequence[Sequence[int]] | None = None) -> None:
        if dim % heads:
            raise ValueError(f"CGA: dim {dim} not divisible by heads {heads}")
        if len(kernels) < heads:
            raise ValueError(f"CGA: {heads} heads need {heads} Q kernels, got {list(kernels)}")
        ids, qks, vs = _head_widths(heads, qk_dim, v_dim, head_ids, qk_dims, v_channels)
        super().__init__(len(ids), table_side)
        self.groups = heads
        self.qk_dim = qk_dim
        self.v_dim = v_dim
        self.kernels = tuple(kernels[:heads])
        self.norm_name, self.act_name = norm, act
        self.scale = qk_dim ** -0.5
        self.cascade = cascade
        self.head_ids, self.qk_dims, self.v_dims = ids, qks, tuple(len(v) for v in vs)
        self.v_channels = vs
        split = dim // heads
        self.qkvs = nn.ModuleList(ConvNorm(split, 2 * qk + v, norm=norm) for qk, v in zip(qks, self.v_dims))
        self.dws = nn.ModuleList(
            ConvNorm(qk, qk, kernels[h], groups=qk, norm=norm) for h, qk in zip(ids, qks)
        )
        self.proj = nn.Sequential(make_act(act), ConvNorm(sum(self.v_dims), dim, norm=norm, norm_weight_init=0.0))
        routes: list[str | None] = []
        for j, h in enumerate(ids):
            if j == 0 or not cascade or ids[j - 1] != h - 1:
                routes.append(None)  # the first kept head, no cascade, or the head before was removed
            elif vs[j - 1] == tuple(range(len(vs[j - 1]))):
                routes.append("dense")  # V channels 0..v-1 of head h-1 join channels 0..v-1 of split h
            else:
                src = [i for i, c in enumerate(vs[j - 1]) if c < split]
                self.register_buffer(f"cascade_src_{j}", torch.as_tensor(src, dtype=torch.long), persistent=False)
                self.register_buffer(f"cascade_dst_{j}", torch.as_tensor([vs[j - 1][i] for i in src], dtype=torch.long),
                                     persistent=False)
                routes.append("index")
        self._routes = tuple(routes)

    def _cascade(self, j: int, prev: torch.Tensor, split: torch.Tensor) -> torch.Tensor:
        """Head j's input: its split (B, C/H, H, W) plus the previous head's output prev (B, v, H, W).

        With V dim = C/H (the paper's models) this is a plain sum. Where a reallocated V dim
        differs, the channels they share are summed: the extra output channels are dropped
        (v > C/H), or the split's extra channels pass unchanged (v < C/H). A module with removed V
        channels adds each kept channel to the split channel of its original index.
        """
        route = self._routes[j]
        if route is None:
            return split
        if route == "index":
            dst, src = getattr(self, f"cascade_dst_{j}"), getattr(self, f"cascade_src_{j}")
            # the sum is built in prev's layout (a strided split clones to NCHW by default, which the
            # next convolution would copy back in channels_last)
            if prev.is_contiguous(memory_format=torch.channels_last):  # select on the (B, H, W, v) view: no copy
                picked = prev.permute(0, 2, 3, 1).index_select(3, src).permute(0, 3, 1, 2)
                return split.clone(memory_format=torch.channels_last).index_add_(1, dst, picked)
            return split.index_add(1, dst, prev.index_select(1, src))
        split_dim, v = split.shape[1], prev.shape[1]
        if v == split_dim:
            return prev + split
        if v > split_dim:
            return prev[:, :split_dim] + split
        return torch.cat([split[:, :v] + prev, split[:, v:]], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        splits = x.chunk(self.groups, dim=1)  # groups x (B, C/H, H, W)
        bias = self.attention_bias(H, W)  # (kept heads, N, N)
        # each head's output keeps the input's memory layout: in channels_last (the GPU protocols) an
        # NCHW head output made the next head's convolutions copy it back, one copy per head (issue 27)
        channels_last = C > 1 and H * W > 1 and x.is_contiguous(memory_format=torch.channels_last)
        outs = []
        feat = splits[self.head_ids[0]]
        for j, (qkv, dw) in enumerate(zip(self.qkvs, self.dws)):
            if j > 0:  # cascade: previous head's output (v channels) joins this split (C/H)
                feat = self._cascade(j, feat, splits[self.head_ids[j]])
            qk, v_dim = self.qk_dims[j], self.v_dims[j]
            q, k, v = qkv(feat).split([qk, qk, v_dim], dim=1)
            q = dw(q)
            q, k, v = q.flatten(2), k.flatten(2), v.flatten(2)  # (B, qk, N), (B, qk, N), (B, v, N)
            attn = (q * self.scale).transpose(-2, -1) @ k + bias[j]  # (B, N, N)
            attn = attn.softmax(dim=-1)
            if channels_last:  # (B, N, v) viewed as (B, v, H, W) with channels_last strides
                feat = (attn @ v.transpose(-2, -1)).view(B, H, W, v_dim).permute(0, 3, 1, 2)
            else:
                feat = (v @ attn.transpose(-2, -1)).view(B, v_dim, H, W)  # (B, v, H, W)
            outs.append(feat)
        return self.proj(torch.cat(outs, dim=1))


class MultiHeadSelfAttention(_BiasedAttention):
    """Multi-head softmax self-attention on a window: (B, C, H, W) -> (B, C, H, W).

    One 1x1 Conv+Norm projects all C channels to Q, K (``qk_dim`` per head) and V (``v_dim`` per
    head); every head attends over the whole input (no channel split, no cascade, no DW conv on Q),
    with the same relative-position bias as CGA, through PyTorch's fused
    ``scaled_dot_product_attention``. Output: activation, then 1x1 Conv+Norm to C.
    This is the "CGA -> MHSA" row of arXiv:2305.07027 Table 6.

    Smaller widths are the same class built with ``head_ids``, ``qk_dims`` and ``v_channels`` (as
    for :class:`CascadedGroupAttention`): the projection makes [Q_j | K_j | V_j] of each kept head
    j; heads of unequal widths attend one by one, with the full module's scale.

    Args:
        dim: channels C.
        heads: heads H.
        qk_dim: Q/K channels per head.
        v_dim: V channels per head.
        table_side: side of the window the bias table covers.
        norm: norm name.
        act: activation name.
        head_ids: the kept heads (default: all).
        qk_dims: their Q/K widths (default: full).
        v_channels: their V channels (default: all).

    Raises:
        ValueError: kept heads / widths out of range.
    """

    def __init__(self, dim: int, heads: int, qk_dim: int, v_dim: int, table_side: int,
                 norm: str = "bn", act: str = "relu", *, head_ids: Sequence[int] | None = None,
                 qk_dims: Sequence[int] | None = None, v_channels: Sequence[Sequence[int]] | None = None) -> None:
        ids, qks, vs = _head_widths(heads, qk_dim, v_dim, head_ids, qk_dims, v_channels)
        super().__init__(len(ids), table_side)
        self.groups = heads
        self.qk_dim = qk_dim
        self.v_dim = v_dim
        self.norm_name, self.act_name = norm, act
        self.scale = qk_dim ** -0.5
        self.head_ids, self.qk_dims, self.v_dims = ids, qks, tuple(len(v) for v in vs)
        self.v_channels = vs
        self._uniform = len(set(self.qk_dims)) == 1 and len(set(self.v_dims)) == 1
        self.qkv = ConvNorm(dim, sum(2 * qk + v for qk, v in zip(qks, self.v_dims)), norm=norm)
        self.proj = nn.Sequential(make_act(act), ConvNorm(sum(self.v_dims), dim, norm=norm, norm_weight_init=0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if not self._uniform:
            return self._forward_per_head(x)
        qk, v_dim = self.qk_dims[0], self.v_dims[0]
        qkv = self.qkv(x).view(B, self.heads, 2 * qk + v_dim, H * W)
        q, k, v = qkv.transpose(-2, -1).split([qk, qk, v_dim], dim=-1)  # (B, h, N, d)
        bias = self.attention_bias(H, W).to(q.dtype)  # (h, N, N), added to the logits
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)  # (B, h, N, v)
        return self.proj(out.transpose(-2, -1).reshape(B, self.heads * v_dim, H, W))

    def _forward_per_head(self, x: torch.Tensor) -> torch.Tensor:
        """Heads of unequal widths: (B, C, H, W) -> (B, C, H, W), one attention call per head."""
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


class LocalWindowAttention(nn.Module):
    """Run a token mixer inside non-overlapping ``window_size`` windows: (B, C, H, W) -> (B, C, H, W).

    A map no larger than the window in both sides is attended as a whole. A larger map is
    zero-padded at the bottom/right to a multiple of the window, split into windows (batched),
    attended, merged back and cropped. Padded tokens take part in attention, as in the reference
    implementation.

    Follows: arXiv:2305.07027 §4 (window attention, window 7 in every stage).
    """

    def __init__(self, attn: nn.Module, window_size: int) -> None:
        super().__init__()
        self.attn = attn
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        ws = self.window_size
        if H <= ws and W <= ws:
            return self.attn(x)
        pad_b, pad_r = (ws - H % ws) % ws, (ws - W % ws) % ws
        x = F.pad(x, (0, pad_r, 0, pad_b))
        nh, nw = (H + pad_b) // ws, (W + pad_r) // ws
        # (B, C, nh*ws, nw*ws) -> (B*nh*nw, C, ws, ws)
        x = x.view(B, C, nh, ws, nw, ws).permute(0, 2, 4, 1, 3, 5).reshape(B * nh * nw, C, ws, ws)
        x = self.attn(x)
        # (B*nh*nw, C, ws, ws) -> (B, C, nh*ws, nw*ws)
        x = x.view(B, nh, nw, C, ws, ws).permute(0, 3, 1, 4, 2, 5).reshape(B, C, nh * ws, nw * ws)
        return x[:, :, :H, :W].contiguous()


class LiteMLA(nn.Module):
    """Lightweight multi-scale ReLU linear attention: (B, C, H, W) -> (B, C_out, H, W).

    A 1x1 conv (no bias, no norm) makes Q, K, V tokens (``heads`` x ``head_dim`` each). Each scale
    k in ``scales`` adds a branch of aggregated tokens: a k x k depthwise conv then a grouped 1x1
    conv (3 * heads groups) over the Q/K/V channels, giving ``heads`` more heads per scale. Every
    head attends globally with ReLU linear attention,

        out_i = sum_j (relu(q_i) . relu(k_j)) v_j / (sum_j relu(q_i) . relu(k_j) + eps),

    computed as relu(Q) (relu(K)^T [V | 1]) so the cost is linear in the tokens N = H*W (the ones
    column gives the denominator). The products run in float32 with autocast disabled, so the
    result is finite under fp16/bf16 autocast; the output returns in the input's dtype. A 1x1
    Conv+Norm projects the concatenated heads to ``out_chs``. ``scales=()`` is plain ReLU linear
    attention.

    Args:
        in_chs: channels in.
        out_chs: channels out.
        heads: heads of the 1x1 branch (MIT: in_chs // head_dim).
        head_dim: channels per head of Q, K and V.
        scales: aggregation kernel sizes (odd).
        norm: the output projection's norm.
        eps: denominator guard.

    Follows: arXiv:2205.14756 §3.1, Eq. (2)-(3), Fig. 3.
    """

    def __init__(self, in_chs: int, out_chs: int, heads: int, head_dim: int, scales: Sequence[int] = (5,),
                 norm: str = "bn", eps: float = 1e-5) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.eps = eps
        total = heads * head_dim
        self.qkv = ConvNorm(in_chs, 3 * total, 1, norm="none")
        self.aggreg = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(3 * total, 3 * total, k, padding=k // 2, groups=3 * total, bias=False),
                nn.Conv2d(3 * total, 3 * total, 1, groups=3 * heads, bias=False),
            )
            for k in scales
        )
        self.proj = ConvNorm(total * (1 + len(scales)), out_chs, 1, norm=norm)

    def _linear_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q, k: (B, h, N, d); v: (B, h, N, d) -> (B, h, N, d), in float32."""
        q, k, v = q.float(), k.float(), v.float()
        v = F.pad(v, (0, 1), value=1.0)  # (B, h, N, d+1): last column sums the weights
        kv = k.transpose(-1, -2) @ v  # (B, h, d, d+1)
        out = q @ kv  # (B, h, N, d+1)
        return out[..., :-1] / (out[..., -1:] + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        qkv = self.qkv(x)
        tokens = torch.cat([qkv, *(branch(qkv) for branch in self.aggreg)], dim=1)  # (B, 3*h'*d, H, W)
        tokens = tokens.reshape(B, -1, 3 * self.head_dim, H * W).transpose(-1, -2)  # (B, h', N, 3d)
        q, k, v = tokens.chunk(3, dim=-1)
        q, k = F.relu(q), F.relu(k)
        dtype = v.dtype
        if x.device.type == "meta":
            out = self._linear_attention(q, k, v)
        else:
            with torch.autocast(device_type=x.device.type, enabled=False):
                out = self._linear_attention(q, k, v)
        out = out.to(dtype)
        out = out.transpose(-1, -2).reshape(B, -1, H, W)  # (B, h'*d, H, W)
        return self.proj(out)
