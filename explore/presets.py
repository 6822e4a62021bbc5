"""The papers' models as points of :class:`~explore.config.ArchConfig`, and checkpoint key mapping.

EfficientViT-M0..M5: arXiv:2305.07027 Table 1 (widths C_i, depths L_i, heads H_i) with QK dim 16,
V dim C_i/H_i (``v_ratio`` 1.0), FFN ratio 2, window 7, sandwich N = 1, BN + ReLU; Q kernels as in
the official code (microsoft/Cream ``EfficientViT/classification/model/build.py``) and timm
``efficientvit_msra``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from explore.config import ArchConfig, StageConfig
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


PRESETS: dict[str, ArchConfig] = {name: _m_preset(name) for name in _M_TABLE}
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


_TIMM_RENAMES = (
    (re.compile(r"\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$"), r".norm.\1"),
    (re.compile(r"\.(ffn[01])\.m\."), r".\1.0.m."),
    (re.compile(r"^patch_embed\.relu(\d)"), r"patch_embed.act\1"),
)


def convert_timm_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of a timm ``efficientvit_m*`` state dict to this generator's names.

    Pure function: ``.bn.`` -> ``.norm.`` (Conv+Norm units and the head) and a block's single
    ``ffn0``/``ffn1`` -> the first of its N sandwich FFNs (``ffn0.0``). Values are not copied.
    """
    out = {}
    for key, value in state_dict.items():
        for pattern, repl in _TIMM_RENAMES:
            key = pattern.sub(repl, key)
        out[key] = value
    return out
