"""Every attention kind in both macro layouts: any resolution, gradients, autocast, and LiteMLA's
linear form against the quadratic definition."""

from __future__ import annotations

import pytest
import torch

from explore.arch import ArchConfig, StageConfig
from explore.nn import build
from explore.nn import LiteMLA

KINDS = ["cga", "mhsa", "linear", "msla"]


def _config(layout: str, kind: str, img_size: int) -> ArchConfig:
    stage = dict(heads=2, qk_dim=8, kernels=(3, 5), window_size=4, scales=(3,), token_mixer=kind)
    stages = (
        StageConfig(width=16, depth=1, **stage),
        StageConfig(width=32, depth=1, **stage),
        StageConfig(width=48, depth=1, **stage),
    )
    extra = dict(stem_width=8, stem_depth=1) if layout == "mbconv" else {}
    return ArchConfig(stages=stages, img_size=img_size, in_chans=3, num_classes=7, layout=layout, **extra)


@pytest.mark.parametrize("layout", ["sandwich", "mbconv", "transformer"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("side", [40, 57, 96, 130])  # 57 and 130: not multiples of the window or of 32
def test_every_kind_any_resolution_forward_backward(layout, kind, side):
    model = build(_config(layout, kind, side))
    out = model(torch.randn(2, 3, side, side))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    out.square().mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    mixer_grads = [g for n, g in grads.items() if (".mixer." in n or ".context." in n)]
    assert mixer_grads and any(g.abs().sum() > 0 for g in mixer_grads)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("kind", KINDS)
def test_outputs_finite_under_autocast(kind, dtype):
    model = build(_config("mbconv", kind, 64)).eval()
    x = torch.randn(2, 3, 64, 64) * 30  # large activations: the fp16 failure mode of naive ports
    with torch.no_grad(), torch.autocast("cpu", dtype=dtype):
        out = model(x)
    assert torch.isfinite(out).all()


def test_litemla_linear_form_equals_quadratic_definition():
    torch.manual_seed(0)
    mla = LiteMLA(16, 16, heads=2, head_dim=8, scales=()).eval()
    x = torch.randn(1, 16, 5, 7)
    qkv = mla.qkv(x).reshape(1, 2, 24, 35).transpose(-1, -2)  # (B, h, N, 3d)
    q, k, v = qkv.double().chunk(3, dim=-1)
    weights = torch.relu(q) @ torch.relu(k).transpose(-1, -2)  # (B, h, N, N)
    expected = (weights @ v) / (weights.sum(-1, keepdim=True) + mla.eps)
    expected = mla.proj(expected.float().transpose(-1, -2).reshape(1, 16, 5, 7))
    with torch.no_grad():
        torch.testing.assert_close(mla(x), expected, atol=1e-5, rtol=1e-4)


def test_linear_attention_finite_when_relu_kills_every_key():
    mla = LiteMLA(8, 8, heads=1, head_dim=8, scales=(3,)).eval()
    with torch.no_grad():
        mla.qkv.conv.weight.fill_(-1.0)  # all q, k, v negative -> relu gives zeros
        out = mla(torch.rand(1, 8, 6, 6))
    assert torch.isfinite(out).all()


def test_msla_scales_add_heads_and_params():
    plain = LiteMLA(32, 32, heads=4, head_dim=8, scales=())
    multi = LiteMLA(32, 32, heads=4, head_dim=8, scales=(3, 5))
    assert multi.proj.conv.in_channels == 3 * plain.proj.conv.in_channels
    assert sum(p.numel() for p in multi.parameters()) > sum(p.numel() for p in plain.parameters())


def test_inference_bias_cache_follows_parameter_changes():
    model = build(_config("sandwich", "cga", 64)).eval()
    with torch.no_grad():  # non-zero residual branches, so the biases matter
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("norm.weight") else 0.0))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        state = model.state_dict()
        for key in state:
            if key.endswith("attention_biases"):
                state[key] = torch.randn_like(state[key])
        model.load_state_dict(state)
        after = model(x)
    assert not torch.allclose(before, after)
    model.train()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), after)
    # with autograd on, biases are gathered afresh so gradients reach them
    model(x).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.endswith("attention_biases"))


def test_transformer_layout_blocks():
    model = build(_config("transformer", "mhsa", 64))
    block = model.stages[1].blocks[0]
    assert type(block).__name__ == "TransformerBlock"
    assert [name for name, _ in block.named_children()] == ["mixer", "ffn"]
    assert type(model.stages[1].downsample).__name__ == "PatchMergingDownsample"


@pytest.mark.parametrize("v_channels", [None, [[0, 2, 5], [1, 3], [0, 1, 2, 3, 4, 5, 6], [2]]])
def test_cga_in_channels_last_copies_no_more_than_in_nchw(v_channels):
    """Each head's output keeps the input's layout: in channels_last (the GPU protocols' layout) the
    module makes no more aten::copy_ per pass than in NCHW (one extra per head before, issue 27
    item 12), and gives the same output; also with reallocated (pruned) V channels."""
    from torch.profiler import ProfilerActivity, profile

    from explore.nn.attention import CascadedGroupAttention

    torch.manual_seed(0)
    m = CascadedGroupAttention(32, 4, 4, 8, [3, 3, 3, 3], 4, v_channels=v_channels).eval()
    x = torch.randn(2, 32, 4, 4)
    copies, outs = {}, {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        m = m.to(memory_format=fmt)
        xx = x.contiguous(memory_format=fmt)
        with torch.inference_mode():
            m(xx)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                outs[fmt] = m(xx)
        copies[fmt] = sum(e.count for e in prof.key_averages() if e.key == "aten::copy_")
    assert copies[torch.channels_last] <= copies[torch.contiguous_format], copies
    assert outs[torch.channels_last].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(outs[torch.channels_last], outs[torch.contiguous_format], rtol=1e-5, atol=1e-6)
