"""The envelope of a space: per stage, the largest size each elastic dimension reaches, and the
corner points (every knob at its largest, one per layout x norm x token mixer x classifier kind)
whose modules together name every weight any point of the space has.

The supernet (:mod:`explore.supernet.elastic`) allocates one tensor per weight name at these sizes;
a subnet takes slices of them (:mod:`explore.supernet.slicing`).

Follows: Once-for-All (Cai et al., ICLR 2020, §3.2: elastic depth, width, kernel; the largest
network holds every subnet) and AutoFormer (Chen et al., ICCV 2021, §3.1: weight entanglement of
the heads, QK and MLP dims by prefix).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Mapping

from explore.arch.config import (
    PATCH16_LAYOUTS,
    ArchConfig,
    StageConfig,
    downsample_resolution,
    stem_resolution,
)
from explore.errors import ExploreError
from explore.space.knobs import Knob
from explore.space.search_space import SearchSpace

__all__ = ["StageEnvelope", "Envelope", "envelope_of", "subnet_group"]

_STAGE_DEFAULTS = {f.name: f.default for f in StageConfig.__dataclass_fields__.values()}  # type: ignore[attr-defined]
_MODEL_DEFAULTS = {f.name: f.default for f in ArchConfig.__dataclass_fields__.values()}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class StageEnvelope:
    """The largest sizes of one stage over every point of the space.

    Attributes:
        width: channels C.
        heads: attention heads H (CGA, MHSA; LiteMLA heads of the 1x1 branch).
        qk_dim: Q/K channels per head (LiteMLA: the head dim of Q, K and V).
        v_dim: V channels per head (cga/mhsa).
        split: CGA's input channels per head, C/H.
        table_side: side of the attention-bias table (tokens).
        scales: every multi-scale aggregation kernel of any msla point, ascending.
        mixers: the token mixers the stage may take.
    """

    width: int
    heads: int
    qk_dim: int
    v_dim: int
    split: int
    table_side: int
    scales: tuple[int, ...]
    mixers: tuple[str, ...]


@dataclass(frozen=True)
class Envelope:
    """A space's envelope: the stages' largest sizes and the corner configs.

    Attributes:
        stages: one :class:`StageEnvelope` per stage.
        corners: valid configs with every knob at its largest, covering each layout, norm, stage
            mixer and classifier kind of the space (their weights name every weight of the space).
        groups: the sub-supernets, ``"<layout>-<norm>"`` (a space with two layouts or norms has
            one sub-supernet each; weights are shared inside a group only).
    """

    stages: tuple[StageEnvelope, ...]
    corners: tuple[ArchConfig, ...]
    groups: tuple[str, ...]


def subnet_group(config: ArchConfig) -> str:
    """The sub-supernet a config belongs to: ``"<layout>-<norm>"`` (e.g. ``"sandwich-bn"``)."""
    return f"{config.layout}-{config.norm}"


def _values(knob: Knob | None, default: Any) -> tuple[Any, ...]:
    """Every value of a knob (its range's ends where it is continuous), or ``(default,)``."""
    if knob is None:
        return (default,)
    values = knob.values()
    return values if values is not None else (knob.low, knob.high)


def _sides(layout: str, img_size: int, stages: int) -> list[int]:
    if layout in PATCH16_LAYOUTS:
        sides = [stem_resolution(img_size)]
    else:
        sides = [downsample_resolution(downsample_resolution(img_size))]
    while len(sides) < stages:
        sides.append(downsample_resolution(sides[-1]))
    return sides


def envelope_of(space: SearchSpace, *, in_chans: int, num_classes: int) -> Envelope:
    """The envelope of ``space`` for a dataset of ``in_chans`` channels and ``num_classes`` classes.

    Raises:
        ExploreError: field ``--space``: a knob the supernet cannot make elastic (a continuous
            width, depth or heads range, a stem depth choice).
    """
    model = space.model
    layouts = _values(model.get("layout"), "sandwich")
    norms = _values(model.get("norm"), _MODEL_DEFAULTS["norm"])
    imgs = _values(model.get("img_size"), _MODEL_DEFAULTS["img_size"])
    for name in ("width", "depth", "heads", "qk_dim", "window_size", "kernel"):
        for i, knobs in enumerate(space.stages):
            if name in knobs and knobs[name].values() is None:
                raise ExploreError("--space", f"stage{i}.{name}", "a supernet needs a knob with a finite list of values")
    stage_envs = []
    for i, knobs in enumerate(space.stages):
        widths = _values(knobs.get("width"), None)
        qks = _values(knobs.get("qk_dim"), _STAGE_DEFAULTS["qk_dim"])
        if "heads" in knobs:
            heads = _values(knobs["heads"], None)
        else:
            heads = tuple(sorted({max(1, w // q) for w in widths for q in qks}))
        vrs = _values(knobs.get("v_ratio"), _STAGE_DEFAULTS["v_ratio"])
        windows = _values(knobs.get("window_size"), _STAGE_DEFAULTS["window_size"])
        scale_sets = _values(knobs.get("scales"), _STAGE_DEFAULTS["scales"])
        mixers = _values(knobs.get("token_mixer"), "cga")
        cga_pairs = [(w, h) for w in widths for h in heads if w % h == 0] or [(max(widths), 1)]
        v_dim = max(int(vr * w / h + 1e-9) for w in widths for h in heads for vr in vrs)
        table = max(min(win or side, side) for layout in layouts for img in imgs
                    for side in [_sides(layout, int(img), space.num_stages)[i]] for win in windows)
        stage_envs.append(StageEnvelope(
            width=max(widths), heads=max(heads), qk_dim=max(qks), v_dim=max(1, v_dim),
            split=max(w // h for w, h in cga_pairs), table_side=table,
            scales=tuple(sorted({k for s in scale_sets for k in s})) or (5,), mixers=tuple(mixers)))
    corners = []
    head_kinds = _values(model.get("head_widths"), ())
    heads_variants = sorted({() if not h else "mlp" for h in head_kinds}, key=str)
    mlp = tuple(max(h[j] for h in head_kinds if h) for j in range(2)) if "mlp" in heads_variants else ()
    rounds = max(len(e.mixers) for e in stage_envs)
    for layout, norm, t, head, many in itertools.product(layouts, norms, range(rounds), heads_variants, (False, True)):
        corner = _corner(space, stage_envs, layout, norm, t, mlp if head == "mlp" else (), int(max(imgs)),
                         in_chans, num_classes, many_heads=many)
        if corner not in corners:
            corners.append(corner)
    groups = tuple(dict.fromkeys(subnet_group(c) for c in corners))
    return Envelope(stages=tuple(stage_envs), corners=tuple(corners), groups=groups)


def _largest(knobs: Mapping[str, Knob], name: str, default: Any) -> Any:
    return max(_values(knobs.get(name), default))


def _corner(space: SearchSpace, envs: list[StageEnvelope], layout: str, norm: str, t: int, head_widths: tuple,
            img_size: int, in_chans: int, num_classes: int, many_heads: bool) -> ArchConfig:
    """The config with every knob at its largest; stage i takes its t-th mixer (cyclically).
    ``many_heads``: a CGA stage takes the most heads, at the largest width they divide (else the
    most heads that divide the largest width)."""
    model = space.model
    stages = []
    for knobs, env in zip(space.stages, envs):
        mixer = env.mixers[t % len(env.mixers)]
        width = env.width
        heads_all = _values(knobs.get("heads"), None) if "heads" in knobs else (env.heads,)
        if mixer == "cga" and many_heads:
            widths = _values(knobs.get("width"), None)
            heads, width = max(((h, w) for h in heads_all for w in widths if w % h == 0), default=(1, width))
        elif mixer == "cga":
            heads = max((h for h in heads_all if width % h == 0), default=1)
        elif mixer == "none":
            heads = 1
        else:
            heads = max(heads_all)
        kernel = _largest(knobs, "kernel", _STAGE_DEFAULTS["kernels"][0])
        windows = _values(knobs.get("window_size"), _STAGE_DEFAULTS["window_size"])
        stage: dict[str, Any] = {
            "width": width, "depth": _largest(knobs, "depth", 1), "heads": heads, "token_mixer": mixer,
            "qk_dim": env.qk_dim, "v_ratio": _largest(knobs, "v_ratio", _STAGE_DEFAULTS["v_ratio"]),
            "ffn_ratio": _largest(knobs, "ffn_ratio", _STAGE_DEFAULTS["ffn_ratio"]),
            "window_size": 0 if 0 in windows else max(windows),
            "sandwich_n": _largest(knobs, "sandwich_n", _STAGE_DEFAULTS["sandwich_n"]),
            "expand_ratio": _largest(knobs, "expand_ratio", _STAGE_DEFAULTS["expand_ratio"]),
            "kernels": (int(kernel),) * max(heads, len(_STAGE_DEFAULTS["kernels"])),
            "scales": env.scales,
        }
        stages.append(stage)
    fields: dict[str, Any] = {"stages": stages, "img_size": img_size, "in_chans": in_chans, "num_classes": num_classes,
                              "norm": norm, "layout": layout, "head_widths": head_widths,
                              "activation": _values(model.get("activation"), _MODEL_DEFAULTS["activation"])[0]}
    if layout not in PATCH16_LAYOUTS:
        fields["stem_width"] = _largest(model, "stem_width", 16)
        fields["stem_depth"] = _largest(model, "stem_depth", 0)
    return ArchConfig.from_dict(fields)
