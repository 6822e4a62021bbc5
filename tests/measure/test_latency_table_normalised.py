"""Latency tables with normalised figures (issue 30.2): every entry paired with one reference at the
models' input, the table keeps the reference's calibration, and a later run on a machine that is
slower as a whole measures the same figures; shown with fake clocks."""

from __future__ import annotations

import types

import pytest

import explore.measure.protocols as protocols
from explore.measure import get_protocol
from explore.measure.latency_table import LatencyTable, model_units, table_differences, unit_protocol
from explore.measure.latency_table_jobs import build_table, evaluate_table, table_reference
from explore.measure.runners import Runner
from explore.nn import build
from tests.study_helpers import write_space

PROTOCOL = get_protocol("cpu-latency", repeats=4, warmup=1)


class _Machine:
    """A fake CPU: a model's pass takes its parameter count / 1000 ms x ``slow``, the reference's 20 ms
    x ``slow``; wall = CPU time (nothing preempted)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slow = 1.0
        self.references: list[tuple] = []

    def perf_counter(self) -> float:
        return self.now

    def runner(self, model, protocol, device, x) -> Runner:
        cost = 0.05 + sum(p.numel() for p in model.parameters()) / 1000.0

        def run() -> None:
            self.now += cost * self.slow / 1e3
        return Runner(run, ())

    def reference(self, protocol):
        self.references.append((protocol.img_size, protocol.in_chans, protocol.mode))

        def run() -> None:
            self.now += 20.0 * self.slow / 1e3
        return run


class _QuietProbe:
    def probe_ms(self, runs: int = 10) -> float:
        return 1.0

    def baseline_ms(self) -> float:
        return 1.0


@pytest.fixture
def machine(monkeypatch, tmp_path):
    monkeypatch.setenv("EXPLORE_CALIBRATION_FILE", str(tmp_path / "calibration.json"))  # not the machine's
    monkeypatch.delenv(protocols.CONTENTION_PAUSE_ENV, raising=False)  # the default retries (the suite sets none)
    fake = _Machine()
    monkeypatch.setattr(protocols, "time", types.SimpleNamespace(perf_counter=fake.perf_counter,
                                                                 thread_time=fake.perf_counter, sleep=lambda s: None))
    monkeypatch.setattr(protocols, "reference_workload", lambda: _QuietProbe())
    monkeypatch.setattr(protocols, "prepare_runner", fake.runner)
    monkeypatch.setattr(protocols, "_reference_run", fake.reference)
    monkeypatch.setattr(protocols, "_CALIBRATIONS", {})
    return fake


def test_units_pair_with_the_reference_at_the_models_input(tiny):
    protocol = table_reference(PROTOCOL, tiny.img_size, tiny.in_chans)
    assert (protocol.reference_img_size, protocol.reference_in_chans) == (tiny.img_size, tiny.in_chans)
    for unit in model_units(build(tiny)):
        timed = unit_protocol(unit, protocol)
        assert (timed.img_size, timed.in_chans) == (unit.side, unit.in_chans)
        assert (timed.reference_img_size, timed.reference_in_chans) == (tiny.img_size, tiny.in_chans)
    raw = get_protocol("cpu-latency", figure="raw")
    assert table_reference(raw, 64, 1) == raw  # raw figures: nothing paired


def test_a_later_run_on_a_slower_machine_measures_what_the_table_holds(tmp_path, machine, monkeypatch):
    space = write_space(tmp_path)
    path = tmp_path / "table.json"
    build_table(str(space), PROTOCOL, path, archs=4, calibration=3, in_chans=3, num_classes=10, rounds=1)
    table = LatencyTable.load(path)
    assert table.protocol["figure"] == "normalised" and table.reference["median_ms"] == pytest.approx(20.0)
    side = _configs(table)[0].img_size
    assert {ref[:2] for ref in machine.references} == {(side, 3)}  # one reference for units and models alike
    for entry in list(table.units.values()) + table.models:
        assert entry["rounds"][0]["figure"] == "normalised"
    # a later run (a fresh process: no calibration held, none stored for the machine) on a machine 1.5x slower
    monkeypatch.setattr(protocols, "_CALIBRATIONS", {})
    protocols.calibration_file().unlink()
    machine.slow = 1.5
    result = evaluate_table(path, 3, rounds=1)
    assert result.meta["figure"] == "normalised"
    assert result.meta["reference_calibration_ms"] == pytest.approx(20.0)
    # the noise floor re-measured with the normalised figures: the calibration models read as in the table
    assert result.stats["drift"]["mape"] == pytest.approx(0.0, abs=1e-6)
    assert result.stats["drift"]["mean_signed"] == pytest.approx(0.0, abs=1e-6)
    # the raw figures moved by the slowdown, the normalised ones (which rank) did not
    config = _configs(table)[0]
    again = protocols.measure(build(config), protocols.Protocol(**{**table.protocol, "img_size": config.img_size}))
    assert again.latency_ms_per_img == pytest.approx(table.models[0]["latency_ms_per_img"])
    assert again.raw_ms_per_img == pytest.approx(1.5 * again.latency_ms_per_img)
    assert again.contended  # the reference ran 1.5x its calibration: flagged


def _configs(table: LatencyTable):
    from explore.arch import ArchConfig

    return [ArchConfig.from_json(m["config"]) for m in table.models]


def test_a_table_of_raw_figures_is_named_as_such(tmp_path):
    old = LatencyTable(protocol={k: v for k, v in get_protocol("cpu-latency").key().items() if k != "figure"},
                       device_name="x", versions={}, space={}, sampling={}, in_chans=1, num_classes=10)
    differences = table_differences(old, get_protocol("cpu-latency"), None)
    assert any("figure 'raw' in the table, 'normalised' here" in d for d in differences)
    assert not any("figure" in d for d in table_differences(old, get_protocol("cpu-latency", figure="raw"), None))
