"""The generator's blocks and ``build(config) -> nn.Module``: layers, attention (CGA, MHSA, LiteMLA,
local windows: one class each, with widths that pruning can shrink), heads, both macro layouts.

Follows: EfficientViT-M, arXiv:2305.07027 §3-4; EfficientViT-B, arXiv:2205.14756 §3.
"""

from explore.nn.attention import (
    CascadedGroupAttention,
    LiteMLA,
    LocalWindowAttention,
    MultiHeadSelfAttention,
    relative_bias_index,
)
from explore.nn.build import (
    ConvStem,
    EfficientViT,
    MixerMBConvBlock,
    PatchMergingDownsample,
    SandwichBlock,
    Stage,
    TransformerBlock,
    build,
    make_token_mixer,
)
from explore.nn.layers import (
    FFN,
    ConvNorm,
    DSConv,
    LayerNorm2d,
    MBConv,
    MLPHead,
    NormLinear,
    PatchEmbed,
    PatchMerging,
    Residual,
    SqueezeExcite,
    dw_conv_unit,
    make_act,
    make_norm2d,
)
from explore.nn.seg_head import SegHead

__all__ = [
    "CascadedGroupAttention", "LiteMLA", "LocalWindowAttention", "MultiHeadSelfAttention", "relative_bias_index",
    "ConvStem", "EfficientViT", "MixerMBConvBlock", "PatchMergingDownsample", "SandwichBlock", "Stage",
    "TransformerBlock", "build", "make_token_mixer",
    "FFN", "ConvNorm", "DSConv", "LayerNorm2d", "MBConv", "MLPHead", "NormLinear", "PatchEmbed", "PatchMerging",
    "Residual", "SqueezeExcite", "dw_conv_unit", "make_act", "make_norm2d", "SegHead",
]
