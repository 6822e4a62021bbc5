"""`explore bench` ours vs timm paired repeat by repeat, with a 95 % interval, in a 120-column table
(issue 30.5); with fake timings."""

from __future__ import annotations

import math
import types

import pytest
import torch
from rich.console import Console

import explore.analysis.bench.models as models_module
import explore.measure.protocols as protocols
from explore.analysis.bench.models import bench, paired_ratio, short_name
from explore.cli.bench import bench_table
from explore.errors import ExploreError
from explore.measure import CpuTiming, Contention, Measurement, get_protocol, measure_pair
from explore.measure.runners import Runner
from explore.stats import ratio_interval


def test_ratio_interval_is_a_t_interval_on_log_ratios():
    ratio, low, high = ratio_interval([1.2, 1.2, 1.2])
    assert ratio == pytest.approx(1.2) and low == pytest.approx(1.2) and high == pytest.approx(1.2)
    ratio, low, high = ratio_interval([0.8, 1.25])  # symmetric in log: geometric mean 1
    assert ratio == pytest.approx(1.0) and low < 1.0 < high and low * high == pytest.approx(1.0)
    assert math.isnan(ratio_interval([1.1])[1])
    with pytest.raises(ValueError):
        ratio_interval([1.0, -1.0])


def test_the_verdict_follows_the_interval():
    assert paired_ratio([10.0, 10.2, 9.9, 10.1], [12.0, 12.1, 11.8, 12.2]).verdict == "faster"
    assert paired_ratio([12.0, 12.1, 11.8, 12.2], [10.0, 10.2, 9.9, 10.1]).verdict == "slower"
    assert paired_ratio([10.0, 12.0, 10.0, 12.0], [12.0, 10.0, 11.9, 10.1]).verdict == "undecided"


def test_two_models_alternate_repeat_by_repeat(monkeypatch):
    now = [0.0]
    calls: list[str] = []

    class Probe:
        def probe_ms(self, runs=10):
            return 1.0

        def baseline_ms(self):
            return 1.0

    monkeypatch.delenv(protocols.CONTENTION_PAUSE_ENV, raising=False)  # the default retries (the suite sets none)
    monkeypatch.setattr(protocols, "time", types.SimpleNamespace(perf_counter=lambda: now[0],
                                                                 thread_time=lambda: now[0], sleep=lambda s: None))
    monkeypatch.setattr(protocols, "reference_workload", lambda: Probe())

    def runner(model, protocol, device, x):
        name, ms = ("ours", 10.0) if isinstance(model, torch.nn.Identity) else ("timm", 12.0)

        def run():
            calls.append(name)
            now[0] += ms / 1e3
        return Runner(run, ())

    monkeypatch.setattr(protocols, "prepare_runner", runner)
    timed = measure_pair(torch.nn.Identity(), torch.nn.ReLU(), get_protocol("cpu-latency", repeats=4, warmup=0,
                                                                           img_size=8, batch_size=1))
    assert calls[-8:] == ["timm", "ours", "ours", "timm", "timm", "ours", "ours", "timm"]
    assert timed.ratios == pytest.approx([10 / 12] * 4)
    with pytest.raises(ExploreError, match="--device"):
        measure_pair(torch.nn.Identity(), torch.nn.ReLU(), get_protocol("gpu-latency", device="meta"))


def _measurement(ms: float) -> Measurement:
    return Measurement(protocol={}, device_name="AMD EPYC 7B13 64-Core Processor", batch_size=16, median_ms=ms,
                       iqr_ms=0.1, cv=0.03, throughput_img_s=16 / (ms / 1e3), latency_ms_per_img=ms / 16,
                       gpu_ms=None, host_ms=None, host_bound=None, oom_retries=0, versions={"torch": "2.14.1"})


def test_bench_reports_the_paired_ratio_in_a_table_of_120_columns(monkeypatch):
    monkeypatch.setattr(models_module, "reference_model", lambda name: torch.nn.ReLU())
    monkeypatch.setattr(models_module, "build", lambda config: torch.nn.Identity())
    monkeypatch.setattr(models_module, "time_model",
                        lambda model, protocol: _measurement(10.0 if isinstance(model, torch.nn.Identity) else 11.0))
    quiet = Contention(1.0, 1.0, 1, False, 1.0)
    monkeypatch.setattr(models_module, "time_pair", lambda a, b, protocol: CpuTiming(
        [10.0, 10.1, 9.9, 10.0], [11.0, 11.2, 10.9, 11.1], [], quiet))
    frame = bench(["efficientvit_m0", "efficientvit_m4", "efficientvit_b0"], "cpu-latency", ("eager", "fused"))
    assert (frame["verdict"] == "faster").all() and (frame["ratio_low"] > 1.0).all()
    assert frame["ratio_paired"].iloc[0] == pytest.approx(1.1, abs=0.01) and (frame["pairs"] == 4).all()
    console = Console(width=120, record=True)
    console.print(bench_table(frame, "cpu-latency"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "…" not in text and {"M0", "M4", "B0"} <= set(text.split())
    assert "efficientvit" not in text  # short names in the terminal
    assert short_name("efficientvit_b3") == "B3" and short_name("other") == "other"
