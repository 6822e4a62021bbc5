"""First-order Taylor importance of every prunable group, summed over batches.

Follows: Molchanov et al., CVPR 2019 (arXiv:1906.10771), first order, as arXiv:2305.07027 §3.3 uses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from explore.analysis.importance.units import (
    HiddenUnit,
    Unit,
    block_costs,
    block_vector,
    unit_blocks,
    unit_location,
)
from explore.errors import ExploreError

__all__ = ["taylor_scores"]


def taylor_scores(model: nn.Module, units: Sequence[Unit], batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> pd.DataFrame:
    """First-order Taylor importance of every prunable group, accumulated over batches.

    For each batch, in eval mode (running norm statistics, no dropout), the cross-entropy loss is
    back-propagated and ``|w * dL/dw|`` is added per parameter element; a group's score is the sum
    over its elements and batches (Molchanov et al. 2019, first order, as in arXiv:2305.07027 §3.3).
    A unit whose scores sum to 0 or are not finite (e.g. zero-initialised output norms of an
    untrained model) is scored by ``|w|`` instead, rescaled so that its mean score per parameter
    equals the median of the Taylor-scored units (1 when none is), marked ``source = "magnitude"``.

    Args:
        model: the model the units were found in; its gradients are cleared afterwards and its
            train/eval mode is restored.
        units: from :func:`find_units`.
        batches: (x (B, C_in, H, W) float32 normalised input, y (B,) int64 labels) on the model's
            device.

    Returns:
        One row per group: ``unit``, ``unit_kind`` (cga, mhsa, ffn, mbconv), ``stage``, ``block``
        (-1 in a downsample), ``location`` (block or downsample), ``config_stage``, ``group``
        (qk, v, head, hidden), ``head`` (-1 for hidden), ``channel`` (-1 for head rows), ``score``
        (summed |w dL/dw|), ``params`` and ``macs`` removed with the group (MACs of one image;
        a head row: the whole head), ``source`` (taylor or magnitude).

    Raises:
        ExploreError: no batch was given.
    """
    params = dict(model.named_parameters())
    grouped = [(u, unit_blocks(u, model.get_submodule(u.path))) for u in units]
    names = sorted({s.param for _, blocks in grouped for b in blocks for s in b.specs})
    acc = {n: torch.zeros_like(params[n], dtype=torch.float64) for n in names}
    was_training = model.training
    model.eval()
    n_batches = 0
    try:
        for x, y in batches:
            model.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            with torch.no_grad():
                for n in names:
                    grad = params[n].grad
                    if grad is not None:
                        acc[n] += (params[n].detach() * grad).abs().to(torch.float64)
            n_batches += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if n_batches == 0:
        raise ExploreError("--score-batches", 0, "expected at least one batch to score on")
    magnitude = {n: params[n].detach().abs() for n in names}

    per_unit = []
    for unit, blocks in grouped:
        taylor = [block_vector(acc, b) for b in blocks]
        total = float(sum(v.sum() for v in taylor))
        ok = math.isfinite(total) and total > 0 and all(bool(torch.isfinite(v).all()) for v in taylor)
        vectors = taylor if ok else [block_vector(magnitude, b) for b in blocks]
        costs = [block_costs(params, b) for b in blocks]
        n_params = sum(c[0] * b.count for c, b in zip(costs, blocks))
        density = float(sum(v.sum() for v in vectors)) / max(1, n_params)
        per_unit.append((unit, blocks, vectors, costs, "taylor" if ok else "magnitude", density))

    taylor_density = [d for *_, src, d in per_unit if src == "taylor"]
    reference = float(pd.Series(taylor_density).median()) if taylor_density else None
    rows: list[dict[str, Any]] = []
    for unit, blocks, vectors, costs, source, density in per_unit:
        scale = 1.0
        if source == "magnitude" and reference is not None and density > 0:
            scale = reference / density
        base = {
            "unit": unit.path, "unit_kind": unit.kind, "stage": unit.stage,
            "block": -1 if unit.block is None else unit.block, "location": unit_location(unit),
            "config_stage": unit.config_stage if isinstance(unit, HiddenUnit) else unit.stage,
        }
        head_totals: dict[int, list[float]] = {}
        for block, vec, (c_params, c_macs) in zip(blocks, vectors, costs):
            vec = vec * scale
            if block.head is not None:
                tot = head_totals.setdefault(block.head, [0.0, 0, 0])
                tot[0] += float(vec.sum())
                tot[1] += c_params * block.count
                tot[2] += c_macs * block.count
            if block.group == "bias":
                continue
            for c in range(block.count):
                rows.append({**base, "group": block.group, "head": -1 if block.head is None else block.head,
                             "channel": c, "score": float(vec[c]), "params": c_params, "macs": c_macs,
                             "source": source})
        for h, (score, n_params, macs) in head_totals.items():
            rows.append({**base, "group": "head", "head": h, "channel": -1, "score": score, "params": int(n_params),
                         "macs": int(macs), "source": source})
    return pd.DataFrame(rows)
