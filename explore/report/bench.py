"""Benchmark reports: ours vs timm, attention cost against tokens, proxy-loop throughput and latency
repeatability under load. Each renders the tables its benchmark computed (:mod:`explore.analysis.bench`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from explore.records import CONFIG_HASH
from explore.resources import safe_name

if TYPE_CHECKING:  # the results' types, for annotations only: the report never runs a benchmark
    from explore.analysis.bench.proxy import ProxyBench
    from explore.analysis.bench.repeatability import Repeatability

__all__ = ["write_bench_models", "ATTENTION_SETTINGS", "attention_scaling_header", "attention_scaling_figures",
           "render_attention_scaling", "write_attention_scaling", "render_proxy_throughput",
           "write_proxy_throughput", "render_repeatability", "write_repeatability", "REPEATABILITY_JSON"]


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# ours vs timm
def write_bench_models(frame: pd.DataFrame, folder: Path, protocol: str, command: str) -> Path:
    """Write ``bench_<protocol>_<device>.csv`` and ``.md`` (the rows of :func:`explore.analysis.bench.bench`);
    returns the CSV's path."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = safe_name(f"bench_{protocol}_{frame['device'].iloc[0].split()[0].lower()}")
    frame.to_csv(folder / f"{stem}.csv", index=False)
    header = (f"# {protocol}: ours vs timm\n\nCommand: `{command}`\n\n"
              f"Device: {frame['device'].iloc[0]}; {frame['versions'].iloc[0]}. img/s = batch / median time; "
              "ratio = ours / timm (>= 1: ours at least as fast); cv = coefficient of variation of the "
              "repeats; paper_img_s measured by the paper on its own hardware (context only). CPU: "
              "ratio_paired = geometric mean over the pairs of timm's time / ours, the two timed repeat by repeat "
              "(order ABBA), with its 95 % t interval on the log ratios (ratio_low, ratio_high); verdict: faster / "
              "slower when the interval excludes 1.0, else undecided.\n\n")
    _write(folder, f"{stem}.md", header + frame.to_markdown(index=False) + "\n")
    return folder / f"{stem}.csv"


# --------------------------------------------------------------------------------------------------
# attention cost against tokens
ATTENTION_SETTINGS = ("channels", "batch", "repeats", "threads", "device_type", "device_name", "torch")
"""The keys of an attention-scaling run's ``settings`` (``attention_scaling_<device>.json``): channels C,
batch, timed repeats, CPU threads (0: torch's default), device type (``cpu``), its model name, torch's version."""


def attention_scaling_header(settings: dict, command: str) -> str:
    """The report's first line: the layer, the timing and the device (``settings``: :data:`ATTENTION_SETTINGS`)."""
    s = settings
    return (f"One attention layer, C={s['channels']}, batch {s['batch']}, 4 heads of 16, median of {s['repeats']} "
            f"runs, ms; device {s['device_type']} ({s['device_name']}), threads {s['threads'] or 'default'}, "
            f"torch {s['torch']}. Command: `{command}`")


def render_attention_scaling(tokens: list[int], results: dict[str, list[float]], exponents: dict[str, float],
                             header: str, note: str | None = None) -> str:
    """The markdown table: one row per kind, median ms per token count, and the growth exponent; then
    the run's ``note`` (``--note``: its context, e.g. a shared machine) as a closing paragraph."""
    lines = [header, "", "| kind | " + " | ".join(f"N={n}" for n in tokens) + " | growth exponent |",
             "|---|" + "---|" * (len(tokens) + 1)]
    for kind, ms in results.items():
        lines.append(f"| {kind} | " + " | ".join(f"{t:.3f}" for t in ms) + f" | {exponents[kind]:.2f} |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_attention_scaling(text: str, tokens: list[int], results: dict[str, list[float]], folder: Path,
                            device_type: str, stored: dict) -> Path:
    """Write ``attention_scaling_<device>.md`` (``text``), ``.csv`` (kind, tokens, latency_ms to 1 ns: the
    figures ``text`` shows should be rendered from these, see :func:`attention_scaling_figures`) and
    ``.json`` (``stored``: ``{"command", "settings", "note"}``, what the report states beside the figures)."""
    rows = ["kind,tokens,latency_ms"] + [f'"{k}",{n},{t:.6f}' for k, ms in results.items() for n, t in zip(tokens, ms)]
    _write(folder, f"attention_scaling_{device_type}.csv", "\n".join(rows) + "\n")
    _write(folder, f"attention_scaling_{device_type}.json", json.dumps(stored, indent=2) + "\n")
    return _write(folder, f"attention_scaling_{device_type}.md", text)


def attention_scaling_figures(results: dict[str, list[float]]) -> dict[str, list[float]]:
    """The latencies (ms) as the CSV stores them (6 decimals), so that the report shows what its CSV holds."""
    return {kind: [float(f"{t:.6f}") for t in ms] for kind, ms in results.items()}


# --------------------------------------------------------------------------------------------------
# proxy loop vs plain DataLoader loop
def render_proxy_throughput(result: ProxyBench, command: str, note: str | None = None) -> str:
    """The markdown of a proxy benchmark: what ran, then img/s of both loops; then the run's ``note``
    (``--note``: its context, e.g. a shared machine) as a closing paragraph."""
    r = result
    warm_note = (f"Each loop was warmed up first for {r.warmup_steps} untimed step(s) on a model of its own, so "
                 "neither timing includes the process's start-up (CUDA context, cuDNN autotuning)."
                 if r.warmup_steps else "No warm-up (--warmup-steps 0): the first loop timed, the plain one, pays "
                 "the process's start-up.")
    return (f"Proxy training throughput, {r.model} at {r.img_size}x{r.img_size}, batch {r.batch_size}, "
            f"{r.images} Fashion-MNIST images x {r.epochs:g} epoch(s), device {r.device_type} ({r.device_name}), "
            f"precision {r.precision}, torch {r.torch_version}. {warm_note} Command: `{command}`\n\n"
            f"| loop | train img/s |\n|---|---|\n"
            f"| plain DataLoader ({r.workers} workers, per-image transforms) | {r.plain_img_s:.1f} |\n"
            f"| proxy loop (explore.train) | {r.proxy_img_s:.1f} |\n"
            f"| ratio proxy / plain | {r.proxy_img_s / r.plain_img_s:.2f} |\n"
            + (f"\n{note}\n" if note else ""))


def write_proxy_throughput(text: str, folder: Path, device_type: str, stored: dict) -> Path:
    """Write ``proxy_throughput_<device>.md`` (``text``) and ``.json`` (``stored``: ``{"command", "run", "note"}``,
    ``run`` the fields of :class:`~explore.analysis.bench.proxy.ProxyBench`, img/s unrounded)."""
    _write(folder, f"proxy_throughput_{device_type}.json", json.dumps(stored, indent=2) + "\n")
    return _write(folder, f"proxy_throughput_{device_type}.md", text)


# --------------------------------------------------------------------------------------------------
# latency repeatability under load
def _spread_line(label: str, ratios: pd.Series) -> str:
    """How far a series of per-architecture ratios lies from 1: share within 5 %, count beyond 10 %, worst."""
    dev = (ratios.dropna() - 1).abs()
    if dev.empty:
        return f"| {label} | – | – | – | – |"
    within = 100.0 * float((dev <= 0.05).mean())
    met = within >= 90.0 and int((dev > 0.10).sum()) == 0
    return (f"| {label} | {within:.0f} % | {int((dev > 0.10).sum())} of {len(dev)} | {100 * float(dev.max()):.1f} % "
            f"| {'met' if met else 'missed'} |")


def render_repeatability(run: Repeatability, command: str) -> str:
    """The markdown of a repeatability run: per load kind and figure (normalised, raw), how far the
    latencies of the same architectures moved idle vs loaded and first vs re-measured, against the
    targets (within 5 % for >= 90 % of the architectures, none beyond 10 %), and the tables."""
    figures = ("normalised first", "normalised re-measured", "raw first", "raw re-measured")  # the table's columns
    lines = ["# Latency repeatability on a shared machine", "", f"Command: `{command}`", "",
             f"The same study from the same seed: on the idle machine ({run.quiet_s:.0f} s), then beside each "
             "competing load (" + ", ".join(f"{k}: {run.loaded_s[k]:.0f} s" for k in run.tables)
             + f"; compute on {run.load_threads} thread(s), bandwidth: one thread streaming 256 MB arrays). Latency in "
             "ms per image; `first` = the trial's own measurement, `re-measured` = the end-of-study re-measurement "
             "(fastest of its rounds); normalised = median pair ratio to the EfficientViT-M0 reference x its "
             "calibration in that run, raw = wall time. Without a `--sampler` option the runs use the random "
             "sampler, so that they draw the same architectures.", "",
             "| comparison | within 5 % | beyond 10 % | worst | target |", "|---|---|---|---|---|"]
    quiet = next(iter(run.tables.values()))
    for label in ("norm", "raw"):
        name = "normalised" if label == "norm" else "raw"
        lines.append(_spread_line(f"{name}: first vs re-measured, idle run", quiet[f"within {label} quiet"]))
    for kind, table in run.tables.items():
        for label in figures:
            lines.append(_spread_line(f"{label}: idle vs {kind}", table[f"ratio {label}"]))
        for label in ("norm", "raw"):
            name = "normalised" if label == "norm" else "raw"
            lines.append(_spread_line(f"{name}: first vs re-measured, {kind} run", table[f"within {label} loaded"]))
    for kind, table in run.tables.items():
        same_top1 = bool((table["top1_quiet"] == table["top1_loaded"]).all())
        front_q = set(table.loc[table["pareto_quiet"].astype(bool), CONFIG_HASH])
        front_l = set(table.loc[table["pareto_loaded"].astype(bool), CONFIG_HASH])
        flagged = int(table["contended_loaded"].eq(True).sum())
        shown = table[["summary_quiet", "top1_quiet", "top1_loaded", "norm_first_quiet", "norm_first_loaded",
                       "norm_again_quiet", "norm_again_loaded", "raw_first_quiet", "raw_first_loaded",
                       "raw_again_quiet", "raw_again_loaded", "reference_slowdown_loaded", "contended_loaded"]].rename(
            columns={"summary_quiet": "architecture"})
        lines += ["", f"## Idle vs {kind}", "",
                  f"{len(table)} architectures in both runs; top-1 {'identical' if same_top1 else 'NOT identical'}; "
                  f"Pareto fronts {'the same' if front_q == front_l else 'different'}; {flagged} loaded measurements "
                  "flagged `contended`.", "", shown.to_markdown(index=False, floatfmt=".4g")]
    return "\n".join(lines) + "\n"


REPEATABILITY_JSON = "latency_repeatability.json"
"""The command, wall times and compute-load threads of a repeatability run, beside its table."""


def write_repeatability(text: str, run: Repeatability, folder: Path, command: str) -> Path:
    """Write ``latency_repeatability.md`` (``text``), ``.csv`` (the whole comparison: every load kind, a
    ``load`` column) and ``.json`` (``command``, the runs' wall seconds, the load kinds in order and the
    compute load's threads: with the CSV, what ``explore rerender`` needs to write the markdown again)."""
    _write(folder, "latency_repeatability.md", text)
    run.table.to_csv(folder / "latency_repeatability.csv", index=False)
    _write(folder, REPEATABILITY_JSON, json.dumps(
        {"command": command, "quiet_s": run.quiet_s, "loaded_s": run.loaded_s, "loads": list(run.tables),
         "load_threads": run.load_threads}, indent=1, sort_keys=True))
    return folder / "latency_repeatability.md"
