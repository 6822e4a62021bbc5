"""Device-agnostic logic of the CUDA paths (issue 13), exercised on the CPU.

Compiled-graph counting over several models, per-image latency after out-of-memory halving,
the host-bound rule, worker device assignment, out-of-memory recognition and the per-device
measure/train lock.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

from conftest import tiny_config
import explore.measure.protocols as protocols
import explore.measure.runners as runners
from explore.device import LOCK_DIR_ENV, device_lock, is_out_of_memory, lock_path
from explore.errors import ExploreError
from explore.nn import build
from explore.measure import GraphCounter, get_protocol, host_bound_rule, measure
from explore.search import DEFAULT_LATENCY_MODE, StudySettings


def _compile_protocol(**overrides):
    fields = dict(img_size=32, in_chans=1, batch_size=2, repeats=2, warmup=1, mode="compile", compile_backend="eager")
    fields.update(overrides)
    return get_protocol("cpu-latency", **fields)


def _models(count: int):
    widths = [(32, 48, 64), (16, 24, 48), (32, 96, 64), (16, 48, 128)]  # divisible by 2, 3, 4 heads
    for i in range(count):
        config = tiny_config(img_size=32)
        stages = tuple(dataclasses.replace(s, width=w) for s, w in zip(config.stages, widths[i % 4]))
        yield build(tiny_config(img_size=32, stages=stages))


@torch._dynamo.config.patch(recompile_limit=2)  # torch's own API: monkeypatch cannot undo a config entry
def test_compile_mode_compiles_every_model():
    """More models than dynamo's recompile limit: every measurement labelled compile ran compiled
    code (each model's forward compiled once: the attention-bias cache is filled before tracing)."""
    protocol = _compile_protocol()
    for model in _models(4):
        result = measure(model, protocol)
        assert result.compiled_graphs == 1
        runs = max(2, protocol.warmup) + protocol.repeats
        assert result.compiled_calls >= runs


@torch._dynamo.config.patch(recompile_limit=1)
def test_compile_that_ran_eagerly_is_refused(monkeypatch):
    """Without the per-model reset, the recompile limit makes dynamo run later models eagerly: the
    measurement must fail, not be stored as a compiled figure."""
    monkeypatch.setattr(torch._dynamo, "reset", lambda: None)
    models = list(_models(3))
    protocol = _compile_protocol()
    with pytest.raises(ExploreError, match="eagerly"):
        for model in models:
            measure(model, protocol)


class _Compiles:
    """Counts dynamo resets and the graphs every GraphCounter of ``compile`` mode compiled."""

    def __init__(self, monkeypatch):
        self.resets, self.counters = 0, []
        reset = torch._dynamo.reset
        outer = self

        def counting_reset():
            outer.resets += 1
            reset()

        class Counting(runners.GraphCounter):
            def __init__(self, backend="inductor"):
                super().__init__(backend)
                outer.counters.append(self)

        monkeypatch.setattr(torch._dynamo, "reset", counting_reset)  # the module, not its config
        monkeypatch.setattr(runners, "GraphCounter", Counting)
        runners.clear_compiled()  # a known start: nothing cached, no models since the reset
        self.resets = 0

    @property
    def graphs(self):
        return sum(c.graphs for c in self.counters)


def test_remeasuring_one_model_compiles_once(monkeypatch):
    """Issue 27 item 11: rounds of one model reuse its compiled forward (no reset, no new graph), and
    every round still runs compiled code in all its passes; a layer replaced in place since (the cache
    is keyed by the model's structure too) is compiled again, not timed stale."""
    compiles = _Compiles(monkeypatch)
    protocol = _compile_protocol(figure="raw")
    model = next(_models(1))
    runs = max(2, protocol.warmup) + protocol.repeats
    results = [measure(model, protocol) for _ in range(3)]
    assert compiles.resets == 0 and len(compiles.counters) == 1 and compiles.graphs == 1
    assert all(r.compiled_graphs == 1 and r.compiled_calls >= runs for r in results)
    model.head.linear = torch.nn.Linear(model.head.linear.in_features, 5)
    assert measure(model, protocol).compiled_graphs == 1
    assert len(compiles.counters) == 2 and compiles.graphs == 2 and compiles.resets == 0


def test_rounds_over_different_models_compile_each_once(monkeypatch):
    """Two models measured round-robin: each compiles its own graph once, in the same dynamo
    generation, and both rounds of both ran compiled code."""
    from explore.measure.timing import time_rounds

    compiles = _Compiles(monkeypatch)
    protocol = _compile_protocol(figure="raw")
    models = list(_models(2))
    rounds = time_rounds([(m, protocol) for m in models], 2)
    runs = max(2, protocol.warmup) + protocol.repeats
    assert compiles.resets == 0 and len(compiles.counters) == 2
    assert [c.graphs for c in compiles.counters] == [1, 1]
    assert all(r.compiled_graphs == 1 and r.compiled_calls >= runs for per_model in rounds for r in per_model)


@torch._dynamo.config.patch(recompile_limit=2)
def test_dynamo_is_reset_before_the_recompile_limit(monkeypatch):
    """recompile_limit 2: one model per dynamo generation (one entry spare); a new model resets dynamo
    and empties the cache, so the first model compiles again, and none of them runs eagerly."""
    compiles = _Compiles(monkeypatch)
    protocol = _compile_protocol(figure="raw")
    first, second = _models(2)
    assert runners.compile_budget() == 1
    measure(first, protocol)
    measure(first, protocol)  # cached: nothing compiled, no reset
    assert compiles.resets == 0 and compiles.graphs == 1
    assert measure(second, protocol).compiled_graphs == 1 and compiles.resets == 1
    again = measure(first, protocol)  # emptied by the reset: compiled again, for real
    assert compiles.resets == 2 and again.compiled_graphs == 1 and compiles.graphs == 3
    assert again.compiled_calls >= max(2, protocol.warmup) + protocol.repeats


class _Toy(torch.nn.Module):
    """A model that compiles in a fraction of a second; every instance shares one ``forward``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(1, width, 3), torch.nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@torch._dynamo.config.patch(recompile_limit=3)
def test_compiles_made_elsewhere_count_towards_the_reset(monkeypatch):
    """Compiled entries on the shared ``forward`` that measurement did not make (the proxy loop's
    ``torch.compile`` of a trained model) also bring the reset forward: here three would leave no room,
    and the measurement would run eagerly and be refused."""
    compiles = _Compiles(monkeypatch)
    x = torch.randn(2, 1, 8, 8)
    for width in (3, 4, 5):
        torch.compile(_Toy(width), backend=GraphCounter("eager"))(x)  # one entry each
    result = measure(_Toy(6), _compile_protocol(figure="raw", img_size=8))
    assert compiles.resets == 1 and result.compiled_graphs == 1


@torch._dynamo.config.patch(recompile_limit=3)
def test_rounds_of_more_compiled_models_than_a_generation_compile_each_once(monkeypatch):
    """Three models, two per dynamo generation: the rounds run over groups of two (A B A B, then C C),
    so each model compiles once instead of once per round; fused jobs keep one round-robin over all."""
    from explore.measure import timing

    compiles = _Compiles(monkeypatch)
    protocol = _compile_protocol(figure="raw", img_size=8)
    toys = [_Toy(w) for w in (3, 4, 5)]
    seen = []
    rounds = timing.time_rounds([(t, protocol) for t in toys], 2, on_measured=lambda done, total: seen.append(done))
    assert len(compiles.counters) == 3 and compiles.graphs == 3 and compiles.resets == 1
    assert [len(r) for r in rounds] == [2, 2, 2] and seen == list(range(1, 7))
    assert all(m.compiled_calls >= max(2, protocol.warmup) + protocol.repeats for r in rounds for m in r)
    order = []
    monkeypatch.setattr(timing, "time_model", lambda model, p: order.append(toys.index(model)))
    timing.time_rounds([(t, protocol) for t in toys], 2)
    assert order == [0, 1, 0, 1, 2, 2]
    order.clear()
    timing.time_rounds([(t, dataclasses.replace(protocol, mode="fused")) for t in toys], 2)
    assert order == [0, 1, 2, 0, 1, 2]


def test_graph_counter_counts_graphs_and_calls():
    counter = GraphCounter("eager")
    fn = torch.compile(lambda x: torch.relu(x) + 1, backend=counter)
    for _ in range(3):
        fn(torch.randn(4))
    assert counter.graphs == 1 and counter.calls == 3


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
])
def test_out_of_memory_errors_halve_the_batch_and_latency_is_per_image(monkeypatch, error):
    """A batch that does not fit is halved; the figure compared across models is per image."""
    seen = []

    def fake(model, protocol, device, batch):
        seen.append(batch)
        if batch > 4:
            raise error
        return protocols.Timed([2.0 * batch, 2.0 * batch, 2.2 * batch])

    monkeypatch.setattr(protocols, "measure_batch", fake)
    result = measure(torch.nn.Identity(), get_protocol("cpu-latency", batch_size=16, repeats=3))
    assert seen == [16, 8, 4]
    assert result.batch_size == 4 and result.oom_retries == 2
    assert result.latency_ms_per_img == pytest.approx(2.0)  # same as if 16 had fitted: 32 ms / 16
    assert result.as_attrs()["latency_ms_per_img"] == pytest.approx(2.0)


def test_other_errors_are_not_taken_for_out_of_memory(monkeypatch):
    def fake(model, protocol, device, batch):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(protocols, "measure_batch", fake)
    with pytest.raises(RuntimeError, match="shapes"):
        measure(torch.nn.Identity(), get_protocol("cpu-latency", batch_size=16, repeats=3))
    assert not is_out_of_memory(ValueError("out of memory"))  # only runtime/allocator errors


def test_host_bound_rule_on_synthetic_timings():
    # GPU-bound: the host queues a pass in 2 ms, the GPU needs 10 ms for it
    assert not host_bound_rule(host_ms=2.0, gpu_exec_ms=10.0)
    # launch-bound: the host needs 9 ms to queue what the GPU runs in 3 ms
    assert host_bound_rule(host_ms=9.0, gpu_exec_ms=3.0)
    # the old rule compared the host time of a back-to-back loop with its GPU time: with a full launch
    # queue the host waits for the GPU and both read 10 ms, flagging a GPU-bound model. The rule's
    # inputs are the queueing time with the GPU kept busy (2 ms here) and the GPU's own time.
    assert not host_bound_rule(host_ms=2.0, gpu_exec_ms=10.0)
    assert host_bound_rule(host_ms=8.0, gpu_exec_ms=10.0)  # the threshold: 0.8


def test_workers_get_distinct_devices():
    settings = StudySettings(device="cuda", devices=(0, 1), workers=4)
    assert [settings.worker_device(i) for i in range(4)] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
    assert StudySettings(device="cuda:1", workers=2).worker_device(1) == "cuda:1"
    with pytest.raises(ExploreError, match="--devices"):
        StudySettings(device="cpu", devices=(0,)).validate()
    with pytest.raises(ExploreError, match="--devices"):
        StudySettings(device="cuda", devices=(-1,)).validate()


def test_default_latency_mode_by_device():
    assert StudySettings(device="cpu").resolved_latency_mode == DEFAULT_LATENCY_MODE["cpu"] == "fused"
    assert StudySettings(device="cuda:0").resolved_latency_mode == DEFAULT_LATENCY_MODE["cuda"] == "cuda-graph"
    assert StudySettings(device="cuda", latency_mode="compile").resolved_latency_mode == "compile"


def test_the_locks_live_in_one_folder_per_machine_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.delenv(LOCK_DIR_ENV, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # tempfile caches its folder; None makes it read TMPDIR again
    assert lock_path("cpu") == str(tmp_path / "t" / "explore-cpu.lock")
    assert lock_path("cuda:1") == str(tmp_path / "t" / "explore-cuda1.lock")
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    assert lock_path("cpu") == str(tmp_path / "explore-cpu.lock")
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "missing"))
    with pytest.raises(ExploreError, match="EXPLORE_LOCK_DIR"):
        lock_path("cpu")


def test_a_lock_folder_that_does_not_exist_is_one_error_line_before_any_command_runs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from explore.cli import app

    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path / "missing"))
    result = CliRunner().invoke(app, ["study", "--space", "cga", "--out", str(tmp_path / "runs"), "--trials", "1"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: EXPLORE_LOCK_DIR = {str(tmp_path / 'missing')!r}: an existing folder for the device locks (or unset: "
        "the temporary folder)"]
    assert not (tmp_path / "runs").exists()


def test_measure_waits_for_training_on_the_same_device(tmp_path, monkeypatch):
    """The exclusive (measure) lock is granted only after the shared (train) lock is released, and a
    trainer arriving while a measurement waits queues behind it."""
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))
    events = []
    training = threading.Event()

    def train(name: str, hold: float) -> None:
        with device_lock("cpu", exclusive=False):
            events.append(f"{name} start")
            training.set()
            time.sleep(hold)
            events.append(f"{name} end")

    def measure_latency() -> None:
        with device_lock("cpu", exclusive=True):
            events.append("measure")

    first = threading.Thread(target=train, args=("train1", 0.5))
    first.start()
    training.wait()
    measurer = threading.Thread(target=measure_latency)
    measurer.start()
    time.sleep(0.1)  # the measurer is now waiting, holding the gate
    second = threading.Thread(target=train, args=("train2", 0.0))
    second.start()
    for thread in (first, measurer, second):
        thread.join(timeout=10)
    assert events == ["train1 start", "train1 end", "measure", "train2 start", "train2 end"]


def _raised_inside(outer: BaseException, inner: BaseException, *, explicit: bool) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as cause:
            if explicit:
                raise outer from cause
            raise outer
    except BaseException as caught:  # noqa: BLE001 - the test builds the chain
        return caught


def test_out_of_memory_behind_another_error_is_recognised():
    """Graph capture wraps the allocator's error; cuBLAS without workspace memory says NOT_INITIALIZED."""
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
    capture = RuntimeError("CUDA error: operation failed due to a previous error during capture")
    assert is_out_of_memory(_raised_inside(capture, oom, explicit=True))
    assert is_out_of_memory(_raised_inside(capture, oom, explicit=False))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling `cublasCreate(handle)`"))
    assert not is_out_of_memory(_raised_inside(capture, ValueError("bad shape"), explicit=True))
