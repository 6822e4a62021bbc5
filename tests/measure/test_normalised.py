"""Reference-normalised CPU latency (issue 30.1): the candidate's repeats paired with a reference
model's, the median pair ratio scaled to the reference's calibration; shown with fake clocks."""

from __future__ import annotations

import types

import pytest
import torch

import explore.measure.protocols as protocols
from explore.errors import ExploreError
from explore.measure import (MIN_REFERENCE_REPEATS, SLOWDOWN_LIMIT, ReferenceCalibration, get_protocol, measure,
                             pair_spread, reference_group)
from explore.measure.runners import Runner
from explore.records import is_known


class _Clock:
    """perf_counter / thread_time that only the fake runs advance (wall = CPU: no preemption)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def advance(self, ms: float) -> None:
        self.now += ms / 1e3

    def perf_counter(self) -> float:
        return self.now

    def thread_time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class _QuietProbe:
    def probe_ms(self, runs: int = 10) -> float:
        return 1.0

    def baseline_ms(self) -> float:
        return 1.0


_CALIBRATION = ReferenceCalibration("efficientvit_m0", "{}", "cpu", median_ms=20.0, fastest_ms=19.5,
                                    times_ms=[19.5, 20.0, 20.5], contended=False)


def _rig(monkeypatch, candidate_ms: float, reference_ms: float, slow):
    """measure() with fake runs: the candidate takes ``candidate_ms`` x slow(k), the reference
    ``reference_ms`` x slow(k), k counting every run of either; returns the clock and the call log."""
    clock = _Clock()
    calls: list[str] = []
    monkeypatch.delenv(protocols.CONTENTION_PAUSE_ENV, raising=False)  # the default retries (the suite sets none)
    monkeypatch.setattr(protocols, "time", types.SimpleNamespace(perf_counter=clock.perf_counter,
                                                                 thread_time=clock.thread_time, sleep=clock.sleep))
    monkeypatch.setattr(protocols, "reference_workload", lambda: _QuietProbe())
    monkeypatch.setattr(protocols, "reference_calibration", lambda protocol: _CALIBRATION)

    def run(name: str, ms: float):
        def once() -> None:
            calls.append(name)
            clock.advance(ms * slow(len(calls) - 1, name))
        return once

    monkeypatch.setattr(protocols, "prepare_runner", lambda model, protocol, device, x: Runner(run("A", candidate_ms), ()))
    monkeypatch.setattr(protocols, "_reference_run", lambda protocol: run("R", reference_ms))
    return clock, calls


def _protocol(**overrides):
    return get_protocol("cpu-latency", **{"img_size": 16, "in_chans": 1, "batch_size": 2, "repeats": 8, "warmup": 1,
                                          **overrides})


def test_a_uniform_slowdown_moves_the_raw_figure_not_the_normalised_one(monkeypatch):
    model = torch.nn.Identity()
    _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.0)
    quiet = measure(model, _protocol())
    _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.5)  # every run of both 1.5x slower (e.g. bandwidth taken)
    loaded = measure(model, _protocol())
    assert quiet.figure == loaded.figure == "normalised"
    assert loaded.raw_median_ms == pytest.approx(1.5 * quiet.raw_median_ms)
    assert loaded.raw_ms_per_img == pytest.approx(1.5 * quiet.raw_ms_per_img)
    # median pair ratio 0.5 x the calibration's 20 ms, whatever the load
    assert quiet.median_ms == pytest.approx(loaded.median_ms) == pytest.approx(10.0)
    assert loaded.latency_ms_per_img == loaded.normalised_ms_per_img == pytest.approx(5.0)
    # the slowdown is seen, though: the reference ran 1.5x its calibration
    assert not quiet.contended and quiet.reference_slowdown == pytest.approx(1.0)
    assert loaded.contended and loaded.reference_slowdown == pytest.approx(1.5) and 1.5 > SLOWDOWN_LIMIT
    assert loaded.attempts == 1  # a uniform slowdown is corrected, not waited out


def test_repeats_alternate_with_the_reference_pair_by_pair(monkeypatch):
    _, calls = _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.0)
    measure(torch.nn.Identity(), _protocol(repeats=4))
    # warm-up (the candidate's, then one run of each), then R A, A R, ... (ABBA)
    assert calls == ["A"] + ["A", "R"] + ["R", "A", "A", "R", "R", "A", "A", "R"]


def test_a_slowdown_of_some_pairs_only_is_flagged(monkeypatch):
    # the candidate's run of every third pair is 1.6x slower (a neighbour that comes and goes)
    hit = {}

    def slow(k, name):
        if name != "A":
            return 1.0
        hit[k] = len(hit)
        return 1.6 if hit[k] % 3 == 0 else 1.0

    clock, _ = _rig(monkeypatch, 10.0, 20.0, slow)
    result = measure(torch.nn.Identity(), _protocol(repeats=9))
    assert result.pair_spread > protocols.SPREAD_LIMIT and result.contended
    assert result.reference_slowdown == pytest.approx(1.0)  # the reference alone would not have told
    assert result.attempts == 1 and clock.sleeps == []  # flagged, not measured again
    assert result.median_ms == pytest.approx(10.0)  # the median pair is an unhit one


def test_compile_mode_pairs_with_a_fused_reference():
    compiled = _protocol(mode="compile")
    assert protocols._reference_protocol(compiled, 2).mode == "fused"
    assert protocols._reference_protocol(_protocol(mode="eager"), 2).mode == "eager"


def test_the_record_carries_raw_normalised_calibration_and_pair_ratios(monkeypatch):
    _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.0)
    attrs = measure(torch.nn.Identity(), _protocol()).as_attrs()
    assert attrs["latency_figure"] == "normalised" and attrs["latency_protocol_figure"] == "normalised"
    assert attrs["latency_raw_ms_per_img"] == pytest.approx(5.0)
    assert attrs["latency_normalised_ms_per_img"] == pytest.approx(5.0)
    assert attrs["latency_pair_ratios"] == pytest.approx([0.5] * 8)
    assert attrs["latency_reference_calibration_ms"] == 20.0
    assert attrs["latency_reference_calibration_times_ms"] == [19.5, 20.0, 20.5]
    assert attrs["latency_reference_name"] == "efficientvit_m0"
    assert all(is_known(name) for name in attrs)


def test_the_raw_figure_times_the_candidate_alone(monkeypatch):
    _, calls = _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.5)
    result = measure(torch.nn.Identity(), _protocol(figure="raw"))
    assert "R" not in calls and result.figure == "raw"
    assert result.latency_ms_per_img == result.raw_ms_per_img == pytest.approx(7.5)
    assert result.normalised_ms_per_img is None and result.pair_ratios is None


def test_a_fast_candidate_is_paired_in_groups_bounding_the_reference_cost(monkeypatch):
    _, calls = _rig(monkeypatch, 1.0, 20.0, lambda k, name: 1.0)
    result = measure(torch.nn.Identity(), _protocol(repeats=8))
    timed = calls[3:]
    assert timed.count("A") == 8 and timed.count("R") == MIN_REFERENCE_REPEATS
    assert result.median_ms == pytest.approx(1.0)  # ratio 1/20 x the calibration's 20 ms
    assert reference_group(10.0, 20.0, 20) == 2 and reference_group(30.0, 20.0, 20) == 1
    assert reference_group(0.1, 20.0, 20) == 20 // MIN_REFERENCE_REPEATS


def test_the_figure_setting_per_device():
    assert get_protocol("cpu-latency").figure == "normalised"
    assert get_protocol("onnx-cpu").figure == "normalised"
    assert get_protocol("gpu-throughput").figure == "raw"
    assert get_protocol("cpu-latency", device="cuda").figure == "raw"  # CUDA protocols are unchanged
    with pytest.raises(ExploreError, match="--latency-figure"):
        get_protocol("gpu-latency", figure="normalised")
    with pytest.raises(ExploreError, match="--latency-figure"):
        get_protocol("cpu-latency", figure="median")


def test_pair_spread_and_calibration_round_trip():
    assert pair_spread([1.0, 1.0, 1.0, 1.0]) == 0.0 and pair_spread([1.0]) == 0.0
    assert pair_spread([1.0, 1.0, 1.5, 1.5, 1.0, 1.0]) > protocols.SPREAD_LIMIT
    assert ReferenceCalibration.from_dict(_CALIBRATION.as_dict()) == _CALIBRATION
    with pytest.raises(ExploreError, match="reference calibration"):
        ReferenceCalibration.from_dict({"reference": "efficientvit_m0"})


def test_a_set_calibration_is_used_instead_of_calibrating(monkeypatch):
    protocol = _protocol()
    key = protocols._calibration_key(protocols._reference_protocol(protocol, protocol.batch_size))
    mine = ReferenceCalibration("efficientvit_m0", key, "cpu", 7.0, 6.5, [6.5, 7.0, 7.5], False)
    monkeypatch.setattr(protocols, "_CALIBRATIONS", {})
    monkeypatch.setattr(protocols, "_reference_run", lambda protocol: pytest.fail("calibrated again"))
    protocols.set_reference_calibration(mine)
    assert protocols.reference_calibration(protocol) is mine
    assert protocols.reference_calibrations() == [mine]
    # a unit's protocol names the models' input: its reference is the one at that input
    unit = protocol.__class__(**{**protocol.key(), "img_size": 4, "in_chans": 32, "reference_img_size": 16,
                                 "reference_in_chans": 1})
    assert protocols.reference_calibration(unit) is mine


def test_the_calibration_is_kept_per_machine_across_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORE_CALIBRATION_FILE", str(tmp_path / "calibration.json"))
    monkeypatch.setattr(protocols, "_CALIBRATIONS", {})
    clock, calls = _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.0)
    monkeypatch.setattr(protocols, "reference_calibration", _real_reference_calibration)
    first = measure(torch.nn.Identity(), _protocol())
    assert first.reference_calibration_ms == pytest.approx(20.0) and protocols.calibration_file().is_file()
    # a later run (a new process) on a machine 1.5x slower: the machine's calibration, not a new one
    monkeypatch.setattr(protocols, "_CALIBRATIONS", {})
    _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.5)
    monkeypatch.setattr(protocols, "reference_calibration", _real_reference_calibration)
    later = measure(torch.nn.Identity(), _protocol())
    assert later.reference_calibration_ms == pytest.approx(20.0)
    assert later.latency_ms_per_img == pytest.approx(first.latency_ms_per_img)
    assert later.raw_ms_per_img == pytest.approx(1.5 * first.raw_ms_per_img)


def test_a_contended_stored_calibration_is_replaced_by_a_quiet_one(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORE_CALIBRATION_FILE", str(tmp_path / "calibration.json"))
    monkeypatch.setattr(protocols, "_CALIBRATIONS", {})
    protocol = _protocol()
    key = protocols._calibration_key(protocols._reference_protocol(protocol, protocol.batch_size))
    busy = ReferenceCalibration("efficientvit_m0", key, "cpu", 30.0, 29.0, [29.0, 30.0], True)
    protocols._store_calibration(busy)
    _rig(monkeypatch, 10.0, 20.0, lambda k, name: 1.0)
    quiet = _real_reference_calibration(protocol)
    assert quiet.median_ms == pytest.approx(20.0) and not quiet.contended
    assert protocols._stored_calibrations()[key]["median_ms"] == pytest.approx(20.0)


_real_reference_calibration = protocols.reference_calibration
