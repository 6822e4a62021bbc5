"""Building blocks shared by every macro layout: Conv+Norm units, FFN, squeeze-excite, patch
embedding and merging, residual wrapper, classifier head.

Follows: EfficientViT-M, arXiv:2305.07027 §3.1 (sandwich layout: depthwise conv and FFN units) and
§4 (overlapping patch embedding, patch merging with squeeze-excite, BN + linear classifier). Module
and parameter names match the public reference implementation (timm ``efficientvit_msra``) except
``bn`` -> ``norm``, so checkpoints map with a rename (see :mod:`explore.presets`).
"""

from __future__ import annotations

import torch
from torch import nn

from explore.errors import ConfigError

__all__ = [
    "make_act",
    "make_norm2d",
    "LayerNorm2d",
    "ConvNorm",
    "NormLinear",
    "Residual",
    "FFN",
    "SqueezeExcite",
    "PatchEmbed",
    "PatchMerging",
]


# --------------------------------------------------------------------------------------------------
# picking norms and activations by name (an unknown name is an error, never a silent no-op)
def make_act(name: str) -> nn.Module:
    """Activation module for ``"relu"`` or ``"hardswish"``.

    Raises:
        ConfigError: unknown name.
    """
    if name == "relu":
        return nn.ReLU()
    if name == "hardswish":
        return nn.Hardswish()
    raise ConfigError("activation", name, "expected one of relu, hardswish")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, at every position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm2d(name: str, channels: int) -> nn.Module:
    """Norm over (B, C, H, W): ``"bn"`` -> BatchNorm2d, ``"ln"`` -> :class:`LayerNorm2d`.

    Raises:
        ConfigError: unknown name.
    """
    if name == "bn":
        return nn.BatchNorm2d(channels)
    if name == "ln":
        return LayerNorm2d(channels)
    raise ConfigError("norm", name, "expected one of bn, ln")


# --------------------------------------------------------------------------------------------------
# Conv + Norm units
class ConvNorm(nn.Sequential):
    """Conv2d (no bias) followed by a norm: (B, C_in, H, W) -> (B, C_out, H', W').

    Args:
        in_chs, out_chs: channels in and out.
        kernel_size: square kernel, padded to keep the size at stride 1 (``kernel_size // 2``).
        stride: conv stride; H' = ceil(H / stride) for odd kernels.
        groups: conv groups (``in_chs`` for depthwise).
        norm: ``"bn"`` or ``"ln"``.
        norm_weight_init: initial norm scale; 0 makes a residual branch start as identity.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 norm: str = "bn", norm_weight_init: float = 1.0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.norm = make_norm2d(norm, out_chs)
        nn.init.constant_(self.norm.weight, norm_weight_init)
        nn.init.zeros_(self.norm.bias)


class NormLinear(nn.Sequential):
    """Classifier: norm (BatchNorm1d or LayerNorm), dropout, linear: (B, C) -> (B, num_classes).

    Follows arXiv:2305.07027 §4 ("BN + linear" head, fusable at deploy time).
    """

    def __init__(self, in_features: int, out_features: int, norm: str = "bn", drop: float = 0.0) -> None:
        super().__init__()
        if norm == "bn":
            self.norm = nn.BatchNorm1d(in_features)
        elif norm == "ln":
            self.norm = nn.LayerNorm(in_features)
        else:
            raise ConfigError("norm", norm, "expected one of bn, ln")
        self.drop = nn.Dropout(drop)
        self.linear = nn.Linear(in_features, out_features)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)


class Residual(nn.Module):
    """``x + m(x)``: (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.m(x)


def dw_conv_unit(channels: int, norm: str, norm_weight_init: float = 1.0) -> Residual:
    """Residual 3x3 depthwise Conv+Norm (local token interaction before each FFN, §3.1)."""
    return Residual(ConvNorm(channels, channels, 3, groups=channels, norm=norm, norm_weight_init=norm_weight_init))


class FFN(nn.Module):
    """Pointwise FFN: 1x1 Conv+Norm (C -> hidden), activation, 1x1 Conv+Norm (hidden -> C).

    (B, C, H, W) -> (B, C, H, W). The second norm starts at zero so that the residual starts as
    identity. Follows arXiv:2305.07027 §3.1 (FFN with expansion ratio 2 in the M family).
    """

    def __init__(self, channels: int, hidden: int, norm: str = "bn", act: str = "relu") -> None:
        super().__init__()
        self.pw1 = ConvNorm(channels, hidden, norm=norm)
        self.act = make_act(act)
        self.pw2 = ConvNorm(hidden, channels, norm=norm, norm_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


def _make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation gate: (B, C, H, W) -> (B, C, H, W), reduction to C/4 rounded to 8.

    fc1 (1x1 conv, bias) -> ReLU -> fc2 (1x1 conv, bias) -> sigmoid, multiplied into the input.
    """

    def __init__(self, channels: int, rd_ratio: float = 0.25) -> None:
        super().__init__()
        rd_channels = _make_divisible(channels * rd_ratio)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1)
        self.act = nn.ReLU()
        self.fc2 = nn.Conv2d(rd_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * scale.sigmoid()


class PatchEmbed(nn.Sequential):
    """Overlapping patch embedding: four 3x3 stride-2 Conv+Norm units, activation between them.

    (B, in_chans, H, W) -> (B, dim, ceil(H/16), ceil(W/16)); channels dim/8, dim/4, dim/2, dim.
    Follows arXiv:2305.07027 §4.
    """

    def __init__(self, in_chans: int, dim: int, norm: str = "bn", act: str = "relu") -> None:
        super().__init__()
        chans = [in_chans, dim // 8, dim // 4, dim // 2, dim]
        for i in range(4):
            self.add_module(f"conv{i + 1}", ConvNorm(chans[i], chans[i + 1], 3, 2, norm=norm))
            if i < 3:
                self.add_module(f"act{i + 1}", make_act(act))


class PatchMerging(nn.Module):
    """Inverted-residual downsample with squeeze-excite: (B, C, H, W) -> (B, C_out, ceil(H/2), ceil(W/2)).

    1x1 Conv+Norm (C -> 4C), act, 3x3 depthwise stride-2 Conv+Norm, act, SE, 1x1 Conv+Norm (4C -> C_out).
    Follows arXiv:2305.07027 §4 (EfficientViT subsample block).
    """

    def __init__(self, dim: int, out_dim: int, norm: str = "bn", act: str = "relu") -> None:
        super().__init__()
        hidden = 4 * dim
        self.conv1 = ConvNorm(dim, hidden, norm=norm)
        self.act = make_act(act)
        self.conv2 = ConvNorm(hidden, hidden, 3, 2, groups=hidden, norm=norm)
        self.se = SqueezeExcite(hidden)
        self.conv3 = ConvNorm(hidden, out_dim, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))
