"""Generator: presets equal timm's models (params, logits), MACs within 1 % of the paper, any
resolution works, every knob builds, gradients flow."""

from __future__ import annotations

import pytest
import torch

from explore.measure import count_macs, count_params
from explore.nn import build
from explore.arch import TIMM_PARAM_COUNTS, paper_macs
from explore.arch import PRESETS, convert_timm_state_dict, get_preset
from tests.conftest import tiny_config


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_params_equal_timm_and_macs_close_to_paper(name):
    """M presets: MACs within 1 % of the CGA paper; B presets: within 2 % of the MIT paper."""
    model = build(PRESETS[name])
    assert count_params(model) == TIMM_PARAM_COUNTS[name]
    macs = count_macs(model, 224, 3)
    paper = paper_macs(name) * 1e6
    tolerance = 0.01 if "_m" in name else 0.02
    assert abs(macs / paper - 1) < tolerance, (name, macs, paper)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_params_equal_live_timm(name):
    timm = pytest.importorskip("timm", reason="timm is the reference implementation (extra 'test')")
    reference = timm.create_model(name, pretrained=False)
    ours = build(PRESETS[name])
    assert count_params(ours) == sum(p.numel() for p in reference.parameters())
    ours_keys = set(ours.state_dict())
    assert set(convert_timm_state_dict(reference.state_dict())) == ours_keys


def _randomise(state_dict, seed=0):
    g = torch.Generator().manual_seed(seed)
    for key, value in state_dict.items():
        if not value.dtype.is_floating_point:
            continue
        if key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=g) + 0.5)
        else:
            value.copy_(torch.randn(value.shape, generator=g) * 0.2)
    return state_dict


@pytest.mark.parametrize("name, atol", [("efficientvit_m0", 1e-5), ("efficientvit_b0", 1e-4)])
def test_timm_state_dict_gives_same_logits(name, atol):
    timm = pytest.importorskip("timm", reason="timm is the reference implementation (extra 'test')")
    reference = timm.create_model(name, pretrained=False)
    state = _randomise(reference.state_dict())  # random BN scales and stats too: no branch is zero
    reference.load_state_dict(state)
    ours = build(PRESETS[name])
    ours.load_state_dict(convert_timm_state_dict(state), strict=True)
    reference.eval()
    ours.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=atol, rtol=0)


@pytest.mark.parametrize("side", [28, 33, 64, 97, 130])
@pytest.mark.parametrize("mixer", ["cga", "mhsa"])
def test_any_resolution_forward_and_backward(side, mixer):
    config = tiny_config(img_size=side).replace_stages(token_mixer=mixer, window_size=3)
    model = build(config)
    x = torch.randn(2, 1, side, side)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_model_runs_at_other_resolution_than_built():
    model = build(tiny_config(img_size=64)).eval()
    with torch.no_grad():
        for side in (32, 64, 160):
            assert model(torch.randn(1, 1, side, side)).shape == (1, 10)


@pytest.mark.parametrize(
    "changes",
    [
        dict(v_ratio=0.5),
        dict(v_ratio=1.25),
        dict(qk_dim=32),
        dict(ffn_ratio=4.0),
        dict(sandwich_n=3),
        dict(window_size=1),
    ],
)
def test_stage_knobs_build_and_change_the_model(tiny, changes):
    base = count_params(build(tiny))
    model = build(tiny.replace_stages(**changes))
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)
    if "window_size" not in changes:
        assert count_params(model) != base


@pytest.mark.parametrize("norm, act", [("ln", "relu"), ("bn", "hardswish"), ("ln", "hardswish")])
def test_norm_and_activation_choices(norm, act):
    model = build(tiny_config(norm=norm, activation=act))
    kinds = {type(m).__name__ for m in model.modules()}
    assert ("LayerNorm2d" in kinds) == (norm == "ln")
    assert ("Hardswish" in kinds) == (act == "hardswish")
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)


def test_sandwich_layout_and_mixer_kind():
    model = build(tiny_config().replace_stages(sandwich_n=2, token_mixer="mhsa"))
    block = model.stages[1].blocks[0]
    assert len(block.ffn0) == 2 and len(block.ffn1) == 2
    assert type(block.mixer.m.attn).__name__ == "MultiHeadSelfAttention"
    assert model.stages[0].downsample.__class__.__name__ == "Identity"


def test_preset_overrides_for_small_proxies():
    config = get_preset("efficientvit_m0", img_size=64, in_chans=1, num_classes=10)
    model = build(config)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 10)
