"""The generator: ``build(ArchConfig) -> nn.Module``.

Macro layout (EfficientViT-M, arXiv:2305.07027 §3.1 and §4, Fig. 2):

* overlapping patch embedding to 1/16 resolution;
* stages; every stage after the first starts with a downsample (DW conv + FFN residuals, patch
  merging with squeeze-excite, DW conv + FFN residuals);
* sandwich blocks: DW-conv residual -> FFN residual x N -> token mixer (local window CGA or MHSA)
  -> DW-conv residual -> FFN residual x N;
* global average pool and a BN + linear classifier.

The module tree mirrors the reference implementation (timm ``efficientvit_msra``), so that its
checkpoints load with a key rename (:func:`explore.presets.convert_timm_state_dict`).
"""

from __future__ import annotations

import torch
from torch import nn

from explore.config import ArchConfig, StageConfig
from explore.nn.attention import CascadedGroupAttention, LocalWindowAttention, MultiHeadSelfAttention
from explore.nn.layers import FFN, NormLinear, PatchEmbed, PatchMerging, Residual, dw_conv_unit

__all__ = ["SandwichBlock", "Downsample", "Stage", "EfficientViT", "build", "make_token_mixer"]


def make_token_mixer(stage: StageConfig, feature_side: int, norm: str, act: str) -> LocalWindowAttention:
    """The stage's token mixer wrapped in local windows.

    The attention-bias table covers ``min(window_size, feature_side)`` tokens per side: the
    largest window this input resolution produces (the reference implementation's choice, which
    makes parameter counts depend on the resolution the model is built for).
    """
    table_side = min(stage.window_size, feature_side)
    if stage.token_mixer == "cga":
        attn: nn.Module = CascadedGroupAttention(
            stage.width, stage.heads, stage.qk_dim, stage.v_dim, stage.kernels, table_side, norm, act)
    elif stage.token_mixer == "mhsa":
        attn = MultiHeadSelfAttention(stage.width, stage.heads, stage.qk_dim, stage.v_dim, table_side, norm, act)
    else:  # configs reject this first
        raise ValueError(f"unknown token mixer {stage.token_mixer!r}")
    return LocalWindowAttention(attn, stage.window_size)


def _ffns(width: int, hidden: int, count: int, norm: str, act: str) -> nn.Sequential:
    return nn.Sequential(*(Residual(FFN(width, hidden, norm, act)) for _ in range(count)))


class SandwichBlock(nn.Module):
    """Sandwich block: (B, C, H, W) -> (B, C, H, W).

    ``dw0`` -> ``ffn0`` (N FFN residuals) -> ``mixer`` (token-mixer residual) -> ``dw1`` -> ``ffn1``.
    Follows arXiv:2305.07027 §3.1, Eq. (1) with N = ``stage.sandwich_n``.
    """

    def __init__(self, stage: StageConfig, feature_side: int, norm: str, act: str) -> None:
        super().__init__()
        c = stage.width
        self.dw0 = dw_conv_unit(c, norm, norm_weight_init=0.0)
        self.ffn0 = _ffns(c, stage.ffn_hidden, stage.sandwich_n, norm, act)
        self.mixer = Residual(make_token_mixer(stage, feature_side, norm, act))
        self.dw1 = dw_conv_unit(c, norm, norm_weight_init=0.0)
        self.ffn1 = _ffns(c, stage.ffn_hidden, stage.sandwich_n, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn1(self.dw1(self.mixer(self.ffn0(self.dw0(x)))))


class Downsample(nn.Sequential):
    """Stage entry: (B, C_in, H, W) -> (B, C_out, ceil(H/2), ceil(W/2)).

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
    """Optional :class:`Downsample`, then ``depth`` :class:`SandwichBlock`: (B, C_in, H, W) -> (B, C, H', W')."""

    def __init__(self, prev: StageConfig | None, stage: StageConfig, feature_side: int, norm: str, act: str) -> None:
        super().__init__()
        self.downsample = nn.Identity() if prev is None else Downsample(prev, stage, norm, act)
        self.blocks = nn.Sequential(*(SandwichBlock(stage, feature_side, norm, act) for _ in range(stage.depth)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class EfficientViT(nn.Module):
    """A generated model: (B, in_chans, H, W) -> logits (B, num_classes).

    Attributes:
        config: the :class:`ArchConfig` it was built from.

    Any input side works; the relative-bias tables are sized for ``config.img_size``.
    """

    def __init__(self, config: ArchConfig) -> None:
        super().__init__()
        self.config = config
        norm, act = config.norm, config.activation
        self.patch_embed = PatchEmbed(config.in_chans, config.stages[0].width, norm, act)
        sides = config.feature_sizes()
        stages = []
        prev = None
        for stage, side in zip(config.stages, sides):
            stages.append(Stage(prev, stage, side, norm, act))
            prev = stage
        self.stages = nn.Sequential(*stages)
        self.num_features = config.stages[-1].width
        self.head = NormLinear(self.num_features, config.num_classes, norm)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> (B, C_last, ceil(H/2^(3+S)), ...) before pooling."""
        return self.stages(self.patch_embed(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, C_last, h, w) -> pooled (B, C_last) if ``pre_logits`` else logits (B, num_classes)."""
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def build(config: ArchConfig) -> EfficientViT:
    """Build the ``nn.Module`` for a config (already validated on construction).

    Args:
        config: the architecture.

    Returns:
        :class:`EfficientViT` in train mode, randomly initialised (trunc-normal classifier, zero
        init of the last norm of every residual branch).
    """
    return EfficientViT(config)
