"""Building blocks shared by every macro layout: Conv+Norm(+act) units, FFN, MBConv, depthwise-
separable conv, squeeze-excite, patch embedding and merging, residual wrapper, classifier heads.

Follows: EfficientViT-M, arXiv:2305.07027 §3.1 (sandwich layout: depthwise conv and FFN units) and
§4 (overlapping patch embedding, patch merging with squeeze-excite, BN + linear classifier);
EfficientViT-B, arXiv:2205.14756 §3.2 / Fig. 4 (MBConv local module, conv stem, MLP head). Module and
parameter names follow the public reference implementations (timm ``efficientvit_msra`` and
``efficientvit_mit``), so checkpoints map with renames (see :mod:`explore.arch.presets`).
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
    "MBConv",
    "DSConv",
    "MLPHead",
    "SqueezeExcite",
    "PatchEmbed",
    "PatchMerging",
    "dw_conv_unit",
]


# --------------------------------------------------------------------------------------------------
# picking norms and activations by name (an unknown name is an error, never a silent no-op)
def make_act(name: str, inplace: bool = False) -> nn.Module:
    """Activation module for ``"relu"`` or ``"hardswish"``; ``inplace`` where its input is a fresh
    tensor no other op needs (after a norm or conv), which saves an allocation per call.

    Raises:
        ConfigError: unknown name.
    """
    if name == "relu":
        return nn.ReLU(inplace=inplace)
    if name == "hardswish":
        return nn.Hardswish(inplace=inplace)
    raise ConfigError("activation", name, "expected one of relu, hardswish")


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map, at every position."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm2d(name: str, channels: int) -> nn.Module:
    """Norm over (B, C, H, W): ``"bn"`` -> BatchNorm2d, ``"ln"`` -> :class:`LayerNorm2d`,
    ``"none"`` -> Identity.

    Raises:
        ConfigError: unknown name.
    """
    if name == "none":
        return nn.Identity()
    if name == "bn":
        return nn.BatchNorm2d(channels)
    if name == "ln":
        return LayerNorm2d(channels)
    raise ConfigError("norm", name, "expected one of bn, ln")


# --------------------------------------------------------------------------------------------------
# Conv + Norm units
class ConvNorm(nn.Sequential):
    """Conv2d, then a norm, then optionally an activation: (B, C_in, H, W) -> (B, C_out, H', W').

    Args:
        in_chs: channels in.
        out_chs: channels out.
        kernel_size: square kernel, padded to keep the size at stride 1 (``kernel_size // 2``).
        stride: conv stride; H' = ceil(H / stride) for odd kernels.
        groups: conv groups (``in_chs`` for depthwise).
        norm: ``"bn"``, ``"ln"`` or ``"none"``.
        norm_weight_init: initial norm scale; 0 makes a residual branch start as identity.
        bias: conv bias (the MIT code uses it where a conv has no norm).
        act: activation name appended as ``act``, or None.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 1, stride: int = 1, groups: int = 1,
                 norm: str = "bn", norm_weight_init: float = 1.0, bias: bool = False, act: str | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
        self.norm = make_norm2d(norm, out_chs)
        if norm != "none":
            nn.init.constant_(self.norm.weight, norm_weight_init)
            nn.init.zeros_(self.norm.bias)
        if act is not None:
            self.act = make_act(act, inplace=True)


class NormLinear(nn.Sequential):
    """Classifier: (global average pool,) norm (BatchNorm1d or LayerNorm), dropout, linear:
    (B, C) or (B, C, H, W) -> (B, num_classes).

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

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if x.dim() == 4:
            x = x.mean((2, 3))
        return x if pre_logits else self.linear(self.drop(self.norm(x)))


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
        self.act = make_act(act, inplace=True)
        self.pw2 = ConvNorm(hidden, channels, norm=norm, norm_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw2(self.act(self.pw1(x)))


class MBConv(nn.Module):
    """Inverted residual (MobileNetV2-style) block: (B, C_in, H, W) -> (B, C_out, H/s, W/s).

    1x1 conv (C_in -> hidden) + act, k x k depthwise conv (stride s) + act, 1x1 conv (hidden -> C_out).
    ``fewer_norm`` (the MIT code's choice inside attention stages): biases instead of norms on the
    first two convs, a norm only after the last; otherwise a norm after each conv, no biases.
    Follows arXiv:2205.14756 §3.2 (MBConv as the local module, expand ratio 4).
    """

    def __init__(self, in_chs: int, out_chs: int, hidden: int, stride: int = 1, kernel_size: int = 3,
                 norm: str = "bn", act: str = "hardswish", fewer_norm: bool = False) -> None:
        super().__init__()
        inner_norm = "none" if fewer_norm else norm
        self.inverted_conv = ConvNorm(in_chs, hidden, 1, norm=inner_norm, bias=fewer_norm, act=act)
        self.depth_conv = ConvNorm(hidden, hidden, kernel_size, stride, groups=hidden, norm=inner_norm,
                                   bias=fewer_norm, act=act)
        self.point_conv = ConvNorm(hidden, out_chs, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(self.inverted_conv(x)))


class DSConv(nn.Module):
    """Depthwise-separable conv: 3x3 depthwise Conv+Norm+act, 1x1 Conv+Norm: (B, C, H, W) -> (B, C_out, H, W).

    The stem block of arXiv:2205.14756 (EfficientViT-B input stem).
    """

    def __init__(self, in_chs: int, out_chs: int, norm: str = "bn", act: str = "hardswish") -> None:
        super().__init__()
        self.depth_conv = ConvNorm(in_chs, in_chs, 3, groups=in_chs, norm=norm, act=act)
        self.point_conv = ConvNorm(in_chs, out_chs, 1, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.point_conv(self.depth_conv(x))


class MLPHead(nn.Module):
    """The MIT classifier: (B, C, H, W) -> logits (B, num_classes).

    1x1 Conv+Norm+act (C -> C1), global average pool, linear (C1 -> C2, no bias), LayerNorm, act,
    dropout, linear (C2 -> num_classes). Follows arXiv:2205.14756 (classification head, e.g.
    C1, C2 = 1024, 1280 for B0).
    """

    def __init__(self, in_chs: int, widths: tuple[int, int], num_classes: int, norm: str = "bn",
                 act: str = "hardswish", drop: float = 0.0) -> None:
        super().__init__()
        self.in_conv = ConvNorm(in_chs, widths[0], 1, norm=norm, act=act)
        self.classifier = nn.Sequential(
            nn.Linear(widths[0], widths[1], bias=False),
            nn.LayerNorm(widths[1]),
            make_act(act, inplace=True),
            nn.Dropout(drop),
            nn.Linear(widths[1], num_classes),
        )

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.in_conv(x).mean((2, 3))
        if pre_logits:
            return self.classifier[3](self.classifier[2](self.classifier[1](self.classifier[0](x))))
        return self.classifier(x)


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
                self.add_module(f"act{i + 1}", make_act(act, inplace=True))


class PatchMerging(nn.Module):
    """Inverted-residual downsample with squeeze-excite: (B, C, H, W) -> (B, C_out, ceil(H/2), ceil(W/2)).

    1x1 Conv+Norm (C -> 4C), act, 3x3 depthwise stride-2 Conv+Norm, act, SE, 1x1 Conv+Norm (4C -> C_out).
    Follows arXiv:2305.07027 §4 (EfficientViT subsample block).
    """

    def __init__(self, dim: int, out_dim: int, norm: str = "bn", act: str = "relu") -> None:
        super().__init__()
        hidden = 4 * dim
        self.conv1 = ConvNorm(dim, hidden, norm=norm)
        self.act = make_act(act, inplace=True)
        self.conv2 = ConvNorm(hidden, hidden, 3, 2, groups=hidden, norm=norm)
        self.se = SqueezeExcite(hidden)
        self.conv3 = ConvNorm(hidden, out_dim, norm=norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.se(self.act(self.conv2(self.act(self.conv1(x))))))
