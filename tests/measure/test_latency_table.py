"""Latency tables: units of a generated model, keys, the file's validation, the predictor (issue 16)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from explore.arch import get_preset
from explore.errors import ExploreError
from explore.measure import get_protocol
from explore.measure.latency_table import (
    TABLE_FORMAT,
    TABLE_VERSION,
    LatencyTable,
    fit_predictor,
    model_units,
    table_differences,
    unit_features,
    unit_key,
)
from explore.nn import build
from tests.conftest import tiny_config


def _apply(units, x):
    for unit in units:
        x = unit.module(x)
    return x


@pytest.mark.parametrize("config", [tiny_config(), get_preset("efficientvit_b0", img_size=64, num_classes=10)],
                         ids=["sandwich", "mbconv"])
def test_units_compose_the_model_in_order_with_their_input_shapes(config):
    torch.manual_seed(0)
    model = build(config).eval()
    units = model_units(model)
    assert units[0].name == "stem" and units[-1].name == "head"
    assert units[0].in_chans == config.in_chans and units[0].side == config.img_size
    assert sum(name.startswith("stages.") and ".blocks." in name
               for name in (u.name for u in units)) == sum(s.depth for s in config.stages)
    x = torch.randn(2, config.in_chans, config.img_size, config.img_size)
    with torch.no_grad():
        torch.testing.assert_close(_apply(units, x), model(x))
    kinds = {u.kind for u in units}
    mixer = config.stages[-1].token_mixer
    assert any(k.startswith("block:") and k.endswith(f"/{mixer}") for k in kinds)


def test_unit_keys_follow_structure_and_input_not_weights():
    a, b = model_units(build(tiny_config())), model_units(build(tiny_config()))
    assert [unit_key(u) for u in a] == [unit_key(u) for u in b]  # other random weights, same keys
    wider = tiny_config(stages=(dataclasses.replace(tiny_config().stages[0], width=48),) + tiny_config().stages[1:])
    c = model_units(build(wider))
    assert unit_key(a[0]) != unit_key(c[0])  # the stem's output channels differ
    windowed = tiny_config(stages=(dataclasses.replace(tiny_config().stages[0], window_size=2),) + tiny_config().stages[1:])
    d = model_units(build(windowed))
    block = next(i for i, u in enumerate(a) if u.name == "stages.0.blocks.0")
    assert unit_key(a[block]) != unit_key(d[block])  # the window size changes the block
    assert unit_key(a[-1]) == unit_key(d[-1])  # the head does not change


def test_unit_features_count_one_image():
    units = model_units(build(tiny_config()))
    feats = unit_features(units[0])
    assert set(feats) == {"macs", "params", "act_elems", "ops", "tokens"}
    assert feats["macs"] > 0 and feats["params"] > 0 and feats["ops"] >= 2
    assert feats["tokens"] == 64 * 64


def _table(units: dict, models: list, **changes) -> LatencyTable:
    protocol = get_protocol("cpu-latency", repeats=2, warmup=1)
    fields = dict(protocol=protocol.key(), device_name="test cpu", versions={"torch": torch.__version__},
                  space={"name": "t", "file": "t.toml"}, sampling={"archs": 1}, in_chans=1, num_classes=10,
                  units=units, models=models)
    fields.update(changes)
    return LatencyTable(**fields)


def _synthetic(n_units: int = 40, n_models: int = 8) -> LatencyTable:
    """Units whose time is exactly 1e-6 * MACs + 0.01 * ops ms; models the sum of their units + 0.05 ms."""
    units = {}
    for i in range(n_units):
        feats = {"macs": 1e5 * (1 + i), "params": 1e3 * (1 + i % 7), "act_elems": 1e4 * (1 + i % 5),
                 "ops": float(4 + i % 9), "tokens": 16.0}
        units[f"u{i}"] = {"kind": "block:X/cga" if i % 2 else "block:X/mhsa", "in_chans": 8, "side": 4,
                          "features": feats, "median_ms": 1e-6 * feats["macs"] + 0.01 * feats["ops"]}
    models = []
    for m in range(n_models):
        keys = [f"u{(m * 5 + j) % n_units}" for j in range(4)]
        total = sum(units[k]["median_ms"] for k in keys) + 0.05
        models.append({"config": "{}", "units": keys, "median_ms": total, "latency_ms_per_img": total / 16})
    return _table(units, models)


def test_the_file_round_trips_and_bad_files_get_one_error_naming_the_field(tmp_path):
    path = _synthetic().save(tmp_path / "t.json")
    loaded = LatencyTable.load(path)
    assert loaded.units == _synthetic().units and loaded.format == TABLE_FORMAT and loaded.version == TABLE_VERSION
    (tmp_path / "junk.json").write_bytes(b"\x00{not json")
    (tmp_path / "foreign.json").write_text(json.dumps({"hello": 1}))
    raw = json.loads(path.read_text())
    (tmp_path / "v9.json").write_text(json.dumps({**raw, "version": 9}))
    (tmp_path / "nounits.json").write_text(json.dumps({k: v for k, v in raw.items() if k != "units"}))
    broken = dict(raw, models=[{**raw["models"][0], "units": ["nope"]}])
    (tmp_path / "badmodel.json").write_text(json.dumps(broken))
    for name, words in (("missing.json", "no such"), ("junk.json", "not JSON"), ("foreign.json", "something else"),
                        ("v9.json", "version"), ("nounits.json", "'units'"), ("badmodel.json", "calibration model 0")):
        with pytest.raises(ExploreError, match=words) as info:
            LatencyTable.load(tmp_path / name)
        assert info.value.field == "--latency-table"


def test_differences_name_device_protocol_and_torch():
    table = _table({}, [], device_name="other cpu", versions={"torch": "0.0.1"})
    protocol = get_protocol("cpu-latency", repeats=2, warmup=1, batch_size=8)
    found = table_differences(table, protocol, "cpu")
    assert any("device 'other cpu'" in d for d in found)
    assert any("batch_size 16 in the table, 8 here" in d for d in found)
    assert any("torch 0.0.1" in d for d in found)
    same = _table({}, [], device_name=table_differences.__globals__["device_name"]("cpu"))
    assert table_differences(same, get_protocol("cpu-latency", repeats=2, warmup=1), "cpu") == []


def test_linear_predictor_recovers_a_linear_cost_and_the_correction():
    table = _synthetic()
    predictor = fit_predictor(table, "linear")
    # units in the table: their measured medians; the correction absorbs the 0.05 ms per model
    for model in table.models:
        units = [(k, table.units[k]["kind"], table.units[k]["features"]) for k in model["units"]]
        assert predictor.predict_units(units) == pytest.approx(model["median_ms"] / 16, rel=1e-6)
    # a unit the table has not seen: regressed
    feats = {"macs": 3.3e6, "params": 2e3, "act_elems": 3e4, "ops": 6.0, "tokens": 16.0}
    assert predictor.unit_ms(None, "block:X/cga", feats) == pytest.approx(1e-6 * 3.3e6 + 0.06, rel=0.05)


def test_choosing_the_regressor_reports_both_errors_and_unknown_names_fail():
    seen = {}
    predictor = fit_predictor(_synthetic(), on_choice=seen.update)
    assert set(seen) == {"linear", "trees"} and predictor.regressor == min(seen, key=seen.get)
    assert seen["linear"] < 1.0  # the exact linear law is found with each model's units left out
    with pytest.raises(ExploreError, match="--regressor"):
        fit_predictor(_synthetic(), "forest")
    with pytest.raises(ExploreError, match="measured units"):
        fit_predictor(_table({}, []))


def test_unmeasured_entries_of_an_interrupted_build_are_ignored():
    table = _synthetic()
    table.units["late"] = {"kind": "block:X/cga", "in_chans": 8, "side": 4, "features": {}, "median_ms": None}
    table.models.append({"config": "{}", "units": ["late"], "median_ms": None})
    measured = table.measured()
    assert "late" not in measured.units and len(measured.models) == len(table.models) - 1
    fit_predictor(table, "linear")  # does not trip over the unmeasured entries


def test_a_stored_choice_is_used_without_choosing_again(monkeypatch):
    import explore.measure.latency_table as lt

    table = _synthetic()
    stored = lt.choose_regressor(table)
    assert stored["regressor"] in lt.REGRESSORS and set(stored["calibration_mape"]) == set(lt.REGRESSORS)
    table.predictor = {"regressor": "trees", "calibration_mape": {"linear": 2.0, "trees": 1.0}}
    monkeypatch.setattr(lt, "_loo_mape", lambda *a: (_ for _ in ()).throw(AssertionError("chose again")))
    seen = {}
    assert fit_predictor(table, on_choice=seen.update).regressor == "trees"
    assert seen == {"linear": 2.0, "trees": 1.0}
    assert lt.choose_regressor(_synthetic(n_models=3)) == {}  # too few models to choose
