"""``explore acceptance``: run every path of a device for real, write one report. A tool over the
other commands (it runs them in subprocesses and checks what they wrote), so it lives with the CLI.

    explore acceptance --device cuda --out reports/gpu_<device>     # an H100-class GPU, <= 10 min
    explore acceptance --device cpu --out runs/acceptance_cpu       # CI: the same checks, small sizes

Each check runs a real ``explore`` command (``python -m explore.cli ...``) in a subprocess with its
own time limit, then reads what the command wrote and checks it; one line per check is printed, and
``report.md`` (with ``checks.csv`` and every command's log under ``logs/``) is written into ``--out``.
The exit code is 1 when any check failed or was not reached within ``--budget-s``.

Checks (sizes for ``cuda``; ``cpu`` runs the same commands smaller, on the CPU protocols):

Order: ``study`` and ``memory`` first, then the bench checks (their inductor compiles are the slow
part), then the rest; on CUDA the per-check limits add up to the 600 s budget. The bench checks
need timm: ``pip install -e '.[timm]'`` (see docs/gpu.md for the one set-up command).

``bench-throughput``, ``bench-latency``
    ``explore bench`` on ``gpu-throughput`` (``eager``, ``fused``, ``compile``, ``cuda-graph``) and
    ``gpu-latency`` (``eager``, ``fused``, ``cuda-graph``: 6 cold inductor compiles in all, not 12)
    for M0, M4 and B1 against timm (CPU: ``cpu-latency``, M0, no CUDA graphs, ``compile`` through
    dynamo's capture only: ``--compile-backend eager``). Passes when every row was measured and every ``compile`` row compiled at least one graph
    for ours and for timm's model (a forward pass that ran eagerly raises in the measurement).
``study``
    ``explore study --space cga --device DEVICE --trials 4`` on Fashion-MNIST: 4 COMPLETE trials with 4
    distinct architectures, the latency mode and the training precision recorded on every trial.
``validate-proxy``
    ``explore validate-proxy`` with 4 architectures: 4 rows and a finite Kendall tau.
``ablate``
    ``explore ablate cga_fig7_qk_dim`` (two variants, two seeds, a tiny budget) with the device's
    protocol: a summary row per variant.
``bench-proxy``
    ``explore bench proxy``: the proxy loop and the plain DataLoader loop, warmed up, timed.
``memory`` (CUDA only)
    Peak GPU memory of inference and of a training step (:func:`explore.measure.peak_memory_mib`),
    and a real out-of-memory: ``gpu-throughput`` asked for a batch that cannot fit must halve until
    it fits and say so (``oom_retries``).
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from explore.cli.common import app, fail, names
from explore.cli.options import DEVICE
from explore.device import resolve_device
from explore.errors import ExploreError
from explore.records import CONFIG_HASH
from explore.report.acceptance import AcceptanceRun, CheckResult
from explore.reproduce import command_line

__all__ = ["SIZES", "run_acceptance", "acceptance"]

M0, M4, B1 = "efficientvit_m0", "efficientvit_m4", "efficientvit_b1"

SIZES: dict[str, dict[str, Any]] = {
    "cuda": {
        "budget_s": 600,
        "bench": [
            ("bench-throughput", ["--protocol", "gpu-throughput", "--models", f"{M0},{M4},{B1}",
                                  "--modes", "eager,fused,compile,cuda-graph", "--repeats", "10", "--warmup", "3"]),
            ("bench-latency", ["--protocol", "gpu-latency", "--models", f"{M0},{M4},{B1}",
                               "--modes", "eager,fused,cuda-graph", "--repeats", "50", "--warmup", "10"]),
        ],
        # per-check limits (s), in the order run; their sum is the budget: every check fits
        "limits": {"study": 150, "memory": 60, "bench-throughput": 150, "bench-latency": 60, "validate-proxy": 70,
                   "ablate": 60, "bench-proxy": 50},
        "study": ["--trials", "4", "--epochs", "1", "--max-train", "10000", "--max-val", "2000"],
        "proxy": ["--archs", "4", "--short-epochs", "1", "--long-epochs", "5", "--max-train", "5000",
                  "--max-val", "2000"],
        "ablate": ["--epochs", "1", "--max-train", "5000", "--max-val", "1000", "--img-size", "64",
                   "--seeds", "0,1", "--variants", "qk8,qk16", "--protocols", "gpu-throughput",
                   "--repeats", "10"],
        "bench_proxy": ["--images", "8192", "--batch-size", "256", "--img-size", "64"],
    },
    "cpu": {
        "budget_s": 900,
        "bench": [
            # compile rows through dynamo's capture only (the eager backend): inductor's C++ code
            # generation for M0 and timm's M0 was 80 of the check's 97 s on the 2-core CI machine, and
            # it is not what the GPU run compiles (Triton); inductor on the CPU has its own tests
            ("bench-latency", ["--protocol", "cpu-latency", "--models", M0, "--modes", "eager,fused,compile",
                               "--repeats", "5", "--warmup", "2", "--batch-size", "4", "--img-size", "64",
                               "--compile-backend", "eager"]),
        ],
        "study": ["--trials", "4", "--epochs", "0.25", "--max-train", "512", "--max-val", "256",
                  "--batch-size", "64", "--latency-repeats", "5"],
        "proxy": ["--archs", "4", "--short-epochs", "0.2", "--long-epochs", "1", "--max-train", "512",
                  "--max-val", "256", "--batch-size", "64"],
        "ablate": ["--epochs", "0.25", "--max-train", "256", "--max-val", "128", "--img-size", "32",
                   "--batch-size", "64", "--seeds", "0,1", "--variants", "qk8,qk16", "--protocols", "cpu-latency",
                   "--measure-img-sizes", "64", "--repeats", "3"],
        "bench_proxy": ["--images", "512", "--batch-size", "64", "--img-size", "32", "--warmup-steps", "2"],
        "limits": {"study": 240, "memory": 60, "bench-latency": 300, "validate-proxy": 180, "ablate": 180,
                   "bench-proxy": 150},
    },
}
"""Sizes of the checks by device type: ``cuda`` fits in about 10 minutes of one H100-class GPU, ``cpu`` in
a few minutes of a 2-core CI machine."""


class CheckFailed(Exception):
    """A check's command ran but its output does not show what the check requires."""


def _explore(*args: str) -> list[str]:
    return [sys.executable, "-m", "explore.cli", *args]


def _shown(argv: list[str]) -> str:
    """A check's command as the report shows it: ``explore ...`` (not this interpreter's path)."""
    return command_line(["explore", *argv[3:]])


class _Runner:
    """Runs the checks' commands under one deadline and keeps their logs."""

    def __init__(self, out: Path, deadline: float) -> None:
        self.out = out
        self.deadline = deadline
        (out / "logs").mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, argv: list[str], limit_s: float) -> str:
        """Run ``argv``; return its output. Raises CheckFailed on a non-zero exit or a timeout."""
        limit = max(1.0, min(limit_s, self.left()))
        log = self.out / "logs" / f"{name}.log"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.pop("EXPLORE_STORAGE", None)
        env.pop("EXPLORE_INJECT_FAULTS", None)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=limit, env=env, check=False,
                                  cwd=self.out)
        except subprocess.TimeoutExpired as exc:
            text = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            log.write_text(text, encoding="utf-8")
            raise CheckFailed(f"did not finish within {limit:.0f} s (log: logs/{name}.log)") from None
        text = done.stdout + ("\n" + done.stderr if done.stderr else "")
        log.write_text(text, encoding="utf-8")
        if done.returncode != 0:
            last = [line for line in text.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
            raise CheckFailed(f"exit code {done.returncode}: {last[0][:300]} (log: logs/{name}.log)")
        return text


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise CheckFailed(f"{path.name} was not written")
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _check_bench(runner: _Runner, name: str, args: list[str], device: str, modes: tuple[str, ...],
                 limit_s: float) -> tuple[str, str, dict[str, Any]]:
    folder = runner.out / name
    argv = _explore("bench", "--device", device, *args, "--out", name)
    runner.run(name, argv, limit_s)
    files = sorted(folder.glob("bench_*.csv"))
    if not files:
        raise CheckFailed("no bench_*.csv written")
    rows = _read_csv(files[0])
    models = args[args.index("--models") + 1].split(",")
    wanted = {(m, mode) for m in models for mode in modes}
    got = {(r["model"], r["mode"]) for r in rows}
    if wanted - got:
        raise CheckFailed(f"rows missing: {sorted(wanted - got)}")
    graphs = []
    for row in rows:
        if row["mode"] != "compile":
            continue
        ours, timm = row.get("ours_graphs") or "", row.get("timm_graphs") or ""
        if not ours or int(float(ours)) < 1 or not timm or int(float(timm)) < 1:
            raise CheckFailed(f"{row['model']} compile: graphs ours {ours!r}, timm {timm!r}: not compiled")
        graphs.append(f"{row['model'].split('_')[-1]} {int(float(ours))}/{int(float(timm))}")
    ratios = [float(r["ratio_ours_timm"]) for r in rows if r.get("ratio_ours_timm")]
    host_bound = sorted({f"{r['model'].split('_')[-1]} {r['mode']}" for r in rows if r.get("ours_host_bound") == "True"})
    summary = (f"{len(rows)} rows; ratio ours/timm {min(ratios):.2f}-{max(ratios):.2f}; compile graphs ours/timm: "
               + ", ".join(graphs) + (f"; host-bound: {', '.join(host_bound)}" if host_bound else ""))
    keep = ("model", "mode", "batch", "ours_img_s", "ours_cv", "timm_img_s", "timm_cv", "ratio_ours_timm",
            "ours_host_bound", "timm_host_bound", "ours_graphs", "timm_graphs")
    return summary, _shown(argv), {"table": [{k: r.get(k, "") for k in keep} for r in rows],
                                   "device": rows[0].get("device", ""), "versions": rows[0].get("versions", "")}


def _check_study(runner: _Runner, args: list[str], device: str, limit_s: float) -> tuple[str, str, dict[str, Any]]:
    from explore.report.common import sig3

    argv = _explore("study", "--space", "cga", "--device", device, "--out", "runs", "--study-name", "acceptance",
                    *args, "--no-report")
    runner.run("study", argv, limit_s)
    report_dir = runner.out / "study"
    runner.run("study-report", _explore("report", "runs/acceptance", "--out", "study"), 120)
    rows = [r for r in _read_csv(report_dir / "trials.csv") if r["state"] == "COMPLETE"]
    trials = int(args[args.index("--trials") + 1])
    hashes = {r[CONFIG_HASH] for r in rows}
    if len(rows) != trials or len(hashes) != trials:
        raise CheckFailed(f"{len(rows)} COMPLETE trials with {len(hashes)} distinct architectures; expected {trials}")
    for row in rows:
        if not row.get("latency_protocol_mode") or not row.get("proxy_precision"):
            raise CheckFailed(f"trial {row['number']} lacks latency_protocol_mode or proxy_precision")
    modes = sorted({r["latency_protocol_mode"] for r in rows})
    precision = sorted({r["proxy_precision"] for r in rows})
    top1 = [float(r["top1"]) for r in rows]
    lat = [float(r["latency_ms"]) for r in rows]
    bound = sorted({r.get("latency_host_bound", "") for r in rows} - {""})
    summary = (f"{trials} trials, {len(hashes)} architectures; top-1 {min(top1):.1f}-{max(top1):.1f} %; latency "
               f"{sig3(min(lat))}-{sig3(max(lat))} ms/img ({', '.join(modes)}); training {', '.join(precision)}"
               + (f"; host_bound {', '.join(bound)}" if bound else ""))
    keep = ("number", "summary", "top1", "latency_ms", "latency_batch_size", "latency_protocol_mode",
            "latency_host_bound", "proxy_precision", "proxy_train_img_s", "proxy_train_seconds")
    return summary, _shown(argv), {"table": [{k: r.get(k, "") for k in keep} for r in rows]}


def _check_proxy(runner: _Runner, args: list[str], device: str, limit_s: float) -> tuple[str, str, dict[str, Any]]:
    folder = runner.out / "proxy_validity"
    argv = _explore("validate-proxy", "--space", "cga", "--device", device, *args, "--out", folder.name)
    text = runner.run("validate-proxy", argv, limit_s)
    rows = _read_csv(folder / "proxy_validity.csv")
    archs = int(args[args.index("--archs") + 1])
    if len(rows) != archs:
        raise CheckFailed(f"{len(rows)} rows; expected {archs}")
    line = next((ln for ln in text.splitlines() if ln.startswith("Kendall tau")), "")
    try:
        tau = float(line.split()[2].rstrip(","))
    except (IndexError, ValueError):
        raise CheckFailed("no Kendall tau in the output") from None
    if not math.isfinite(tau):
        raise CheckFailed(f"Kendall tau {tau}")
    seconds = sum(float(r["short_seconds"]) + float(r["long_seconds"]) for r in rows)
    return f"{archs} architectures, Kendall tau {tau:.2f}; {seconds:.0f} s of training", _shown(argv), {}


def _check_ablate(runner: _Runner, args: list[str], device: str, limit_s: float) -> tuple[str, str, dict[str, Any]]:
    folder = runner.out / "ablate"
    argv = _explore("ablate", "cga_fig7_qk_dim", "--device", device, *args, "--out", folder.name)
    runner.run("ablate", argv, limit_s)
    rows = _read_csv(folder / "summary.csv")
    variants = args[args.index("--variants") + 1].split(",")
    if sorted(r["variant"] for r in rows) != sorted(variants):
        raise CheckFailed(f"summary rows {[r['variant'] for r in rows]}; expected {variants}")
    return f"{len(rows)} variants x {len(args[args.index('--seeds') + 1].split(','))} seeds", _shown(argv), {}


def _check_bench_proxy(runner: _Runner, args: list[str], device: str,
                       limit_s: float) -> tuple[str, str, dict[str, Any]]:
    folder = runner.out / "proxy_throughput"
    argv = _explore("bench", "proxy", "--device", device, *args, "--out", folder.name)
    text = runner.run("bench-proxy", argv, limit_s)
    line = next((ln for ln in text.splitlines() if ln.startswith("| ratio proxy / plain")), "")
    if not line:
        raise CheckFailed("no ratio line in the output")
    proxy = next((ln for ln in text.splitlines() if ln.startswith("| proxy loop")), "")
    return (f"proxy loop {proxy.split('|')[2].strip()} img/s, ratio proxy/plain {line.split('|')[2].strip()}",
            _shown(argv), {})


def _check_memory(device: str) -> tuple[str, str, dict[str, Any]]:
    """Peak memory of M0 (batch 256, 224 px) and a real out-of-memory halving (M4, gpu-throughput)."""
    import torch

    from explore.arch import PRESETS
    from explore.measure import get_protocol, measure, peak_memory_mib
    from explore.nn import build

    m0 = build(PRESETS[M0])
    peak = peak_memory_mib(m0, get_protocol("gpu-throughput", device=device, batch_size=256))
    free, total = torch.cuda.mem_get_info(torch.device(device))
    # a batch about 4x what the whole card holds, for M4's fp16 input alone: it must halve
    too_big = 1 << max(12, math.ceil(math.log2(4 * total / (3 * 224 * 224 * 2))))
    result = measure(build(PRESETS[M4]), get_protocol("gpu-throughput", device=device, batch_size=too_big,
                                                      repeats=3, warmup=1))
    if result.oom_retries < 1 or result.batch_size >= too_big:
        raise CheckFailed(f"batch {too_big} ran without an out-of-memory error; the halving was not exercised")
    summary = (f"M0 batch 256: inference {peak['inference_mib']:.0f} MiB, train step {peak['train_step_mib']:.0f} MiB; "
               f"M4 batch {too_big} -> {result.batch_size} after {result.oom_retries} halvings, "
               f"{result.throughput_img_s:.0f} img/s")
    details = {"peak_mib": peak, "oom_requested_batch": too_big, "oom_timed_batch": result.batch_size,
               "oom_retries": result.oom_retries, "gpu_total_mib": total / 2**20, "gpu_free_mib": free / 2**20}
    return summary, "(in process: explore.measure.peak_memory_mib, measure)", details


def _environment(device: str) -> dict[str, str]:
    import platform

    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__}
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        env.update(device=props.name, memory_gib=f"{props.total_memory / 2**30:.0f}",
                   capability=f"{props.major}.{props.minor}", cuda=str(torch.version.cuda))
    else:
        from explore.measure import device_name

        env.update(device=device_name("cpu"), cores=str(os.cpu_count()))
    from importlib import metadata

    for dist in ("timm", "optuna", "onnxruntime"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "not installed"
    return env


def run_acceptance(device: str, out: str | Path, *, budget_s: float | None = None,
                   only: list[str] | None = None, echo: Callable[[str], None] = print) -> AcceptanceRun:
    """Run the checks for ``device`` (``cuda[:N]`` or ``cpu``) in ``out``, with a line per check.

    Args:
        device: ``cuda``, ``cuda:N`` or ``cpu``.
        out: report folder (created); holds ``report.md``, ``checks.csv``, ``logs/`` and each
            command's own output.
        budget_s: wall-clock budget for all checks (s); a check not started in time is a FAIL
            ("not run"). Default: :data:`SIZES`'s.
        only: run only these checks (names as in the module docstring).
        echo: where the lines go.

    Returns:
        :class:`AcceptanceRun` (one :class:`CheckResult` per check, in order).

    Raises:
        DeviceError: the device is unknown or unavailable (before anything is written).
    """
    dev = resolve_device(device)
    kind = "cuda" if dev.type == "cuda" else "cpu"
    device = str(dev)
    sizes = SIZES[kind]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    runner = _Runner(out, start + (budget_s or sizes["budget_s"]))
    checks: list[tuple[str, Callable[[], tuple[str, str, dict[str, Any]]]]] = []
    limit = sizes["limits"]
    # the study and the memory check first: the bench checks' cold inductor compiles come after them
    checks.append(("study", lambda: _check_study(runner, sizes["study"], device, limit["study"])))
    checks.append(("memory", lambda: _check_memory(device)))
    for name, args in sizes["bench"]:
        modes = tuple(args[args.index("--modes") + 1].split(","))
        checks.append((name, lambda n=name, a=args, m=modes: _check_bench(runner, n, a, device, m, limit[n])))
    checks.append(("validate-proxy", lambda: _check_proxy(runner, sizes["proxy"], device, limit["validate-proxy"])))
    checks.append(("ablate", lambda: _check_ablate(runner, sizes["ablate"], device, limit["ablate"])))
    checks.append(("bench-proxy", lambda: _check_bench_proxy(runner, sizes["bench_proxy"], device,
                                                             limit["bench-proxy"])))
    results = []
    for name, check in checks:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        if name == "memory" and kind != "cuda":
            result = CheckResult(name, "SKIP", 0.0, "needs CUDA (peak GPU memory, a real GPU out-of-memory)")
        elif runner.left() <= 5:
            result = CheckResult(name, "FAIL", 0.0, "not run: the time budget was spent")
        else:
            try:
                summary, command, details = check()
                result = CheckResult(name, "PASS", time.monotonic() - t0, summary, command, details)
            except CheckFailed as exc:
                result = CheckResult(name, "FAIL", time.monotonic() - t0, str(exc))
            except Exception as exc:  # noqa: BLE001 - any error is this check's failure, the others still run
                result = CheckResult(name, "FAIL", time.monotonic() - t0, f"{type(exc).__name__}: {exc}"[:400])
        results.append(result)
        echo(result.line)
    wall = time.monotonic() - start
    shown_out = out.as_posix() if not out.is_absolute() else out.name  # never a path of this machine
    command = command_line(["explore", "acceptance"], [("--device", device), ("--out", shown_out),
                                                       ("--only", ",".join(only) if only else None)])
    return AcceptanceRun(results, _environment(device), command, wall, out)


@app.command()
def acceptance(
    *,
    device: DEVICE.option("cuda") = "cuda",
    out: Annotated[Optional[str], typer.Option(help="Report folder; default runs/acceptance_<device>.")] = None,
    budget_s: Annotated[Optional[float], typer.Option(help="Time budget for all checks (s).")] = None,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated check names (study, bench-throughput, ...).")] = None,
) -> None:
    """Run every path of a device for real (bench vs timm in every mode, a study, validate-proxy, an ablation,
    the proxy benchmark, peak memory and out-of-memory halving on CUDA) and write one report; exit 1 on a failure."""
    from explore.report import write_acceptance_report

    folder = out or f"runs/acceptance_{device.replace(':', '')}"
    try:
        run = run_acceptance(device, folder, budget_s=budget_s, only=names(only) if only else None,
                             echo=lambda line: print(line, flush=True))
    except ExploreError as exc:
        raise fail(exc) from None
    path = write_acceptance_report(run)
    print(f"acceptance {'FAILED' if run.failed else 'PASSED'}: {len(run.results) - run.failed} of {len(run.results)} "
          f"checks passed or skipped in {run.wall_s:.0f} s; report {path}", flush=True)
    if run.failed:
        raise typer.Exit(code=1)
