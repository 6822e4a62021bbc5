"""The papers' models as points of :class:`~explore.arch.ArchConfig`, and checkpoint key mapping.

EfficientViT-M0..M5: arXiv:2305.07027 Table 1 (widths C_i, depths L_i, heads H_i) with QK dim 16,
V dim C_i/H_i (``v_ratio`` 1.0), FFN ratio 2, window 7, sandwich N = 1, BN + ReLU; Q kernels as in
the official code (microsoft/Cream ``EfficientViT/classification/model/build.py``) and timm
``efficientvit_msra``.

EfficientViT-B0..B3: arXiv:2205.14756 (classification models; widths, depths, head dim and head
widths as in the official code mit-han-lab/efficientvit and timm ``efficientvit_mit``): conv stem
with one DSConv block, two MBConv-only stages, two stages of multi-scale linear attention (scales
(5,)) + MBConv (expand 4), BN + hardswish, MLP head.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from explore.arch.config import ArchConfig, StageConfig
from explore.errors import ConfigError

__all__ = ["PRESETS", "preset_names", "get_preset", "convert_timm_state_dict"]

# name: (widths, depths, heads, Q kernels per head)
_M_TABLE: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]] = {
    "efficientvit_m0": ((64, 128, 192), (1, 2, 3), (4, 4, 4), (5, 5, 5, 5)),
    "efficientvit_m1": ((128, 144, 192), (1, 2, 3), (2, 3, 3), (7, 5, 3, 3)),
    "efficientvit_m2": ((128, 192, 224), (1, 2, 3), (4, 3, 2), (7, 5, 3, 3)),
    "efficientvit_m3": ((128, 240, 320), (1, 2, 3), (4, 3, 4), (5, 5, 5, 5)),
    "efficientvit_m4": ((128, 256, 384), (1, 2, 3), (4, 4, 4), (7, 5, 3, 3)),
    "efficientvit_m5": ((192, 288, 384), (1, 3, 4), (3, 3, 4), (7, 5, 3, 3)),
}


def _m_preset(name: str) -> ArchConfig:
    widths, depths, heads, kernels = _M_TABLE[name]
    stages = tuple(
        StageConfig(width=w, depth=d, heads=h, qk_dim=16, v_ratio=1.0, ffn_ratio=2.0, kernels=kernels,
                    window_size=7, sandwich_n=1, token_mixer="cga")
        for w, d, h in zip(widths, depths, heads)
    )
    return ArchConfig(stages=stages, img_size=224, in_chans=3, num_classes=1000, norm="bn", activation="relu", name=name)


# name: (stem width, stage widths, timm depths (stem first), head dim, head widths)
_B_TABLE: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], int, tuple[int, int]]] = {
    "efficientvit_b0": (8, (16, 32, 64, 128), (1, 2, 2, 2, 2), 16, (1024, 1280)),
    "efficientvit_b1": (16, (32, 64, 128, 256), (1, 2, 3, 3, 4), 16, (1536, 1600)),
    "efficientvit_b2": (24, (48, 96, 192, 384), (1, 3, 4, 4, 6), 32, (2304, 2560)),
    "efficientvit_b3": (32, (64, 128, 256, 512), (1, 4, 6, 6, 9), 32, (2304, 2560)),
}


def _b_preset(name: str) -> ArchConfig:
    stem_width, widths, depths, head_dim, head_widths = _B_TABLE[name]
    stages = []
    for i, width in enumerate(widths):
        if i < 2:  # MBConv-only stages; the reference counts the stride-2 MBConv among the depth
            stages.append(StageConfig(width=width, depth=depths[i + 1] - 1, heads=1, qk_dim=head_dim,
                                      token_mixer="none", expand_ratio=4.0))
        else:  # stride-2 MBConv, then `depth` LiteMLA + MBConv blocks
            stages.append(StageConfig(width=width, depth=depths[i + 1], heads=width // head_dim, qk_dim=head_dim,
                                      token_mixer="msla", scales=(5,), expand_ratio=4.0))
    return ArchConfig(stages=tuple(stages), img_size=224, in_chans=3, num_classes=1000, norm="bn",
                      activation="hardswish", layout="mbconv", stem_width=stem_width, stem_depth=depths[0],
                      head_widths=head_widths, name=name)


PRESETS: dict[str, ArchConfig] = {
    **{name: _m_preset(name) for name in _M_TABLE},
    **{name: _b_preset(name) for name in _B_TABLE},
}
"""Preset name -> config at 224x224, 3 channels, 1000 classes."""


def preset_names() -> list[str]:
    """Names accepted by :func:`get_preset`."""
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> ArchConfig:
    """A preset config, optionally with model-level fields replaced (e.g. ``img_size=64, num_classes=10``).

    Raises:
        ConfigError: unknown preset name or invalid override.
    """
    if name not in PRESETS:
        raise ConfigError("preset", name, f"unknown preset; expected one of {', '.join(PRESETS)}")
    config = PRESETS[name]
    return config.replace(**overrides) if overrides else config


_TIMM_M_RENAMES = (
    (re.compile(r"\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$"), r".norm.\1"),
    (re.compile(r"\.(ffn[01])\.m\."), r".\1.0.m."),
    (re.compile(r"^patch_embed\."), "stem."),
)
_TIMM_B_BLOCK = re.compile(r"^stages\.(\d+)\.blocks\.(\d+)\.(.*)$")


def _rename_timm_b(key: str) -> str:
    """One timm ``efficientvit_b*`` key -> ours (see :func:`convert_timm_state_dict`)."""
    match = _TIMM_B_BLOCK.match(key)
    if match is None:  # stem, head
        return key.replace(".main.", ".m.")
    stage, block, rest = match.group(1), int(match.group(2)), match.group(3)
    if block == 0:  # the stride-2 MBConv, a residual block without shortcut in the reference
        return f"stages.{stage}.downsample.{rest.removeprefix('main.')}"
    rest = rest.replace("context_module.main.", "context.m.").replace("local_module.main.", "local.m.")
    rest = rest.replace("main.", "m.", 1) if rest.startswith("main.") else rest
    return f"stages.{stage}.blocks.{block - 1}.{rest}"


def convert_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of a timm ``efficientvit_m*`` or ``efficientvit_b*`` state dict to this
    generator's names. Pure function; values are not copied.

    M family: ``.bn.`` -> ``.norm.``, ``patch_embed`` -> ``stem``, a block's single ``ffn0``/``ffn1``
    -> the first of its N sandwich FFNs (``ffn0.0``). B family: ``main`` -> ``m`` in residuals, a
    stage's block 0 (the stride-2 MBConv) -> ``downsample``, later blocks renumbered from 0,
    ``context_module``/``local_module`` -> ``context``/``local``.
    """
    family_b = any(key.startswith("stem.in_conv.") for key in state_dict)
    out = {}
    for key, value in state_dict.items():
        if family_b:
            key = _rename_timm_b(key)
        else:
            for pattern, repl in _TIMM_M_RENAMES:
                key = pattern.sub(repl, key)
        out[key] = value
    return out
