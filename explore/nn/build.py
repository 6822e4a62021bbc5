"""The generator: ``build(ArchConfig) -> nn.Module``, for both macro layouts.

* ``sandwich`` (EfficientViT-M, arXiv:2305.07027 §3.1, §4, Fig. 2): overlapping patch embedding to
  1/16; stages after the first start with a downsample (DW conv + FFN residuals, patch merging with
  squeeze-excite, DW conv + FFN residuals); sandwich blocks: DW-conv residual -> FFN residual x N ->
  token mixer -> DW-conv residual -> FFN residual x N.
* ``transformer``: the same stem and stages with the plain block of Swin/DeiT: token-mixer
  residual, then FFN residual (the "Swin block layout" row of arXiv:2305.07027 Table 6).
* ``mbconv`` (EfficientViT-B, arXiv:2205.14756 §3.2, Fig. 4): 3x3 stride-2 conv stem with
  depthwise-separable residual blocks; every stage starts with a stride-2 MBConv; blocks are
  MBConv residuals (stages without attention) or token-mixer residual + MBConv residual.

Any token mixer (cga, mhsa, linear, msla, none) fits either layout; the classifier is norm + linear
or the MIT MLP head. The module trees follow the reference implementations (timm
``efficientvit_msra`` / ``efficientvit_mit``), so their checkpoints load through the key mappings
in :mod:`explore.arch.presets`.
"""

from __future__ import annotations

import torch
from torch import nn

from explore.arch.config import LINEAR_MIXERS, PATCH16_LAYOUTS, WINDOWED_MIXERS, ArchConfig, StageConfig
from explore.nn.attention import CascadedGroupAttention, LiteMLA, LocalWindowAttention, MultiHeadSelfAttention
from explore.nn.seg_head import SegHead
from explore.nn.layers import (
    FFN,
    ConvNorm,
    DSConv,
    MBConv,
    MLPHead,
    NormLinear,
    PatchEmbed,
    PatchMerging,
    Residual,
    dw_conv_unit,
)

__all__ = [
    "make_token_mixer",
    "SandwichBlock",
    "TransformerBlock",
    "MixerMBConvBlock",
    "PatchMergingDownsample",
    "Stage",
    "ConvStem",
    "EfficientViT",
    "build",
]


def make_token_mixer(stage: StageConfig, feature_side: int, norm: str, act: str) -> nn.Module | None:
    """The stage's token mixer, (B, C, H, W) -> (B, C, H, W), or None for ``token_mixer = "none"``.

    cga/mhsa run in local windows of ``window_size`` (0: the whole map); their attention-bias table
    covers ``min(window, feature_side)`` tokens per side, the largest window this input resolution
    produces (the reference implementation's choice, which makes parameter counts depend on the
    resolution the model is built for). linear/msla attend globally, or inside windows of
    ``linear_window`` tokens when it is > 0.
    """
    kind = stage.token_mixer
    if kind in WINDOWED_MIXERS:
        window = stage.window_size or feature_side
        table_side = min(window, feature_side)
        if kind == "cga":
            attn: nn.Module = CascadedGroupAttention(
                stage.width, stage.heads, stage.qk_dim, stage.v_dim, stage.kernels, table_side, norm, act,
                cascade=stage.cascade)
        else:
            attn = MultiHeadSelfAttention(stage.width, stage.heads, stage.qk_dim, stage.v_dim, table_side, norm, act)
        return LocalWindowAttention(attn, window)
    if kind in LINEAR_MIXERS:
        scales = stage.scales if kind == "msla" else ()
        mla = LiteMLA(stage.width, stage.width, stage.heads, stage.qk_dim, scales, norm)
        return LocalWindowAttention(mla, stage.linear_window) if stage.linear_window else mla
    if kind == "none":
        return None
    raise ValueError(f"unknown token mixer {kind!r}")  # configs reject this first


def _ffns(width: int, hidden: int, count: int, norm: str, act: str) -> nn.Sequential:
    return nn.Sequential(*(Residual(FFN(width, hidden, norm, act)) for _ in range(count)))


class SandwichBlock(nn.Module):
    """Sandwich block: (B, C, H, W) -> (B, C, H, W).

    ``dw0`` -> ``ffn0`` (N FFN residuals) -> ``mixer`` (token-mixer residual; Identity for
    ``none``) -> ``dw1`` -> ``ffn1``; ``dw0``/``dw1`` are Identity when ``stage.dw_conv`` is False.
    Follows arXiv:2305.07027 §3.1, Eq. (1) with N = ``sandwich_n``.
    """

    def __init__(self, stage: StageConfig, feature_side: int, norm: str, act: str) -> None:
        super().__init__()
        c = stage.width
        mixer = make_token_mixer(stage, feature_side, norm, act)
        self.dw0 = dw_conv_unit(c, norm, norm_weight_init=0.0) if stage.dw_conv else nn.Identity()
        self.ffn0 = _ffns(c, stage.ffn_hidden, stage.sandwich_n, norm, act)
        self.mixer = nn.Identity() if mixer is None else Residual(mixer)
        self.dw1 = dw_conv_unit(c, norm, norm_weight_init=0.0) if stage.dw_conv else nn.Identity()
        self.ffn1 = _ffns(c, stage.ffn_hidden, stage.sandwich_n, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


class TransformerBlock(nn.Module):
    """Plain transformer block: token-mixer residual (``mixer``), then FFN residual (``ffn``):
    (B, C, H, W) -> (B, C, H, W). The block of Swin/DeiT, for the CGA paper's Table 6 comparison."""

    def __init__(self, stage: StageConfig, feature_side: int, norm: str, act: str) -> None:
        super().__init__()
        mixer = make_token_mixer(stage, feature_side, norm, act)
        self.mixer = nn.Identity() if mixer is None else Residual(mixer)
        self.ffn = Residual(FFN(stage.width, stage.ffn_hidden, norm, act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.mixer(x))


class MixerMBConvBlock(nn.Module):
    """EfficientViT-B block: token-mixer residual (``context``), then MBConv residual (``local``):
    (B, C, H, W) -> (B, C, H, W). Follows arXiv:2205.14756 Fig. 4 (right)."""

    def __init__(self, stage: StageConfig, feature_side: int, norm: str, act: str) -> None:
        super().__init__()
        mixer = make_token_mixer(stage, feature_side, norm, act)
        if mixer is None:
            raise ValueError("MixerMBConvBlock needs a token mixer")
        self.context = Residual(mixer)
        self.local = Residual(MBConv(stage.width, stage.width, stage.mbconv_hidden, norm=norm, act=act,
                                     fewer_norm=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.local(self.context(x))


class PatchMergingDownsample(nn.Sequential):
    """Sandwich-layout stage entry: (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2)).

    ``res1`` (DW conv + FFN residuals at C_in), ``patchmerge``, ``res2`` (same at C_out).
    Follows arXiv:2305.07027 §4 (subsample block between stages).
    """

    def __init__(self, prev: StageConfig, stage: StageConfig, norm: str, act: str) -> None:
        super().__init__()
        self.res1 = nn.Sequential(dw_conv_unit(prev.width, norm), Residual(FFN(prev.width, prev.ffn_hidden, norm, act)))
        self.patchmerge = PatchMerging(prev.width, stage.width, norm, act)
        self.res2 = nn.Sequential(dw_conv_unit(stage.width, norm),
                                  Residual(FFN(stage.width, stage.ffn_hidden, norm, act)))


class Stage(nn.Module):
    """``downsample`` (Identity, :class:`PatchMergingDownsample` or a stride-2 :class:`MBConv`), then
    ``blocks``: (B, C_in, H, W) -> (B, C, H', W')."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


def _patch16_stage(prev: StageConfig | None, stage: StageConfig, side: int, norm: str, act: str,
                   block: type[nn.Module]) -> Stage:
    downsample = nn.Identity() if prev is None else PatchMergingDownsample(prev, stage, norm, act)
    return Stage(downsample, [block(stage, side, norm, act) for _ in range(stage.depth)])


def _mbconv_stage(in_chs: int, stage: StageConfig, side: int, norm: str, act: str) -> Stage:
    has_mixer = stage.token_mixer != "none"
    # the stride-2 MBConv expands its input channels, round(expand_ratio * C_in), as in the reference
    downsample = MBConv(in_chs, stage.width, round(stage.expand_ratio * in_chs), stride=2, norm=norm, act=act,
                        fewer_norm=has_mixer)
    if has_mixer:
        blocks: list[nn.Module] = [MixerMBConvBlock(stage, side, norm, act) for _ in range(stage.depth)]
    else:
        blocks = [Residual(MBConv(stage.width, stage.width, stage.mbconv_hidden, norm=norm, act=act))
                  for _ in range(stage.depth)]
    return Stage(downsample, blocks)


class ConvStem(nn.Sequential):
    """EfficientViT-B input stem: 3x3 stride-2 Conv+Norm+act (``in_conv``), then ``depth``
    depthwise-separable residual blocks (``res0``...): (B, C_in, H, W) -> (B, C, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_chans: int, width: int, depth: int, norm: str, act: str) -> None:
        super().__init__()
        self.add_module("in_conv", ConvNorm(in_chans, width, 3, 2, norm=norm, act=act))
        for i in range(depth):
            self.add_module(f"res{i}", Residual(DSConv(width, width, norm, act)))


class EfficientViT(nn.Module):
    """A generated model: (B, in_chans, H, W) -> logits (B, num_classes).

    Attributes:
        config: the :class:`ArchConfig` it was built from.
        stem, stages, head: the three parts (see the module docstring).

    Any input side works; the relative-bias tables of cga/mhsa are sized for ``config.img_size``.
    """

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.config = config
        norm, act = config.norm, config.activation
        sides = config.feature_sizes()
        stages = []
        if config.layout in PATCH16_LAYOUTS:
            self.stem: nn.Module = PatchEmbed(config.in_chans, config.stages[0].width, norm, act)
            block = SandwichBlock if config.layout == "sandwich" else TransformerBlock
            prev = None
            for stage, side in zip(config.stages, sides):
                stages.append(_patch16_stage(prev, stage, side, norm, act, block))
                prev = stage
        else:
            assert config.stem_width is not None  # validated by ArchConfig
            self.stem = ConvStem(config.in_chans, config.stem_width, config.stem_depth, norm, act)
            in_chs = config.stem_width
            for stage, side in zip(config.stages, sides):
                stages.append(_mbconv_stage(in_chs, stage, side, norm, act))
                in_chs = stage.width
        self.stages = nn.Sequential(*stages)
        self.num_features = config.stages[-1].width
        if config.is_segmentation:
            fused = [stage.width for stage in config.stages[len(config.stages) - config.seg_head_inputs:]]
            self.head = SegHead(fused, config.seg_head_width, config.seg_head_depth, config.seg_head_expand,
                                config.seg_head_final_expand, config.num_classes, norm, act)
        elif config.head_widths:
            self.head: nn.Module = MLPHead(self.num_features, config.head_widths, config.num_classes, norm, act)
        else:
            self.head = NormLinear(self.num_features, config.num_classes, norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> the last stage's map (B, C_last, h, w)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, C_last, h, w) -> pre-logit features if ``pre_logits`` else logits (B, num_classes)."""
        return self.head(x, pre_logits=pre_logits)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, in_chans, H, W) -> every stage's map, first to last, (B, C_i, h_i, w_i)."""
        x = self.stem(x)
        out = []
        for stage in self.stages:
            x = stage(x)
            out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier: (B, in_chans, H, W) -> logits (B, num_classes). Segmentation model
        (``config.seg_head_width`` > 0): -> per-pixel logits (B, num_classes, H/s, W/s), s =
        ``config.seg_stride``."""
        if self.config.is_segmentation:
            return self.head(self.forward_stages(x)[len(self.stages) - self.config.seg_head_inputs:])
        return self.forward_head(self.forward_features(x))


def build(config: ArchConfig) -> EfficientViT:
    """Build the ``nn.Module`` for a config (already validated on construction).

    Args:
        config: the architecture.

    Returns:
        :class:`EfficientViT` in train mode, randomly initialised (trunc-normal classifier, zero
        init of the last norm of every sandwich residual branch, PyTorch defaults elsewhere).
    """
    return EfficientViT(config)
