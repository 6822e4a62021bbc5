"""Typed, validated architecture configs: every knob of the generator in one place.

An :class:`ArchConfig` is one point of a search space. It is frozen, hashable, (de)serialisable to
plain dicts/JSON, and validated on construction: an infeasible architecture raises
:class:`~explore.errors.ConfigError` (naming the field and value) before anything is built.

Follows: EfficientViT-M, arXiv:2305.07027 §3 (sandwich layout, cascaded group attention, parameter
reallocation: QK dim, V ratio, FFN ratio) and §4 (model family M0-M5, Table 1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from explore.errors import ConfigError

__all__ = [
    "TOKEN_MIXERS",
    "WINDOWED_MIXERS",
    "LINEAR_MIXERS",
    "LAYOUTS",
    "PATCH16_LAYOUTS",
    "NORMS",
    "ACTIVATIONS",
    "StageConfig",
    "ArchConfig",
    "stem_resolution",
    "stage_field_used",
    "downsample_resolution",
]

TOKEN_MIXERS = ("cga", "mhsa", "linear", "msla", "none")
"""Token mixers: cascaded group attention (arXiv:2305.07027 §3.2), multi-head softmax attention,
ReLU linear attention, multi-scale ReLU linear attention (LiteMLA, arXiv:2205.14756 §3), or none
(a convolution-only stage)."""
WINDOWED_MIXERS = ("cga", "mhsa")
"""Mixers that run inside local windows (``window_size``; 0 = one global window)."""
LINEAR_MIXERS = ("linear", "msla")
"""Mixers with global ReLU linear attention, linear in the number of tokens."""
LAYOUTS = ("sandwich", "mbconv", "transformer")
"""Macro layouts: EfficientViT-M (patch-16 stem, sandwich blocks, patch merging), EfficientViT-B
(conv stem, MBConv downsamples, attention + MBConv blocks), or the plain transformer block of
Swin/DeiT (token mixer then FFN) inside the M family's stem and stages (the "Swin block" row of
arXiv:2305.07027 Table 6)."""
PATCH16_LAYOUTS = ("sandwich", "transformer")
"""Layouts with the patch-16 stem and patch-merging downsamples."""
NORMS = ("bn", "ln")
"""Normalisation: BatchNorm (fusable into convs, the paper's choice) or LayerNorm over channels."""
ACTIVATIONS = ("relu", "hardswish")

STEM_STRIDE = 16
"""The overlapping patch embedding downsamples by 16 with four stride-2 3x3 convs."""


# where a stage field matters: (layouts, token mixers); None = all
_STAGE_FIELD_USE: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...] | None]] = {
    "heads": (None, ("cga", "mhsa", "linear", "msla")),
    "qk_dim": (None, ("cga", "mhsa", "linear", "msla")),
    "v_ratio": (None, WINDOWED_MIXERS),
    "window_size": (None, WINDOWED_MIXERS),
    "kernels": (None, ("cga",)),
    "scales": (None, ("msla",)),
    "ffn_ratio": (PATCH16_LAYOUTS, None),
    "sandwich_n": (("sandwich",), None),
    "expand_ratio": (("mbconv",), None),
    "cascade": (None, ("cga",)),
    "dw_conv": (("sandwich",), None),
    "linear_window": (None, LINEAR_MIXERS),
}

_SEG_HEAD_FIELDS = ("seg_head_width", "seg_head_depth", "seg_head_expand", "seg_head_inputs", "seg_head_final_expand")
"""Model fields of the segmentation head; left out of config_hash() for classifiers."""

# stage fields added after the first release: left out of config_hash() at their defaults, so the
# hashes (latency caches, stored studies) of configs that do not use them stay the same
_HASH_OPTIONAL_DEFAULTS: dict[str, Any] = {"cascade": True, "dw_conv": True, "linear_window": 0}


def stage_field_used(field_name: str, layout: str, token_mixer: str) -> bool:
    """Whether a :class:`StageConfig` field affects the model in this layout with this mixer
    (e.g. ``kernels`` only for cga, ``expand_ratio`` only in the mbconv layout)."""
    layouts, mixers = _STAGE_FIELD_USE.get(field_name, (None, None))
    return (layouts is None or layout in layouts) and (mixers is None or token_mixer in mixers)


def stem_resolution(img_size: int) -> int:
    """Side of the feature map after the patch embedding (four 3x3 stride-2 convs, padding 1)."""
    side = img_size
    for _ in range(4):
        side = downsample_resolution(side)
    return side


def downsample_resolution(side: int) -> int:
    """Side after one 3x3 stride-2 conv with padding 1: ``ceil(side / 2)``."""
    return (side - 1) // 2 + 1


MAX_RATIO = 64.0
"""Upper bound of v_ratio, ffn_ratio and expand_ratio (far beyond any useful design)."""
MAX_KERNEL = 31
"""Upper bound of depthwise kernel sizes (Q kernels, multi-scale aggregation kernels)."""
MAX_CHANNELS = 65536
"""Upper bound of widths, head counts and per-head dims."""


def _check_int(field_name: str, value: Any, low: int, high: int = MAX_CHANNELS) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, value, "expected an integer")
    if not low <= value <= high:
        raise ConfigError(field_name, value, f"expected an integer from {low} to {high}")


def _check_positive_float(field_name: str, value: Any, high: float = MAX_RATIO) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field_name, value, "expected a number")
    if not math.isfinite(value) or value <= 0 or value > high:
        raise ConfigError(field_name, value, f"expected a finite number > 0 and <= {high:g}")


def _check_choice(field_name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(field_name, value, f"expected one of {', '.join(choices)}")


@dataclass(frozen=True)
class StageConfig:
    """One stage: a downsample (except stage 0 of the sandwich layout), then ``depth`` blocks.

    Attributes:
        width: channels C of the stage's feature map (B, C, H, W).
        depth: blocks after the downsample (>= 0): sandwich blocks (sandwich layout) or
            attention + MBConv blocks / MBConv blocks (mbconv layout).
        heads: attention heads H; for CGA each head sees a C/H channel split (so C % H == 0).
        qk_dim: query/key channels per head (CGA paper: 16); for linear/msla the per-head dim of
            Q, K and V alike (MIT paper: 16 for B0/B1, 32 for B2/B3).
        v_ratio: cga/mhsa value channels per head as a fraction of C/H; V dim = int(v_ratio * C / H)
            (the CGA paper's 1.0, §3.3 parameter reallocation). Unused by linear/msla.
        ffn_ratio: sandwich-layout FFN hidden channels = int(ffn_ratio * C) (CGA paper: 2).
        kernels: CGA's depthwise kernel on Q for each head of the cascade; needs >= ``heads`` odd
            entries, the first ``heads`` are used (the paper's (7, 5, 3, 3) / (5, 5, 5, 5)).
        window_size: side of the local attention window of cga/mhsa in tokens (CGA paper: 7);
            0 attends over the whole feature map. Linear attention is always global.
        sandwich_n: FFNs on each side of the token mixer (N in CGA §3.1; the paper's 1).
        token_mixer: ``cga``, ``mhsa``, ``linear`` (ReLU linear attention), ``msla`` (multi-scale
            ReLU linear attention) or ``none``.
        expand_ratio: mbconv-layout MBConv hidden channels = round(expand_ratio * C) (MIT: 4).
        scales: msla's multi-scale aggregation kernels (MIT: (5,)); each adds a depthwise k x k +
            grouped 1x1 branch of Q/K/V tokens. Unused by the other mixers.
        cascade: CGA only: head j adds head j-1's output to its input split (Eq. 2); False gives
            plain group attention, each head on its own split (the "no cascade" row of
            arXiv:2305.07027 Table 6).
        dw_conv: sandwich layout only: the depthwise 3x3 token-interaction conv before each FFN
            group (§3.1); False drops both (Table 6 "no DWConv").
        linear_window: linear/msla only: side in tokens of the local windows the ReLU linear
            attention runs in; 0 (the MIT paper's) attends globally. A non-zero window turns the
            global receptive field off for the MIT ablation (arXiv:2205.14756 Table 1).
    """

    width: int
    depth: int
    heads: int
    qk_dim: int = 16
    v_ratio: float = 1.0
    ffn_ratio: float = 2.0
    kernels: tuple[int, ...] = (5, 5, 5, 5)
    window_size: int = 7
    sandwich_n: int = 1
    token_mixer: str = "cga"
    expand_ratio: float = 4.0
    scales: tuple[int, ...] = (5,)
    cascade: bool = True
    dw_conv: bool = True
    linear_window: int = 0

    def __post_init__(self) -> None:
        for name in ("kernels", "scales"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        self.validate("stage")

    def validate(self, prefix: str) -> None:
        """Check every field; ``prefix`` names the stage in errors (e.g. ``"stages[1]"``).

        Raises:
            ConfigError: a field has the wrong type or range, or the stage is infeasible
                (e.g. width not divisible by heads for CGA, fewer kernels than heads).
        """
        _check_int(f"{prefix}.width", self.width, 1)
        _check_int(f"{prefix}.depth", self.depth, 0)
        _check_int(f"{prefix}.heads", self.heads, 1)
        _check_int(f"{prefix}.qk_dim", self.qk_dim, 1)
        _check_positive_float(f"{prefix}.v_ratio", self.v_ratio)
        _check_positive_float(f"{prefix}.ffn_ratio", self.ffn_ratio)
        _check_int(f"{prefix}.window_size", self.window_size, 0)
        _check_int(f"{prefix}.sandwich_n", self.sandwich_n, 1)
        _check_choice(f"{prefix}.token_mixer", self.token_mixer, TOKEN_MIXERS)
        _check_positive_float(f"{prefix}.expand_ratio", self.expand_ratio)
        for name in ("cascade", "dw_conv"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{prefix}.{name}", getattr(self, name), "expected true or false")
        _check_int(f"{prefix}.linear_window", self.linear_window, 0)
        if not isinstance(self.scales, tuple):
            raise ConfigError(f"{prefix}.scales", self.scales, "expected a list of odd kernel sizes")
        for i, k in enumerate(self.scales):
            _check_int(f"{prefix}.scales[{i}]", k, 1, MAX_KERNEL)
            if k % 2 == 0:
                raise ConfigError(f"{prefix}.scales[{i}]", k, "expected an odd kernel size (same padding)")
        if self.token_mixer == "msla" and not self.scales:
            raise ConfigError(f"{prefix}.scales", [], "msla needs at least one scale (use token_mixer linear for none)")
        if self.mbconv_hidden < 1:
            raise ConfigError(f"{prefix}.expand_ratio", self.expand_ratio,
                              f"MBConv hidden round(expand_ratio * {self.width}) must be >= 1")
        if not isinstance(self.kernels, tuple) or not self.kernels:
            raise ConfigError(f"{prefix}.kernels", self.kernels, "expected a non-empty list of odd kernel sizes")
        for i, k in enumerate(self.kernels):
            _check_int(f"{prefix}.kernels[{i}]", k, 1, MAX_KERNEL)
            if k % 2 == 0:
                raise ConfigError(f"{prefix}.kernels[{i}]", k, "expected an odd kernel size (same padding)")
        if self.token_mixer == "cga":
            if self.width % self.heads:
                raise ConfigError(
                    f"{prefix}.heads", self.heads,
                    f"CGA splits the channels between heads: width {self.width} is not divisible by heads",
                )
            if len(self.kernels) < self.heads:
                raise ConfigError(
                    f"{prefix}.kernels", list(self.kernels),
                    f"CGA needs one Q kernel per head: {self.heads} heads, {len(self.kernels)} kernels",
                )
        if self.v_dim < 1:
            raise ConfigError(f"{prefix}.v_ratio", self.v_ratio,
                              f"V dim per head int(v_ratio * {self.width} / {self.heads}) must be >= 1")
        if self.ffn_hidden < 1:
            raise ConfigError(f"{prefix}.ffn_ratio", self.ffn_ratio,
                              f"FFN hidden int(ffn_ratio * {self.width}) must be >= 1")

    @property
    def v_dim(self) -> int:
        """Value channels per head: ``int(v_ratio * width / heads)`` (M presets: C/H)."""
        return int(self.v_ratio * self.width / self.heads + 1e-9)

    @property
    def mbconv_hidden(self) -> int:
        """MBConv hidden channels: ``round(expand_ratio * width)``."""
        return round(self.expand_ratio * self.width)

    @property
    def ffn_hidden(self) -> int:
        """FFN hidden channels: ``int(ffn_ratio * width)``."""
        return int(self.ffn_ratio * self.width + 1e-9)


@dataclass(frozen=True)
class ArchConfig:
    """A whole architecture: stem, stages and classifier, plus model-wide choices.

    Attributes:
        stages: the stages, first to last. Sandwich layout: stage 0 follows the 1/16 patch
            embedding, every later stage starts with a stride-2 patch merging. Mbconv layout: the
            stem downsamples 2x, every stage starts with a stride-2 MBConv.
        img_size: input side in pixels (square inputs (B, in_chans, img_size, img_size)); any size
            >= 1 works, attention biases are sized for the windows this resolution produces.
        in_chans: input channels (3 for RGB, 1 for Fashion-MNIST).
        num_classes: classifier outputs.
        norm: ``"bn"`` or ``"ln"`` in every Conv+Norm unit and the classifier.
        activation: ``"relu"`` or ``"hardswish"`` everywhere (stem, FFN/MBConv, patch merging,
            attention output); the squeeze-excite gate keeps ReLU + sigmoid, linear attention's
            kernel is ReLU.
        layout: ``"sandwich"`` (EfficientViT-M, arXiv:2305.07027 Fig. 2), ``"mbconv"``
            (EfficientViT-B, arXiv:2205.14756 Fig. 4) or ``"transformer"`` (mixer then FFN per
            block, Swin/DeiT style, in the sandwich layout's stem and stages).
        stem_width, stem_depth: mbconv layout only: the 3x3 stride-2 stem conv's channels and the
            number of depthwise-separable residual blocks after it (B0: 8 and 1).
        head_widths: () for a norm + linear classifier (CGA paper); (C1, C2) for the MIT head:
            1x1 Conv+Norm+act to C1, pool, linear to C2, LayerNorm, act, linear (B0: (1024, 1280)).
        seg_head_width: 0 for a classifier; > 0 for a segmentation model with the MIT head of this
            width instead (arXiv:2205.14756 §4, the reference ``SegHead``): the last
            ``seg_head_inputs`` stages' maps, each 1x1 Conv+Norm to this width and upsampled to the
            stride of the earliest of them, summed; ``seg_head_depth`` MBConv residuals (expand
            ``seg_head_expand``); 1x1 Conv+Norm+act to ``seg_head_final_expand`` x width (0: none);
            1x1 conv to ``num_classes`` per-pixel logits (B, num_classes, H/stride, W/stride).
        seg_head_depth, seg_head_expand, seg_head_inputs, seg_head_final_expand: see
            ``seg_head_width`` (MIT B1 on Cityscapes: width 64, depth 3, expand 4, inputs 3, final 4).
        name: optional label (a preset name); not part of :meth:`config_hash`.

    Raises:
        ConfigError: on any malformed or infeasible field, naming the field and value.
    """

    stages: tuple[StageConfig, ...]
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    norm: str = "bn"
    activation: str = "relu"
    layout: str = "sandwich"
    stem_width: int | None = None
    stem_depth: int = 0
    head_widths: tuple[int, ...] = ()
    seg_head_width: int = 0
    seg_head_depth: int = 3
    seg_head_expand: float = 4.0
    seg_head_inputs: int = 3
    seg_head_final_expand: float = 4.0
    name: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in ("stages", "head_widths"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if not isinstance(self.stages, tuple) or not self.stages:
            raise ConfigError("stages", self.stages, "expected a non-empty list of stages")
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, StageConfig):
                raise ConfigError(f"stages[{i}]", stage, "expected a StageConfig")
            stage.validate(f"stages[{i}]")
        _check_int("img_size", self.img_size, 1)
        _check_int("in_chans", self.in_chans, 1)
        _check_int("num_classes", self.num_classes, 1)
        _check_choice("norm", self.norm, NORMS)
        _check_choice("activation", self.activation, ACTIVATIONS)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_int("stem_depth", self.stem_depth, 0)
        if not isinstance(self.head_widths, tuple) or len(self.head_widths) not in (0, 2):
            raise ConfigError("head_widths", self.head_widths, "expected [] or two widths [C1, C2]")
        for i, w in enumerate(self.head_widths):
            _check_int(f"head_widths[{i}]", w, 1)
        _check_int("seg_head_width", self.seg_head_width, 0)
        if self.seg_head_width:
            _check_int("seg_head_depth", self.seg_head_depth, 0, 64)
            _check_positive_float("seg_head_expand", self.seg_head_expand)
            _check_int("seg_head_inputs", self.seg_head_inputs, 1, len(self.stages))
            if not (isinstance(self.seg_head_final_expand, (int, float)) and not isinstance(self.seg_head_final_expand, bool)
                    and 0 <= self.seg_head_final_expand <= MAX_RATIO):
                raise ConfigError("seg_head_final_expand", self.seg_head_final_expand, f"expected 0 (none) to {MAX_RATIO}")
        if self.layout in PATCH16_LAYOUTS:
            if self.stages[0].width < 8:
                raise ConfigError("stages[0].width", self.stages[0].width,
                                  "the patch embedding starts at width/8 channels: expected >= 8")
        else:
            if self.stem_width is None:
                raise ConfigError("stem_width", None, "the mbconv layout needs a stem width")
            _check_int("stem_width", self.stem_width, 1)

    # ----------------------------------------------------------------------------------------------
    # derived quantities
    def feature_sizes(self) -> list[int]:
        """Side of each stage's feature map for an ``img_size`` input (sandwich: 1/16, then /2
        per stage; mbconv: stem /2, then /2 per stage)."""
        if self.layout in PATCH16_LAYOUTS:
            sides = [stem_resolution(self.img_size)]
            for _ in self.stages[1:]:
                sides.append(downsample_resolution(sides[-1]))
            return sides
        sides, side = [], downsample_resolution(self.img_size)
        for _ in self.stages:
            side = downsample_resolution(side)
            sides.append(side)
        return sides

    def replace(self, **changes: Any) -> "ArchConfig":
        """A copy with model-level fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def replace_stages(self, **changes: Any) -> "ArchConfig":
        """A copy with the same stage-level fields changed in every stage (validated again)."""
        return dataclasses.replace(self, stages=tuple(dataclasses.replace(s, **changes) for s in self.stages))

    # ----------------------------------------------------------------------------------------------
    # (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists); ``from_dict(to_dict())`` round-trips."""
        out = dataclasses.asdict(self)
        for stage in out["stages"]:
            stage["kernels"] = list(stage["kernels"])
            stage["scales"] = list(stage["scales"])
        out["head_widths"] = list(out["head_widths"])
        if out["name"] is None:
            del out["name"]
        return out

    def to_json(self, **kwargs: Any) -> str:
        """JSON text of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), **kwargs)

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the architecture (name excluded)."""
        body = self.to_dict()
        body.pop("name", None)
        if not body["seg_head_width"]:  # a classifier: the head fields do not matter (and older hashes stay)
            for key in _SEG_HEAD_FIELDS:
                body.pop(key)
        for stage in body["stages"]:
            for key, default in _HASH_OPTIONAL_DEFAULTS.items():
                if stage.get(key) == default:
                    del stage[key]
        return hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> "ArchConfig":
        """Build from a plain mapping (as read from JSON/TOML).

        Args:
            data: keys of :class:`ArchConfig`; ``stages`` is a list of mappings with the keys of
                :class:`StageConfig`.
            source: what to call the input in errors (e.g. a file name).

        Raises:
            ConfigError: unknown keys, missing keys, or invalid values (named with their path).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(source, data, "expected a mapping of architecture fields")
        top_fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - top_fields)
        if unknown:
            raise ConfigError(unknown[0], data[unknown[0]], f"unknown field; expected one of {', '.join(sorted(top_fields))}")
        if "stages" not in data:
            raise ConfigError("stages", None, "missing: expected a list of stages")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, (list, tuple)) or not raw_stages:
            raise ConfigError("stages", raw_stages, "expected a non-empty list of stages")
        stage_fields = {f.name for f in dataclasses.fields(StageConfig)}
        required = {f.name for f in dataclasses.fields(StageConfig) if f.default is dataclasses.MISSING}
        stages = []
        for i, raw in enumerate(raw_stages):
            if not isinstance(raw, Mapping):
                raise ConfigError(f"stages[{i}]", raw, "expected a mapping of stage fields")
            bad = sorted(set(raw) - stage_fields)
            if bad:
                raise ConfigError(f"stages[{i}].{bad[0]}", raw[bad[0]],
                                  f"unknown field; expected one of {', '.join(sorted(stage_fields))}")
            missing = sorted(required - set(raw))
            if missing:
                raise ConfigError(f"stages[{i}].{missing[0]}", None, "missing required field")
            kwargs = dict(raw)
            try:
                stage = StageConfig(**kwargs)
            except ConfigError as exc:  # re-name the stage by its position
                raise ConfigError(exc.field.replace("stage", f"stages[{i}]", 1), exc.value, exc.expected) from None
            stages.append(stage)
        kwargs = {k: v for k, v in data.items() if k != "stages"}
        return cls(stages=tuple(stages), **kwargs)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> "ArchConfig":
        """Parse JSON text (see :meth:`from_dict`).

        Raises:
            ConfigError: the text is not JSON, or the config is invalid.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(source, text[:60], f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls, path: str | Path, field_name: str = "config file") -> "ArchConfig":
        """Read a config file: TOML (``.toml``) or JSON (anything else), with :class:`ArchConfig` fields.

        Raises:
            ConfigError: unreadable or malformed file (named by ``field_name``), or an invalid config.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(field_name, str(path), f"cannot read: {exc}") from None
        if path.suffix == ".toml":
            try:
                return cls.from_dict(tomllib.loads(text), source=str(path))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(field_name, str(path), f"malformed TOML: {exc}") from None
        return cls.from_json(text, source=str(path))

    def summary(self) -> str:
        """One line: widths, depths, heads and mixer per stage (for tables)."""
        w = "-".join(str(s.width) for s in self.stages)
        d = "-".join(str(s.depth) for s in self.stages)
        h = "-".join(str(s.heads) for s in self.stages)
        mixers = "-".join(s.token_mixer for s in self.stages)
        seg = f" seg{self.seg_head_width}x{self.seg_head_depth}" if self.seg_head_width else ""
        return f"{self.layout} C={w} L={d} H={h} {mixers}{seg} @{self.img_size}"

    # ----------------------------------------------------------------------------------------------
    # segmentation
    @property
    def is_segmentation(self) -> bool:
        """True when the model ends in the segmentation head (``seg_head_width`` > 0)."""
        return self.seg_head_width > 0

    def stage_strides(self) -> list[int]:
        """Stride of each stage's map w.r.t. the input (sandwich: 16, 32, ...; mbconv: 4, 8, ...)."""
        first = STEM_STRIDE if self.layout in PATCH16_LAYOUTS else 4
        return [first * 2**i for i in range(len(self.stages))]

    @property
    def seg_stride(self) -> int:
        """Stride of the segmentation head's logits (that of the earliest fused stage)."""
        return self.stage_strides()[len(self.stages) - self.seg_head_inputs]
