"""The segmentation head of EfficientViT-B (MIT): fuse the last stages at one stride, a few MBConv
layers, per-pixel logits.

Follows: arXiv:2205.14756 §4 (semantic segmentation on Cityscapes / ADE20K) and the reference
implementation's ``SegHead`` (inputs projected by 1x1 Conv+Norm and upsampled to the head stride,
added; ``head_depth`` MBConv residuals; an optional expanding 1x1 Conv+Norm+act; a 1x1 classifier
conv), for any macro layout and token mixer of the generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from explore.nn.layers import ConvNorm, MBConv, Residual

__all__ = ["SegHead"]


class SegHead(nn.Module):
    """Per-pixel logits from several stages' maps.

    Args:
        in_channels: channels of the fused maps, earliest (highest resolution) first.
        width: the head's channels.
        depth: MBConv residual layers after the fusion.
        expand: their expand ratio (hidden = round(expand * width)).
        final_expand: channels of the last 1x1 Conv+Norm+act as a multiple of ``width`` (0: none).
        num_classes: logits per pixel.
        norm: as in the rest of the model.
        act: as in the rest of the model.

    Forward:
        features: the maps, earliest first, (B, C_i, H_i, W_i) with H_0 >= H_1 >= ...
        returns: (B, num_classes, H_0, W_0) logits at the stride of the earliest map (the caller
        upsamples to the label size, as the reference does).
    """

    def __init__(self, in_channels: list[int], width: int, depth: int, expand: float, final_expand: float,
                 num_classes: int, norm: str = "bn", act: str = "hardswish") -> None:
        super().__init__()
        self.inputs = nn.ModuleList(ConvNorm(c, width, 1, norm=norm) for c in in_channels)
        hidden = max(1, round(expand * width))
        self.middle = nn.Sequential(*(Residual(MBConv(width, width, hidden, norm=norm, act=act, fewer_norm=True))
                                      for _ in range(depth)))
        final = round(final_expand * width)
        self.final = ConvNorm(width, final, 1, norm=norm, act=act) if final else nn.Identity()
        self.classifier = nn.Conv2d(final or width, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        size = features[0].shape[-2:]
        fused = self.inputs[0](features[0])
        for proj, x in zip(self.inputs[1:], features[1:]):
            fused = fused + F.interpolate(proj(x), size=size, mode="bilinear", align_corners=False)
        return self.classifier(self.final(self.middle(fused)))
