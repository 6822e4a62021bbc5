"""Architectures as data: typed, validated configs, the papers' presets and figures, and the one
resolver of "preset, config file or RUN:TRIAL".

Follows: EfficientViT-M, arXiv:2305.07027 §3-4 (Table 1); EfficientViT-B, arXiv:2205.14756.
"""

from explore.arch.config import (
    ACTIVATIONS,
    LAYOUTS,
    LINEAR_MIXERS,
    NORMS,
    PATCH16_LAYOUTS,
    TOKEN_MIXERS,
    WINDOWED_MIXERS,
    ArchConfig,
    StageConfig,
    downsample_resolution,
    stage_field_used,
    stem_resolution,
)
from explore.arch.paper import (
    CGA_MODELS,
    CGA_MODELS_SOURCE,
    MIT_MODELS,
    MIT_MODELS_SOURCE,
    PAPER_SPEED_COLUMNS,
    PROTOCOL_PAPER_FIELD,
    TIMM_PARAM_COUNTS,
    TIMM_PARAM_COUNTS_SOURCE,
    paper_macs,
    paper_throughput,
)
from explore.arch.presets import PRESETS, convert_timm_state_dict, get_preset, preset_names
from explore.arch.resolve import ModelSpec, resolve_arch

__all__ = [
    "ACTIVATIONS", "LAYOUTS", "LINEAR_MIXERS", "NORMS", "PATCH16_LAYOUTS", "TOKEN_MIXERS", "WINDOWED_MIXERS",
    "ArchConfig", "StageConfig", "downsample_resolution", "stage_field_used", "stem_resolution",
    "CGA_MODELS", "CGA_MODELS_SOURCE", "MIT_MODELS", "MIT_MODELS_SOURCE", "PAPER_SPEED_COLUMNS",
    "PROTOCOL_PAPER_FIELD", "TIMM_PARAM_COUNTS", "TIMM_PARAM_COUNTS_SOURCE", "paper_macs", "paper_throughput",
    "PRESETS", "convert_timm_state_dict", "get_preset", "preset_names",
    "ModelSpec", "resolve_arch",
]
