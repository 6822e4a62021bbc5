"""ArchConfig validation, serialisation and hashing."""

from __future__ import annotations

import dataclasses

import pytest

from explore.arch import ArchConfig, StageConfig
from explore.errors import ConfigError
from explore.arch import PRESETS, get_preset
from tests.conftest import tiny_config


def test_round_trip_and_hash_stable(tiny):
    again = ArchConfig.from_json(tiny.to_json())
    assert again == tiny
    assert again.config_hash() == tiny.config_hash()
    assert tiny.replace(name="other").config_hash() == tiny.config_hash()  # name is a label only
    assert tiny.replace(img_size=96).config_hash() != tiny.config_hash()


def test_feature_sizes_follow_stride_two_convs():
    assert get_preset("efficientvit_m0").feature_sizes() == [14, 7, 4]
    assert tiny_config(img_size=28).feature_sizes() == [2, 1, 1]
    assert tiny_config(img_size=97).feature_sizes() == [7, 4, 2]


@pytest.mark.parametrize(
    "change, field, value",
    [
        (dict(heads=3), "stages[0].heads", 3),  # 32 % 3 != 0 for CGA
        (dict(kernels=(5,)), "stages[0].kernels", [5]),  # fewer kernels than heads
        (dict(kernels=(4, 3)), "stages[0].kernels[0]", 4),  # even kernel
        (dict(qk_dim=0), "stages[0].qk_dim", 0),
        (dict(v_ratio=-1.0), "stages[0].v_ratio", -1.0),
        (dict(v_ratio=0.01), "stages[0].v_ratio", 0.01),  # V dim rounds to 0
        (dict(token_mixer="swin"), "stages[0].token_mixer", "swin"),
        (dict(depth=1.5), "stages[0].depth", 1.5),
        (dict(sandwich_n=0), "stages[0].sandwich_n", 0),
    ],
)
def test_infeasible_stage_names_field_and_value(tiny, change, field, value):
    data = tiny.to_dict()
    data["stages"][0].update({k: list(v) if isinstance(v, tuple) else v for k, v in change.items()})
    with pytest.raises(ConfigError) as info:
        ArchConfig.from_dict(data)
    assert info.value.field == field
    assert info.value.value == value
    assert field in str(info.value)


def test_mhsa_does_not_need_divisible_width():
    stage = StageConfig(width=32, depth=1, heads=3, token_mixer="mhsa", kernels=(3,))
    assert stage.v_dim == 10


@pytest.mark.parametrize("field, value", [("norm", "gn"), ("activation", "gelu"), ("img_size", 0), ("in_chans", 0)])
def test_model_level_fields_checked(tiny, field, value):
    with pytest.raises(ConfigError, match=field):
        dataclasses.replace(tiny, **{field: value})


def test_unknown_and_missing_keys_rejected(tiny):
    data = tiny.to_dict()
    data["depthh"] = 3
    with pytest.raises(ConfigError, match="depthh"):
        ArchConfig.from_dict(data)
    data = tiny.to_dict()
    del data["stages"][1]["width"]
    with pytest.raises(ConfigError, match=r"stages\[1\].width"):
        ArchConfig.from_dict(data)
    with pytest.raises(ConfigError, match="not valid JSON"):
        ArchConfig.from_json("{nope")


def test_presets_match_paper_table():
    m4 = PRESETS["efficientvit_m4"]
    assert [s.width for s in m4.stages] == [128, 256, 384]
    assert [s.depth for s in m4.stages] == [1, 2, 3]
    assert all(s.qk_dim == 16 and s.v_dim == s.width // s.heads and s.ffn_hidden == 2 * s.width for s in m4.stages)
    with pytest.raises(ConfigError, match="preset"):
        get_preset("efficientvit_m9")
