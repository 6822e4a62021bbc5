"""Generator knobs the ablation rows need: no cascade (CGA), no DW conv (sandwich), windowed
linear attention (MIT "no global attention"); they change what they claim and nothing else."""

from __future__ import annotations

import pytest
import torch

from explore.arch import ArchConfig, StageConfig
from explore.errors import ConfigError
from explore.measure import count_params
from explore.nn import build
from explore.nn import CascadedGroupAttention, LiteMLA, LocalWindowAttention
from explore.arch import get_preset
from tests.conftest import tiny_config


def _v_change_per_channel(cascade: bool) -> torch.Tensor:
    """How much each V channel (4 heads x 8, before the output projection) moves when only head
    0's input split changes."""
    torch.manual_seed(0)
    attn = CascadedGroupAttention(32, 4, 8, 8, (3, 3, 3, 3), table_side=4, cascade=cascade).eval()
    x = torch.randn(2, 32, 4, 4)
    seen = []
    hook = attn.proj[1].register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0].detach().clone()))
    attn(x)
    x2 = x.clone()
    x2[:, :8] += 1.0
    attn(x2)
    hook.remove()
    return (seen[1] - seen[0]).abs().amax(dim=(0, 2, 3))


def test_no_cascade_heads_see_only_their_split():
    changed = _v_change_per_channel(cascade=False) > 1e-6
    assert changed[:8].any() and not changed[8:].any()


def test_cascade_default_propagates_to_later_heads():
    assert (_v_change_per_channel(cascade=True)[8:] > 1e-6).any()


def test_no_cascade_same_params_as_cascade():
    m4 = get_preset("efficientvit_m4")
    assert count_params(build(m4.replace_stages(cascade=False))) == count_params(build(m4))


def test_no_dw_conv_drops_exactly_the_token_interaction_convs():
    config = tiny_config()
    with_dw, without = build(config), build(config.replace_stages(dw_conv=False))
    dw_params = sum(p.numel() for n, p in with_dw.named_parameters() if ".dw0." in n or ".dw1." in n)
    assert dw_params > 0
    assert count_params(with_dw) - count_params(without) == dw_params
    assert without(torch.randn(2, 1, 64, 64)).shape == (2, 10)


def test_linear_window_wraps_litemla_and_keeps_shapes():
    b0 = get_preset("efficientvit_b0", img_size=128)
    model = build(b0.replace_stages(linear_window=4))
    mixers = [m for m in model.modules() if isinstance(m, LocalWindowAttention)]
    assert mixers and all(isinstance(m.attn, LiteMLA) for m in mixers)
    assert count_params(model) == count_params(build(b0))
    assert model(torch.randn(1, 3, 128, 128)).shape == (1, 1000)
    assert not any(isinstance(m, LocalWindowAttention) for m in build(b0).modules())


def test_windowed_linear_attention_is_local():
    """With 4x4 windows on an 8x8 map, a change in one window leaves the other windows alone."""
    torch.manual_seed(0)
    attn = LocalWindowAttention(LiteMLA(16, 16, 2, 8, scales=()), 4).eval()
    x = torch.randn(1, 16, 8, 8)
    x2 = x.clone()
    x2[:, :, :4, :4] += 1.0
    diff = (attn(x2) - attn(x)).abs().amax(dim=1)[0]  # (8, 8)
    assert diff[:4, :4].max() > 1e-4
    assert diff[4:, :].max() < 1e-6 and diff[:, 4:].max() < 1e-6


def test_new_knobs_keep_config_hashes_of_old_configs():
    m4 = get_preset("efficientvit_m4")
    assert m4.config_hash() == m4.replace_stages(cascade=True, dw_conv=True, linear_window=0).config_hash()
    assert m4.config_hash() != m4.replace_stages(cascade=False).config_hash()
    again = ArchConfig.from_dict(m4.replace_stages(dw_conv=False).to_dict())
    assert again == m4.replace_stages(dw_conv=False)


@pytest.mark.parametrize("field, value", [("cascade", "no"), ("dw_conv", 1), ("linear_window", -1)])
def test_bad_knob_values_are_named(field, value):
    with pytest.raises(ConfigError, match=f"stage.{field}"):
        StageConfig(width=32, depth=1, heads=2, **{field: value})


def test_describe_lists_the_ablation_switches(tmp_path):
    from typer.testing import CliRunner

    from explore.cli import app

    path = tmp_path / "m.json"
    path.write_text(tiny_config().replace_stages(cascade=False, dw_conv=False).to_json())
    result = CliRunner().invoke(app, ["describe", str(path)])
    assert result.exit_code == 0, result.output
    assert "stage 0: CGA without cascade" in result.output and "no DW conv" in result.output
