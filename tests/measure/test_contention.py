"""Latency on a shared machine (issue 14.4): preempted repeats left out, a busy machine waited out and
flagged, every complete trial measured again at the end, training threads from the free cores."""

from __future__ import annotations

import types

import pytest
import torch

import explore.measure.protocols as protocols
import explore.search.objective as objective_module
from explore.measure import CLEAN_RATIO, clean_repeats, get_protocol
from explore.search import REMEASURE_ROUNDS, open_study, remeasured_latencies, run_study, trials_frame
from study_helpers import one_thread, tiny_settings  # noqa: F401 - one_thread is a fixture


class _FakeClock:
    """perf_counter / thread_time driven by a scripted run: each run advances wall by w and CPU by c."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self.sleeps: list[float] = []

    def perf_counter(self) -> float:
        return self.wall

    def thread_time(self) -> float:
        return self.cpu

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


class _FakeReference:
    def __init__(self, probes: list[float]) -> None:
        self.probes = list(probes)

    def probe_ms(self, runs: int = 5) -> float:
        return self.probes.pop(0) if self.probes else 1.0

    def baseline_ms(self) -> float:
        return 1.0


def _scripted(monkeypatch, runs: list[tuple[float, float]], probes: list[float]):
    clock = _FakeClock()
    monkeypatch.setattr(protocols, "time", types.SimpleNamespace(perf_counter=clock.perf_counter,
                                                                 thread_time=clock.thread_time, sleep=clock.sleep))
    monkeypatch.setattr(protocols, "reference_workload", lambda: _FakeReference(probes))
    script = iter(runs)

    def run() -> None:
        wall_ms, cpu_ms = next(script)
        clock.wall += wall_ms / 1e3
        clock.cpu += cpu_ms / 1e3

    return clock, run


def test_preempted_repeats_are_left_out(monkeypatch, one_thread):
    # warm-up 1, then 6 repeats: two were preempted (CPU time well below wall time)
    runs = [(10, 10)] + [(10, 10), (25, 10), (10, 9.8), (30, 11), (10.2, 10), (9.9, 9.9)]
    clock, run = _scripted(monkeypatch, runs, probes=[1.0, 1.05])
    times, contention = protocols.time_cpu(run, get_protocol("cpu-latency", repeats=6, warmup=1))
    assert times == pytest.approx([10, 10, 10.2, 9.9])
    assert contention.clean_share == pytest.approx(4 / 6) and not contention.contended
    assert contention.attempts == 1 and clock.sleeps == []


def test_a_busy_machine_is_waited_out_then_flagged(monkeypatch, one_thread):
    monkeypatch.delenv(protocols.CONTENTION_PAUSE_ENV, raising=False)  # the default: 1 s, then 3 s
    busy = [(20, 10)] * 4  # every repeat preempted
    quiet = [(10, 10)] * 4
    # warm-up 1; attempt 1 busy; attempt 2: reference slow (bandwidth contention) though runs clean; attempt 3 quiet
    runs = [(10, 10)] + busy + quiet + quiet
    clock, run = _scripted(monkeypatch, runs, probes=[1.0, 1.0, 1.6, 1.5, 1.0, 1.0])  # attempt 2: both slow
    times, contention = protocols.time_cpu(run, get_protocol("cpu-latency", repeats=4, warmup=1))
    assert times == pytest.approx([10.0] * 4) and not contention.contended and contention.attempts == 3
    assert len(clock.sleeps) == 2  # paused twice before measuring again

    runs = [(10, 10)] + busy * 3
    clock, run = _scripted(monkeypatch, runs, probes=[1.0] * 6)
    times, contention = protocols.time_cpu(run, get_protocol("cpu-latency", repeats=4, warmup=1))
    assert contention.contended and contention.attempts == protocols.CONTENTION_ATTEMPTS
    assert times == pytest.approx([10.0] * 12)  # no clean repeat at all: the thread's CPU time per repeat


def test_the_pauses_between_attempts_come_from_the_environment(monkeypatch, one_thread):
    busy = [(20, 10)] * 4
    monkeypatch.delenv(protocols.CONTENTION_PAUSE_ENV, raising=False)
    assert protocols.contention_pauses() == (1.0, 3.0)  # the default: 1 s, then 3 s
    # each pause is one more attempt; "none": measured once, flagged
    for text, pauses in [("none", []), ("0", [0.0]), ("0.5, 2", [0.5, 2.0]), ("4,1,9", [4.0, 1.0, 9.0])]:
        monkeypatch.setenv(protocols.CONTENTION_PAUSE_ENV, text)
        clock, run = _scripted(monkeypatch, [(10, 10)] + busy * (len(pauses) + 1), probes=[1.0] * 8)
        _, contention = protocols.time_cpu(run, get_protocol("cpu-latency", repeats=4, warmup=1))
        assert clock.sleeps == pauses, text
        assert contention.contended and contention.attempts == len(pauses) + 1, text


@pytest.mark.parametrize("text", ["soon", "1,-2", "nan", "1,,3", "inf"])
def test_a_bad_pause_setting_is_one_error_line_before_any_command_runs(tmp_path, monkeypatch, text):
    from typer.testing import CliRunner

    from explore.cli import app

    monkeypatch.setenv(protocols.CONTENTION_PAUSE_ENV, text)
    result = CliRunner().invoke(app, ["study", "--space", "cga", "--out", str(tmp_path / "runs"), "--trials", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: EXPLORE_CONTENTION_PAUSE_S = {text!r}: comma-separated seconds >= 0 (e.g. 1,3), or none"]
    assert not (tmp_path / "runs").exists()


def test_clean_repeats_rule():
    assert clean_repeats([10, 20, 10], [10, 10, 9.5]) == [10, 10]
    assert clean_repeats([10, 20], None) == [10, 20]  # several threads: cannot tell
    assert CLEAN_RATIO > 1


def test_measurement_records_contention(one_thread):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    result = protocols.measure(model, get_protocol("cpu-latency", img_size=32, batch_size=2, repeats=6, warmup=1))
    attrs = result.as_attrs()
    assert attrs["latency_contention_ratio"] > 0 and 0 < attrs["latency_clean_share"] <= 1
    assert attrs["latency_attempts"] >= 1 and attrs["latency_contended"] in (True, False)


def test_training_threads_depend_on_the_machine_not_its_load(monkeypatch):
    import psutil

    monkeypatch.setattr(objective_module.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    idle, loaded = [5.0, 10.0, 0.0, 5.0], [95.0, 10.0, 80.0, 5.0]
    readings: list[list[float]] = []
    monkeypatch.setattr(psutil, "cpu_percent", lambda interval, percpu: readings.pop(0))
    # the default: the same count idle and loaded, the load never sampled
    readings[:] = [idle, loaded]
    assert objective_module.training_threads(1) == objective_module.training_threads(1) == 4
    assert objective_module.training_threads(4) == 1 and len(readings) == 2
    # --train-threads-from-load: the cores free right now
    readings[:] = [idle, loaded, loaded, [99.0] * 4]
    assert objective_module.training_threads(1, from_load=True) == 4
    assert objective_module.training_threads(1, from_load=True) == 2  # two of four cores taken by others
    assert objective_module.training_threads(4, from_load=True) == 1
    assert objective_module.training_threads(1, from_load=True) == 1  # never below one
    assert not readings


def test_every_complete_trial_is_measured_again_at_the_end(tmp_path, monkeypatch, one_thread):
    settings = tiny_settings(tmp_path, trials=3)
    first = run_study(settings)
    frame = trials_frame(open_study(str(settings.run_dir)))
    front = set(frame.loc[frame["pareto"], "number"])
    assert set(first.remeasured) >= front  # every member of the final front was re-measured
    done = frame[frame["state"] == "COMPLETE"]
    assert set(first.remeasured) == set(done["number"])  # every complete trial, not only the front
    rounds = remeasured_latencies(open_study(str(settings.run_dir)))
    for number in first.remeasured:  # interleaved rounds; the fastest is kept
        assert len(rounds[number]["rounds_ms_per_img"]) == REMEASURE_ROUNDS
        assert rounds[number]["ms_per_img"] == min(rounds[number]["rounds_ms_per_img"])
    again = done[done["number"].isin(first.remeasured)]
    assert again["latency_remeasured_ms"].notna().all()
    assert (again["latency_ms"] == again[["latency_first_ms", "latency_remeasured_ms"]].min(axis=1)).all()
    # the front is the non-dominated set of (top1, final latency)
    for _, row in done.iterrows():
        dominated = ((done["top1"] >= row["top1"]) & (done["latency_ms"] <= row["latency_ms"])
                     & ((done["top1"] > row["top1"]) | (done["latency_ms"] < row["latency_ms"]))).any()
        assert row["pareto"] == (not dominated)
    # resuming a finished study measures nothing again; switched off, nothing is measured
    assert run_study(settings).remeasured == ()
    other = tiny_settings(tmp_path, trials=2, study_name="off", remeasure_front=False)
    assert run_study(other).remeasured == ()
    assert "latency_remeasured_ms" not in trials_frame(open_study(str(other.run_dir)))
