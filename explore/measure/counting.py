"""Counting: parameters and MACs (fvcore). Latency is measured by :mod:`explore.measure.protocols`.

* params: trainable and non-trainable parameters (buffers not counted), as a plain count.
* MACs: fvcore's ``FlopCountAnalysis`` (which counts one multiply-accumulate per "flop") on a
  batch-1 input, with normalisation layers not counted, as in the papers' tables
  (arXiv:2305.07027 Table 1 reports MACs with BN folded away). Convolutions, linear layers and
  the attention matmuls are counted (fused ``scaled_dot_product_attention`` through a handle of
  ours); elementwise ops (activations, residual adds, softmax) are not.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

__all__ = ["count_params", "count_macs", "count_model"]

_NORM_OPS = ("aten::batch_norm", "aten::layer_norm", "aten::group_norm", "aten::instance_norm")


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements of ``model.parameters()``)."""
    return sum(p.numel() for p in model.parameters())


def _not_counted(inputs, outputs) -> int:  # fvcore handle signature
    return 0


def _sdpa_macs(inputs, outputs) -> int:
    """fvcore handle for ``aten::scaled_dot_product_attention``: Q K^T and A V products,
    B*h*N*M*d + B*h*N*M*d_v MACs for q (B, h, N, d), k (B, h, M, d), v (B, h, M, d_v)."""
    from fvcore.nn.jit_handles import get_shape

    q, v = get_shape(inputs[0]), get_shape(inputs[2])
    batch = 1
    for dim in q[:-2]:
        batch *= dim
    n, d = q[-2], q[-1]
    m, dv = v[-2], v[-1]
    return batch * n * m * (d + dv)


def count_macs(model: nn.Module, img_size: int, in_chans: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one (1, in_chans, img_size, img_size) image.

    The model is traced on CPU in eval mode (its train/eval state is restored afterwards).
    Normalisation ops are not counted.

    Returns:
        MACs as a plain integer count.
    """
    with warnings.catch_warnings():  # fvcore's import touches the deprecated torch.jit.script
        warnings.simplefilter("ignore", FutureWarning)
        from fvcore.nn import FlopCountAnalysis  # heavy import, only where used

    was_training = model.training
    device = next(model.parameters()).device
    model.eval()
    try:
        x = torch.zeros(1, in_chans, img_size, img_size, device=device)
        analysis = FlopCountAnalysis(model, x)
        for op in _NORM_OPS:
            analysis.set_op_handle(op, _not_counted)
        analysis.set_op_handle("aten::scaled_dot_product_attention", _sdpa_macs)
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        return int(analysis.total())
    finally:
        model.train(was_training)


def count_model(model: nn.Module, img_size: int, in_chans: int) -> tuple[int, int]:
    """(params, MACs of one (1, in_chans, img_size, img_size) image) of any model."""
    return count_params(model), count_macs(model, img_size, in_chans)
