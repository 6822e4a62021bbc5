"""The MIT segmentation head on every layout and token mixer: shapes, stride, MACs, gradients, config."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch

from explore.arch import ArchConfig, StageConfig, resolve_arch
from explore.errors import ConfigError
from explore.measure import count_macs, count_params
from explore.nn import build
from tests.study_helpers import explore_command, subprocess_env


def _config(layout: str, mixer: str, **seg) -> ArchConfig:
    heads = 1 if mixer == "none" else 2
    stages = tuple(StageConfig(width=w, depth=1, token_mixer=mixer, heads=heads, qk_dim=8, window_size=0,
                               kernels=(3,) * heads, scales=(3,) if mixer == "msla" else ())
                   for w in (16, 32, 48))
    extra = {"stem_width": 8, "stem_depth": 1} if layout == "mbconv" else {}
    return ArchConfig(stages=stages, img_size=64, in_chans=1, num_classes=5, layout=layout, seg_head_width=16,
                      seg_head_depth=2, seg_head_inputs=2, **extra, **seg)


@pytest.mark.parametrize("layout", ["sandwich", "mbconv", "transformer"])
@pytest.mark.parametrize("mixer", ["cga", "mhsa", "linear", "msla", "none"])
def test_per_pixel_logits_at_the_head_stride_with_gradients_everywhere(layout, mixer):
    config = _config(layout, mixer)
    model = build(config)
    x = torch.randn(2, 1, 64, 64)
    logits = model(x)
    stride = config.seg_stride
    assert stride == (32 if layout != "mbconv" else 8)  # the earlier of the last two stages (of 16, 32, 64 or 4, 8, 16)
    assert logits.shape == (2, 5, 64 // stride, 64 // stride)
    logits.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def _conv_macs(c_in: int, c_out: int, pixels: int, k: int = 1, groups: int = 1) -> int:
    return pixels * c_out * (c_in // groups) * k * k


def test_head_macs_are_counted_as_its_convolutions():
    config = _config("mbconv", "msla", seg_head_final_expand=2.0)
    backbone = config.replace(seg_head_width=0, num_classes=5)
    seg_macs, cls_macs = count_macs(build(config), 64, 1), count_macs(build(backbone), 64, 1)
    cls_head = _conv_macs(48, 5, 1)  # the classifier's linear layer (norms are not counted)
    w, hidden, final, sides = 16, 64, 32, config.feature_sizes()
    head_pixels = sides[1] ** 2
    expected = (_conv_macs(32, w, sides[1] ** 2) + _conv_macs(48, w, sides[2] ** 2)   # input projections
                + 2 * (_conv_macs(w, hidden, head_pixels) + _conv_macs(hidden, hidden, head_pixels, 3, hidden)
                       + _conv_macs(hidden, w, head_pixels))                         # two MBConv layers
                + _conv_macs(w, final, head_pixels) + _conv_macs(final, 5, head_pixels)  # final and classifier
                + 4 * w * head_pixels)  # fvcore counts 4 per output element of the bilinear upsampling
    assert seg_macs - (cls_macs - cls_head) == expected
    assert count_params(build(config)) != count_params(build(backbone))


def test_segmentation_fields_are_checked_and_classifier_hashes_do_not_change():
    config = resolve_arch("efficientvit_b1").config
    seg = config.replace(seg_head_width=64, num_classes=19)
    assert seg.is_segmentation and not config.is_segmentation and seg.seg_stride == 8
    assert ArchConfig.from_json(seg.to_json()) == seg
    # a classifier's hash leaves the head fields out: changing them changes nothing
    assert config.replace(seg_head_depth=7).config_hash() == config.config_hash()
    assert seg.replace(seg_head_depth=2).config_hash() != seg.config_hash()
    for change, field in [({"seg_head_inputs": 5}, "seg_head_inputs"), ({"seg_head_width": -1}, "seg_head_width"),
                          ({"seg_head_final_expand": -1.0}, "seg_head_final_expand")]:
        with pytest.raises(ConfigError, match=field):
            seg.replace(**change)
    assert "seg64x3" in seg.summary()


def test_describe_counts_a_preset_with_the_head_at_a_resolution():
    result = subprocess.run(explore_command("describe", "efficientvit_b1", "--json", "--img-size", "512",
                                            "--seg-head-width", "64", "--num-classes", "19"),
                            capture_output=True, text=True, timeout=120, env=subprocess_env(), check=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["img_size"] == 512 and data["config"]["seg_head_width"] == 64
    assert 4.7e6 < data["params"] < 4.9e6  # the MIT paper's B1 segmentation model: 4.8 M parameters
    bad = subprocess.run(explore_command("describe", "efficientvit_b1", "--seg-head-width", "-3"),
                         capture_output=True, text=True, timeout=120, env=subprocess_env(), check=False)
    assert bad.returncode == 1 and "--seg-head-width" in bad.stderr
