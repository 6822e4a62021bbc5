"""``explore rerender``: a committed report rendered again from the data stored beside it.

No training and no timing: the renderer of the report's kind reads the folder's stored rows and
writes the report files again (into the folder, or ``--out``). ``tests/report/test_rerender.py``
re-renders every report under ``reports/`` and compares it with what is committed, so a report that
no longer follows from its data, or from today's code, fails there.

Kinds with a renderer: ablation runs (``run.json`` naming a recipe, with ``variants.csv``,
``training.csv``, ``measurements.csv``; :func:`explore.analysis.ablation.load_run`); proxy-validity
runs (``proxy_validity.csv`` beside ``proxy_validity.md``: the table, and the settings from the
report's ``Command:`` line parsed by today's CLI, today's defaults for the options it does not give);
supernet-validity runs of ``validate-proxy --supernet`` (``supernet_validity.csv`` and ``.json``: the
subnets' table, the command, note and settings; τ and ρ computed again);
``explore bench`` ours-vs-timm runs (one ``bench_<protocol>_<device>.csv`` with its ``.md``);
``explore bench attention`` runs (``attention_scaling_<device>.md``, ``.csv``: the latencies, ``.json``: the
settings, the command and the ``--note``; the growth exponents computed again); ``explore bench proxy`` runs
(``proxy_throughput_<device>.md`` and ``.json``: both loops' img/s, the settings, the command, the note); ``explore bench repeatability`` runs (``latency_repeatability.md``, ``.csv``:
every load kind's per-architecture comparison, ``.json``: the command, wall times, load kinds, threads); study
reports of ``explore report`` (``summary.md``, ``trials.csv`` and ``study.json``: the study's settings
and the command; ``supernet_front.csv`` where the study has one; ``front_seeds.csv`` computed again
from ``trials.csv`` and ``front_seed_runs.csv``, the runs of the front re-trained with common seeds),
rendered without the Optuna storage; ``explore importance`` runs (``summary.md`` and ``retained.png`` from
``importance.json``: settings, plan totals, trend, back-ends, device, phase times, command, note; with
``comparison.csv``, ``retained.csv``, ``sensitivity.csv``, ``scores.csv`` and ``suggested_config.json``), or a
folder of such runs, one per sub-folder, under a ``README.md`` index with no figures of its own;
latency-table evaluations of ``explore latency-table --evaluate`` (``summary.md``, ``predictions.csv``
and ``evaluation.json``: the settings, the command, the table's path as given, the corrections and the
calibration models as re-timed in the evaluation session), their accuracy figures and noise floor
computed again from those, without the table file; ``explore compare-schedules`` runs (``summary.md``,
``comparison.json``: command, settings, reference point; ``runs.csv``, ``curves.csv``, ``fronts.csv``,
``rung_pairs.csv``: the summary and the rung-to-rung τ computed again from them, without the studies). Study reports written before ``study.json``
existed have no renderer, and one with ``front_seeds.csv`` but without ``front_seed_runs.csv``
(written before the runs were stored beside it) is refused: ``explore report`` writes them again from
the storage; importance reports written before ``importance.json`` have none either (their plan
totals, back-ends and phase times are only in the summary's text); latency-table evaluations written
before ``evaluation.json`` existed have none: their ``Made by`` command, run again, writes one; so do
schedule comparisons written before ``rung_pairs.csv`` and ``comparison.json``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Callable, Optional

import typer

from explore.cli.common import app, console, fail
from explore.errors import ExploreError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["rerender", "rerender_folder", "report_kind", "RENDERERS"]

_MADE_BY = re.compile(r"^Made by: `(.*)`$", re.M)


def _made_by(markdown: Path) -> str:
    """The command a report names on its ``Made by:`` line (kept as it was: it made the data)."""
    found = _MADE_BY.search(markdown.read_text(encoding="utf-8")) if markdown.exists() else None
    if found is None:
        raise ExploreError("report.md", str(markdown), "a report with a 'Made by: `COMMAND`' line to keep")
    return found.group(1)


def _ablation(folder: Path, out: Path) -> list[Path]:
    """An ablation report (report.md, summary.csv, ablation.png, latency_vs_resolution.png)."""
    from explore.analysis import ablation as ab
    from explore.report import write_ablation_report

    command = _made_by(folder / "report.md")
    run, loaded = ab.load_run(folder)
    table, taus = ab.summarise(run)
    paths = write_ablation_report(table, run.measurements, out, ab.report_meta(run, loaded), taus,
                                  ab.check_findings(run, table), command)
    return [p for p in (paths.markdown, paths.csv, paths.png, paths.resolution_png) if p is not None]


def _is_ablation(folder: Path) -> bool:
    if not (folder / "run.json").exists() or not (folder / "variants.csv").exists():
        return False
    import json

    try:
        return "recipe" in json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except ValueError:
        return False


_COMMAND = re.compile(r"^Command: `(.*)`$", re.M)


def _command_line(markdown: Path) -> str:
    """The command a report names on its ``Command:`` line (the proxy-validity reports' form of ``Made by:``)."""
    found = _COMMAND.search(markdown.read_text(encoding="utf-8")) if markdown.exists() else None
    if found is None:
        raise ExploreError(markdown.name, str(markdown), "a report with a 'Command: `COMMAND`' line to keep")
    return found.group(1)


def _command_params(command: str, name: str) -> dict:
    """The parameters (given, else today's defaults) of the stored ``explore NAME ...`` command line,
    parsed by today's CLI without running it: the settings a report states and does not store elsewhere."""
    import shlex

    import typer.main

    words = shlex.split(command)
    if words[:2] != ["explore", name]:
        raise ExploreError("command", command, f"an 'explore {name} ...' command line")
    group = typer.main.get_command(app)
    sub = group.get_command(None, name)  # type: ignore[attr-defined]
    try:  # parsed strictly: an option renamed or removed since is an error, not a silent default
        with sub.make_context(name, words[2:]) as ctx:
            return dict(ctx.params)
    except Exception as exc:  # the parser's usage errors (typer's own copy of click's exceptions)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise ExploreError("command", command, f"a command line today's 'explore {name}' parses ({message})") from None


def _proxy_validity(folder: Path, out: Path) -> list[Path]:
    """A proxy-validity report (proxy_validity.md, .csv, .png): the stored per-architecture table, the
    settings from its command line (with today's defaults for the options not given, e.g. lr)."""
    import pandas as pd

    from explore.analysis.proxy_validity import ProxyValidity
    from explore.cli.options import BATCH_SIZE, DATA_ROOT, DATASET, DEVICE, MAX_TRAIN, MAX_VAL, SEED, given
    from explore.evaluate import RunBudget
    from explore.report import write_validity_report
    from explore.stats import kendall_tau, spearman_rho

    command = _command_line(folder / "proxy_validity.md")
    params = _command_params(command, "validate-proxy")
    budget = RunBudget(**given(params, DATASET, DATA_ROOT, MAX_TRAIN, MAX_VAL, BATCH_SIZE, DEVICE, SEED))
    table = pd.read_csv(folder / "proxy_validity.csv")
    meta = {"space": params["space"], "archs": params["archs"], "dataset": budget.dataset,
            "max_train": budget.max_train, "max_val": budget.max_val, "batch_size": budget.batch_size,
            "lr": budget.lr, "device": budget.device, "seed": budget.seed}
    result = ProxyValidity(table, kendall_tau(table["short_top1"], table["long_top1"]),
                           spearman_rho(table["short_top1"], table["long_top1"]), params["short_epochs"],
                           params["long_epochs"], meta)
    return write_validity_report(result, out, command)


def _is_proxy_validity(folder: Path) -> bool:
    return (folder / "proxy_validity.csv").exists() and (folder / "proxy_validity.md").exists()


_SUPERNET_VALIDITY_META = ("space", "supernet", "supernet_epochs", "supernet_random_subnets", "supernet_train_seconds",
                            "supernet_command", "seed", "recalibration_images", "dataset", "max_train", "max_val",
                            "batch_size", "lr", "device")
"""The settings a supernet-validity report states (:func:`explore.analysis.supernet_validity.validate_supernet`'s meta)."""


def _supernet_validity(folder: Path, out: Path) -> list[Path]:
    """A supernet-validity report of ``explore validate-proxy --supernet`` (supernet_validity.md, .png; the
    table and ``supernet_validity.json`` copied where ``out`` is another folder): the per-subnet table read
    back as written, τ and ρ computed again from it (:func:`explore.analysis.supernet_validity.rank_table`),
    the command, note, epochs and settings (the cost baseline among them) from the JSON."""
    from explore.analysis.supernet_validity import SupernetValidity, rank_table
    from explore.report.proxy_validity import SUPERNET_VALIDITY_JSON, write_supernet_validity_report

    path = folder / SUPERNET_VALIDITY_JSON
    stored = _stored_json(path, {"command": str, "note": str, "epochs": float, "meta": dict})
    table = _read_as_written(folder / "supernet_validity.csv")
    missing = [c for c in ("tercile", "inherited_top1", "standalone_top1", "standalone_top1_seed2", "params", "macs",
                           "inherited_seconds", "config", "config_hash") if c not in table.columns]
    if missing:
        raise ExploreError("supernet_validity.csv", str(folder / "supernet_validity.csv"),
                           "a table with the columns " + ", ".join(missing))
    absent = [k for k in _SUPERNET_VALIDITY_META if k not in stored["meta"]]
    if absent:
        raise ExploreError(f"{path.name}: meta", ", ".join(sorted(stored["meta"])), "the keys " + ", ".join(absent))
    result = SupernetValidity(table, rank_table(table), stored["epochs"], stored["meta"])
    try:
        return write_supernet_validity_report(result, out, stored["command"], stored["note"])
    except (KeyError, TypeError, ValueError) as exc:  # a setting the report states is missing
        raise ExploreError(path.name, str(path), f"the settings the report states ({exc!r})") from None


def _is_supernet_validity(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("supernet_validity.csv", "supernet_validity.md",
                                                     "supernet_validity.json"))


def _bench_csv(folder: Path) -> Path | None:
    """The one ``bench_<protocol>_<device>.csv`` of an ``explore bench`` (ours vs timm) report, with its ``.md``."""
    return _one_beside(folder, "bench_*.csv", ".md")


def _bench_models(folder: Path, out: Path) -> list[Path]:
    """An ``explore bench`` report (ours vs timm: ``bench_<protocol>_<device>.csv`` and ``.md``): the
    stored rows as written (a column with no value at all was a column of None: no figure there)."""
    import pandas as pd

    from explore.report import write_bench_models

    csv = _bench_csv(folder)
    assert csv is not None  # _is_bench_models said so
    command = _command_line(csv.with_suffix(".md"))
    frame = pd.read_csv(csv)
    for column in frame.columns[frame.isna().all()]:
        frame[column] = pd.Series([None] * len(frame), dtype=object)
    protocols = frame["protocol"].unique().tolist()
    if len(protocols) != 1:
        raise ExploreError("protocol", ", ".join(map(str, protocols)), f"one protocol in {csv}")
    path = write_bench_models(frame, out, protocols[0], command)
    return [path.with_suffix(".md"), path]


def _is_bench_models(folder: Path) -> bool:
    csv = _bench_csv(folder)
    if csv is None:
        return False
    header = csv.read_text(encoding="utf-8").split("\n", 1)[0].split(",")
    return {"model", "protocol", "ours_img_s", "timm_img_s", "device"} <= set(header)


def _stored_json(path: Path, keys: dict[str, type]) -> dict:
    """The object a benchmark stored in ``path`` (JSON), with ``keys`` of the given types (``note``: str or null).

    Raises:
        ExploreError: field named by the file: not JSON, not an object, or a key missing or of another type.
    """
    import json

    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExploreError(path.name, str(path), f"a JSON file ({exc})") from None
    if not isinstance(stored, dict):
        raise ExploreError(path.name, str(path), "a JSON object {" + ", ".join(keys) + "}")
    for key, kind in keys.items():
        value = stored.get(key)
        if key not in stored or not (isinstance(value, kind) or (key == "note" and value is None)):
            raise ExploreError(f"{path.name}: {key}", value, f"a {kind.__name__}" + (" or null" if key == "note" else ""))
    return stored


def _one_beside(folder: Path, pattern: str, *suffixes: str) -> Path | None:
    """The one file of ``folder`` matching ``pattern`` that has a file of each suffix beside it, else None."""
    found = [p for p in sorted(folder.glob(pattern)) if all(p.with_suffix(x).exists() for x in suffixes)]
    return found[0] if len(found) == 1 else None


def _attention_json(folder: Path) -> Path | None:
    return _one_beside(folder, "attention_scaling_*.json", ".csv", ".md")


def _attention_scaling(folder: Path, out: Path) -> list[Path]:
    """An ``explore bench attention`` report (``attention_scaling_<device>.md``, ``.csv``, ``.json``): the
    latencies from the CSV, the settings, command and note from the JSON, the growth exponents computed again."""
    import csv

    from explore.analysis.bench.attention import growth_exponents
    from explore.report.bench import ATTENTION_SETTINGS, attention_scaling_header, render_attention_scaling, \
        write_attention_scaling

    path = _attention_json(folder)
    assert path is not None  # _is_attention_scaling said so
    stored = _stored_json(path, {"command": str, "settings": dict, "note": str})
    settings = stored["settings"]
    missing = [k for k in ATTENTION_SETTINGS if k not in settings]
    if missing:
        raise ExploreError(f"{path.name}: settings", ", ".join(sorted(settings)), f"the keys {', '.join(ATTENTION_SETTINGS)}")
    table = path.with_suffix(".csv")
    per_kind: dict[str, list[tuple[int, float]]] = {}
    with table.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames != ["kind", "tokens", "latency_ms"]:
            raise ExploreError(table.name, str(reader.fieldnames), "the columns kind, tokens, latency_ms")
        for line, row in enumerate(reader, start=2):
            try:
                per_kind.setdefault(row["kind"], []).append((int(row["tokens"]), float(row["latency_ms"])))
            except (TypeError, ValueError):
                raise ExploreError(f"{table.name} line {line}", ",".join(map(str, row.values())),
                                   "a kind, an integer token count and a latency in ms") from None
    tokens = [n for n, _ in next(iter(per_kind.values()), [])]
    for kind, rows in per_kind.items():
        if [n for n, _ in rows] != tokens or not tokens:
            raise ExploreError(f"{table.name}: tokens of {kind}", ",".join(str(n) for n, _ in rows),
                               f"the token counts of every other kind ({','.join(map(str, tokens))})")
    results = {kind: [t for _, t in rows] for kind, rows in per_kind.items()}
    text = render_attention_scaling(tokens, results, growth_exponents(tokens, results),
                                    attention_scaling_header(settings, stored["command"]), stored["note"])
    md = write_attention_scaling(text, tokens, results, out, str(settings["device_type"]), stored)
    return [md, md.with_suffix(".csv"), md.with_suffix(".json")]


def _is_attention_scaling(folder: Path) -> bool:
    return _attention_json(folder) is not None


def _repeatability(folder: Path, out: Path) -> list[Path]:
    """An ``explore bench repeatability`` report (``latency_repeatability.md``; the ``.csv`` and ``.json`` copied
    where ``out`` is another folder): the per-architecture comparison of every load kind read back as
    written, the shares within 5 % and beyond 10 % computed again from it; the command, the runs' wall
    seconds and the compute load's threads from the JSON."""
    import shutil

    from explore.analysis.bench.repeatability import Repeatability
    from explore.report.bench import REPEATABILITY_JSON, render_repeatability

    path = folder / REPEATABILITY_JSON
    stored = _stored_json(path, {"command": str, "quiet_s": float, "loaded_s": dict, "loads": list,
                                 "load_threads": int})
    table = _read_as_written(folder / "latency_repeatability.csv")
    if "load" not in table.columns or list(table["load"].drop_duplicates()) != stored["loads"] \
            or set(stored["loaded_s"]) != set(stored["loads"]):
        raise ExploreError("latency_repeatability.csv", str(folder / "latency_repeatability.csv"),
                           f"a table with a load column holding {stored['loads']} in that order (the JSON's loads)")
    tables = {kind: table[table["load"] == kind].drop(columns=["load"]).reset_index(drop=True)
              for kind in stored["loads"]}
    run = Repeatability(tables, stored["quiet_s"], stored["loaded_s"], stored["load_threads"])
    try:
        text = render_repeatability(run, stored["command"])
    except KeyError as exc:  # a column the report shows is missing
        raise ExploreError("latency_repeatability.csv", str(folder / "latency_repeatability.csv"),
                           f"the columns the report shows ({exc!r})") from None
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "latency_repeatability.md"]
    written[0].write_text(text, encoding="utf-8")
    if out.resolve() != folder.resolve():
        for name in ("latency_repeatability.csv", REPEATABILITY_JSON):
            written.append(Path(shutil.copyfile(folder / name, out / name)))
    return written


def _is_repeatability(folder: Path) -> bool:
    return all((folder / f"latency_repeatability.{ext}").exists() for ext in ("md", "csv", "json"))


def _proxy_json(folder: Path) -> Path | None:
    return _one_beside(folder, "proxy_throughput_*.json", ".md")


def _proxy_throughput(folder: Path, out: Path) -> list[Path]:
    """An ``explore bench proxy`` report (``proxy_throughput_<device>.md`` and ``.json``): both loops' img/s,
    the settings, the command and the note from the JSON."""
    import dataclasses

    from explore.analysis.bench.proxy import ProxyBench
    from explore.report.bench import render_proxy_throughput, write_proxy_throughput

    path = _proxy_json(folder)
    assert path is not None  # _is_proxy_throughput said so
    stored = _stored_json(path, {"command": str, "run": dict, "note": str})
    fields = [f.name for f in dataclasses.fields(ProxyBench)]
    if sorted(stored["run"]) != sorted(fields):
        raise ExploreError(f"{path.name}: run", ", ".join(sorted(stored["run"])), f"the keys {', '.join(fields)}")
    result = ProxyBench(**stored["run"])
    if not all(isinstance(v, (int, float)) and v > 0 for v in (result.plain_img_s, result.proxy_img_s)):
        raise ExploreError(f"{path.name}: run", f"{result.plain_img_s!r}, {result.proxy_img_s!r}",
                           "positive img/s of both loops (plain_img_s, proxy_img_s)")
    text = render_proxy_throughput(result, stored["command"], stored["note"])
    md = write_proxy_throughput(text, out, result.device_type, stored)
    return [md, md.with_suffix(".json")]


def _is_proxy_throughput(folder: Path) -> bool:
    return _proxy_json(folder) is not None


_INT_TEXT = re.compile(r"-?[0-9]+\Z")


def _written(column: pd.Series) -> str:
    """How ``DataFrame.to_csv`` writes one column (its cells, quoted as in a whole table)."""
    return column.to_frame("c").to_csv(index=False, header=False)


def _cell(text: str) -> object:
    """One CSV cell as the value that is written back as the same text: None for an empty cell, a
    bool, int or float where its text is that value's ``str``, else the text."""
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    if _INT_TEXT.match(text) and str(int(text)) == text:
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if value == value and str(value) == text else text


def _column_as_written(texts: list[str]) -> pd.Series:
    """A column of CSV cells as the dtype ``to_csv`` writes back as the same cells.

    Tried in order, the first that writes back identically wins: no value at all -> float NaN (the
    empty figures of trials that did not complete, and text columns of no value: the report only
    asks them ``notna``/``dropna``); only ``True``/``False`` -> bool (object with None where cells are
    empty: ``latency_contended`` of pruned trials); only integers -> int64 (object with None where
    empty: written without ``.0``); only numbers -> float64 with NaN (floats are written by ``repr``,
    so they read back exactly); else each cell by :func:`_cell`; else the text itself.
    """
    import pandas as pd

    raw = pd.Series(texts, dtype=object)
    want = _written(raw)
    empty = [t == "" for t in texts]
    full = [t for t in texts if t != ""]

    def typed() -> pd.Series:
        if not full:
            return pd.Series([float("nan")] * len(texts), dtype=float)
        if set(full) <= {"True", "False"}:
            return pd.Series([None if e else t == "True" for t, e in zip(texts, empty)],
                             dtype=object if any(empty) else bool)
        if all(_INT_TEXT.match(t) for t in full):
            return pd.Series([None if e else int(t) for t, e in zip(texts, empty)],
                             dtype=object if any(empty) else "int64")
        return pd.Series([float("nan") if e else float(t) for t, e in zip(texts, empty)], dtype=float)

    def per_cell() -> pd.Series:
        cells = [_cell(t) for t in texts]
        text_only = all(c is None or isinstance(c, str) for c in cells)
        return pd.Series(cells) if text_only else pd.Series(cells, dtype=object)

    for make in (typed, per_cell):
        try:
            candidate = make()
        except (ValueError, OverflowError):  # text that is no number; an integer beyond int64
            continue
        if _written(candidate) == want:
            return candidate
    return raw


def _read_as_written(path: Path) -> pd.DataFrame:
    """A CSV that ``DataFrame.to_csv(index=False)`` wrote, read back as a frame that writes the same
    bytes again, with the dtypes the report code asks of it (:func:`_column_as_written`).

    Raises:
        ExploreError: field named by the file: not a CSV table, or one that does not read back as written.
    """
    import pandas as pd

    try:
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            return pd.DataFrame()  # the table of a study without trials (to_csv writes one empty line)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except ValueError as exc:  # not UTF-8, or not a CSV table (pandas' ParserError)
        raise ExploreError(path.name, str(path), f"a CSV table ({str(exc).strip()})") from None
    frame = pd.DataFrame({name: _column_as_written(raw[name].tolist()) for name in raw.columns})
    if list(frame.columns) != list(raw.columns) or frame.to_csv(index=False) != text:
        raise ExploreError(path.name, str(path), "a table that reads back as explore report wrote it "
                                                 "(edited by hand, or written by another tool?)")
    return frame


def _study_stored(path: Path) -> tuple[str, dict]:
    """The command and the study meta that a study report's ``study.json`` stores.

    Raises:
        ExploreError: field ``study.json``: not JSON, or not ``{"command": str, "meta": {...}}``.
    """
    import json

    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ExploreError("study.json", str(path), f"a JSON file ({exc})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("command"), str) \
            or not isinstance(stored.get("meta"), dict):
        raise ExploreError("study.json", str(path), 'a {"command": "explore report ...", "meta": {...}} object')
    return stored["command"], stored["meta"]


def _study(folder: Path, out: Path) -> list[Path]:
    """A study report of ``explore report`` (summary.md, trials.csv, pareto.png, study.json; front_seeds.csv,
    front_seed_runs.csv and front_seeds.png, supernet_front.csv where stored): the stored tables as written,
    the settings and the command from ``study.json``, the front re-trained with common seeds computed again
    (:func:`explore.search.front_seeds.front_table` of ``trials.csv`` and ``front_seed_runs.csv``), Kendall τ
    of a supernet front computed again from its two columns.

    Raises:
        ExploreError: field ``front_seed_runs.csv``: ``front_seeds.csv`` without the runs it was computed
            from (its intervals are not recomputable from the folder), or runs that do not read as
            (trial, seed, top-1); the errors of :func:`_study_stored` and :func:`_read_as_written`.
    """
    from explore.report import write_report
    from explore.search.front_seeds import front_table, runs_of_table
    from explore.stats import kendall_tau

    command, meta = _study_stored(folder / "study.json")
    runs_csv = folder / "front_seed_runs.csv"
    if (folder / "front_seeds.csv").exists() and not runs_csv.exists():
        raise ExploreError("front_seed_runs.csv", str(runs_csv), "the runs beside front_seeds.csv (trial, seed, "
                           "top-1 per run): without them the front's intervals are not recomputable from the folder, "
                           "so the report cannot be rendered again; 'explore report' writes both from the study's storage")
    frame = _read_as_written(folder / "trials.csv")
    runs_table = _read_as_written(runs_csv) if runs_csv.exists() else None
    front = front_table(frame, runs_of_table(runs_table, runs_csv.name)) if runs_table is not None else None
    alone = _read_as_written(folder / "supernet_front.csv") if (folder / "supernet_front.csv").exists() else None
    if alone is not None and not alone.empty:
        alone.attrs["kendall_tau"] = kendall_tau(alone["inherited top-1 (%)"], alone["stand-alone top-1 (%)"])
    paths = write_report(frame, out, meta, command, front, alone, front_seed_runs=runs_table)
    return [p for p in (paths.markdown, paths.csv, paths.png, paths.front_csv, paths.front_runs_csv,
                        paths.front_png, paths.supernet_front_csv, paths.study_json) if p is not None]


def _is_study(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("summary.md", "trials.csv", "study.json"))


_IMPORTANCE_DATA = ("comparison.csv", "retained.csv", "scores.csv", "sensitivity.csv", "suggested_config.json")
"""The data files of an importance report beside ``summary.md`` and ``importance.json``."""


def _importance(folder: Path, out: Path) -> list[Path]:
    """An ``explore importance`` report (summary.md, retained.png; the data copied where ``out`` is another
    folder): the tables read back as written, the settings, plan, trend, back-ends, device, phase times,
    command and note from ``importance.json``, the configs from it and ``suggested_config.json``."""
    import shutil
    import types

    import pandas as pd

    from explore.arch import ArchConfig
    from explore.report.importance import IMPORTANCE_JSON, STORED_SETTINGS, write_importance_summary

    path = folder / IMPORTANCE_JSON
    stored = _stored_json(path, {"command": str, "name": str, "settings": dict, "config": dict, "plan": dict,
                                 "trend": dict, "backends": dict, "device_name": str, "seconds": dict, "note": str})
    for key, wanted in (("settings", STORED_SETTINGS),
                        ("plan", ("removed_params", "prunable_params", "removed_macs", "prunable_macs", "rank"))):
        missing = [k for k in wanted if k not in stored[key]]
        if missing:
            raise ExploreError(f"{path.name}: {key}", ", ".join(sorted(stored[key])), f"the keys {', '.join(wanted)}")
    for name in _IMPORTANCE_DATA:
        if not (folder / name).exists():
            raise ExploreError("folder", str(folder), f"an importance report with {name} beside summary.md")
    try:
        config = ArchConfig.from_dict(stored["config"])
    except ExploreError as exc:
        raise ExploreError(f"{path.name}: config.{exc.field}", exc.value, exc.expected) from None
    suggested = ArchConfig.from_json((folder / "suggested_config.json").read_text(encoding="utf-8"),
                                     source="suggested_config.json")
    enqueued = None
    if (folder / "enqueued.json").exists():
        enqueued = _stored_json(folder / "enqueued.json", {"run_dir": str, "params": dict, "notes": list})
    try:
        scores = pd.read_csv(folder / "scores.csv", usecols=["unit", "source"], dtype=str, keep_default_na=False)
    except ValueError as exc:  # a column missing, or not a CSV table
        raise ExploreError("scores.csv", str(folder / "scores.csv"), f"a table with unit and source ({exc})") from None
    result = types.SimpleNamespace(
        name=stored["name"], settings=types.SimpleNamespace(**stored["settings"]),
        plan=types.SimpleNamespace(**stored["plan"]), trend=stored["trend"], backends=stored["backends"],
        device_name=stored["device_name"], seconds=stored["seconds"], enqueue_error=stored.get("enqueue_error"),
        config=config, suggested=suggested, enqueued=enqueued, scores=scores,
        comparison=_read_as_written(folder / "comparison.csv"), retained=_read_as_written(folder / "retained.csv"),
        sensitivity=_read_as_written(folder / "sensitivity.csv"))
    try:
        summary = write_importance_summary(result, out, stored["command"], stored["note"])  # type: ignore[arg-type]
    except (KeyError, TypeError, AttributeError) as exc:  # a column or key the summary needs is missing
        raise ExploreError(path.name, str(path), f"the stored tables and keys the summary shows ({exc!r})") from None
    written = [summary, out / "retained.png"]
    if out.resolve() != folder.resolve():
        for name in (*_IMPORTANCE_DATA, IMPORTANCE_JSON, *(("enqueued.json",) if enqueued is not None else ())):
            written.append(Path(shutil.copyfile(folder / name, out / name)))
    return written


def _is_importance(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("summary.md", "importance.json", "retained.csv"))


def _importance_runs(folder: Path, out: Path) -> list[Path]:
    """A folder of ``explore importance`` runs, one per sub-folder (each rendered by :func:`_importance` into
    ``out/<name>``), with a ``README.md`` index and the runs' ``--model`` files beside them (copied where
    ``out`` is another folder; the index holds the commands and no figure of its own)."""
    import shutil

    written = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        written += _importance(sub, out / sub.name)  # its summary's writer creates the folder
    if out.resolve() != folder.resolve():
        for path in sorted([folder / "README.md", *folder.glob("*.json")]):
            written.append(Path(shutil.copyfile(path, out / path.name)))
    return written


def _is_importance_runs(folder: Path) -> bool:
    subs = [p for p in folder.iterdir() if p.is_dir()]
    return (folder / "README.md").exists() and bool(subs) and all(_is_importance(p) for p in subs)


_PREDICTION_COLUMNS = ("arch", "summary", "params", "macs", "measured (ms/img)", "predicted (ms/img)", "error (%)",
                       "recalibrated (ms/img)", "recalibrated error (%)", "MACs fit (ms/img)", "MACs error (%)",
                       "contended", "config")
"""The columns of a latency-table evaluation's ``predictions.csv`` (:func:`explore.measure.latency_table_jobs._row`)."""

_EVALUATION_META = {"table": str, "table_path": str, "space": dict, "protocol": dict, "device": str,
                    "table_device": str, "archs": int, "rounds": int, "table_units": int, "table_models": int,
                    "sampling": dict, "versions": dict, "settings": dict}
"""Keys (and JSON types) of the meta an ``evaluation.json`` must store for its summary to render."""


def _evaluation_stored(path: Path) -> dict:
    """The record a latency-table evaluation's ``evaluation.json`` stores
    (:func:`explore.report.latency_table.evaluation_record`), checked field by field.

    Raises:
        ExploreError: field ``evaluation.json``: not JSON, or a field missing or of another type
            (named in the message).
    """
    import json
    import math

    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not UTF-8, or not JSON
        raise ExploreError("evaluation.json", str(path), f"a JSON file ({exc})") from None

    def bad(what: str) -> ExploreError:
        return ExploreError("evaluation.json", str(path), f"a latency-table evaluation record: {what}")

    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    if not isinstance(stored, dict):
        raise bad("a JSON object")
    for key, kind in (("command", str), ("regressor", str), ("choice", dict), ("differences", list), ("meta", dict),
                      ("correction", dict), ("calibration", list)):
        if not isinstance(stored.get(key), kind):
            raise bad(f"'{key}' of type {kind.__name__} (got {stored.get(key)!r:.60})")
    if not stored["command"].startswith("explore latency-table "):
        raise bad(f"'command' an 'explore latency-table ...' command line (got {stored['command']!r:.60})")
    if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
               for k, v in stored["choice"].items()):
        raise bad("'choice' regressor -> calibration MAPE (%) numbers")
    if not all(isinstance(d, str) for d in stored["differences"]):
        raise bad("'differences' a list of texts")
    meta = stored["meta"]
    for key, kind in _EVALUATION_META.items():
        if not isinstance(meta.get(key), kind) or (kind is int and isinstance(meta.get(key), bool)):
            raise bad(f"meta '{key}' of type {kind.__name__} (got {meta.get(key)!r:.60})")
    if meta.get("seed") is None and not isinstance(meta.get("trials"), list):
        raise bad("meta 'seed' (sampled architectures) or 'trials' (a study's trial numbers)")
    calibration = stored["calibration"]
    if len(calibration) != meta["table_models"]:
        raise bad(f"one calibration row per calibration model of the table ({meta['table_models']}; got "
                  f"{len(calibration)})")
    for i, row in enumerate(calibration):
        if not isinstance(row, dict) or not all(number(row.get(k)) and row[k] > 0
                                                for k in ("table (ms/img)", "session (ms/img)")):
            raise bad(f"calibration row {i} with positive 'table (ms/img)' and 'session (ms/img)' numbers")
    return stored


def _latency_table_evaluation(folder: Path, out: Path) -> list[Path]:
    """A latency-table evaluation report of ``explore latency-table --evaluate`` (summary.md,
    predictions.csv, predicted_vs_measured.png, evaluation.json): the stored rows as written, the
    settings, command, corrections and this session's re-timing of the calibration models from
    ``evaluation.json``; the accuracy figures and the noise floor computed again from those
    (:func:`explore.measure.latency_table_jobs.evaluation_stats`). The table file is not read.

    Raises:
        ExploreError: field ``evaluation.json`` (:func:`_evaluation_stored`) or ``predictions.csv``
            (not as written, without rows, a column missing, or not one row per architecture of the
            meta); nothing is written.
    """
    from explore.measure.latency_table_jobs import evaluation_stats
    from explore.report.latency_table import render_table_evaluation, write_table_evaluation

    stored = _evaluation_stored(folder / "evaluation.json")
    csv = folder / "predictions.csv"
    rows = _read_as_written(csv)
    missing = [c for c in _PREDICTION_COLUMNS if c not in rows.columns]
    if missing or len(rows) != stored["meta"]["archs"]:
        raise ExploreError("predictions.csv", str(csv), "one row per held-out architecture "
                           f"({stored['meta']['archs']}, as evaluation.json says; got {len(rows)}) with the columns "
                           "of an evaluation"
                           + (f" (missing: {', '.join(missing)})" if missing else ""))
    meta, command, regressor, choice = stored["meta"], stored["command"], stored["regressor"], stored["choice"]
    try:
        stats = evaluation_stats(rows, stored["calibration"])
        render_table_evaluation(rows, stats, regressor, choice, stored["differences"], meta, command)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a column of text where numbers belong, ...
        raise ExploreError("predictions.csv", str(csv),
                           f"rows that render with evaluation.json as an evaluation ({exc})") from None
    md = write_table_evaluation(rows, stats, regressor, choice, stored["differences"], meta, out, command,
                                calibration=stored["calibration"], correction=stored["correction"])
    return [md, out / "predictions.csv", out / "predicted_vs_measured.png", out / "evaluation.json"]


def _is_latency_table_evaluation(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("summary.md", "predictions.csv", "evaluation.json"))


def _schedules(folder: Path, out: Path) -> list[Path]:
    """An ``explore compare-schedules`` report (summary.md, hv_vs_budget.png; the tables copied where ``out``
    is another folder): the runs, fronts and HV curves read back as written, the summary (mean ± std, budget
    ratios) and the rung-to-rung τ computed again from ``curves.csv`` and ``rung_pairs.csv``; command,
    settings and reference point from ``comparison.json``."""
    import shutil

    import pandas as pd

    from explore.report.schedules import COMPARISON_JSON, SCHEDULE_TABLES, render_schedule_files, write_schedule_tables
    from explore.search.schedule_comparison import RUNG_PAIR_COLUMNS, rung_agreement, summarise

    path = folder / COMPARISON_JSON
    stored = _stored_json(path, {"command": str, "settings": dict, "reference": list})
    meta, reference = stored["settings"], stored["reference"]
    for key in ("space", "schedules", "seeds"):
        if not isinstance(meta.get(key), (str if key == "space" else list)):
            raise ExploreError(f"{path.name}: settings.{key}", meta.get(key), "the comparison's " + key)
    if len(reference) != 2 or not all(isinstance(v, (int, float)) for v in reference):
        raise ExploreError(f"{path.name}: reference", reference, "[top-1 %, latency ms/img]")
    tables = {}
    for name in SCHEDULE_TABLES:
        if not (folder / name).exists():
            raise ExploreError("folder", str(folder), f"a compare-schedules report with {name} beside summary.md")
        tables[name] = _read_as_written(folder / name)
    runs, curves, fronts, pairs = (tables[name] for name in SCHEDULE_TABLES)
    if len(pairs) and list(pairs.columns) != list(RUNG_PAIR_COLUMNS):
        raise ExploreError("rung_pairs.csv", ", ".join(pairs.columns), "the columns " + ", ".join(RUNG_PAIR_COLUMNS))
    try:
        by_run = {key: group.drop(columns=["schedule", "seed"]).reset_index(drop=True)
                  for key, group in curves.groupby(["schedule", "seed"], sort=False)}
        summary = summarise(runs, by_run, meta["schedules"], meta["seeds"])
        agreement = rung_agreement(pairs if len(pairs) else pd.DataFrame(columns=list(RUNG_PAIR_COLUMNS)),
                                   meta["schedules"])
        paths = render_schedule_files(runs, curves, fronts, summary, (reference[0], reference[1]), meta,
                                      stored["command"], agreement, out)
    except (KeyError, TypeError, AttributeError) as exc:  # a column, run or setting the summary needs is missing
        raise ExploreError(path.name, str(path), f"the stored tables and settings the summary shows ({exc!r})") from None
    written = [paths.markdown, paths.png]
    if out.resolve() != folder.resolve():
        write_schedule_tables(runs, curves, fronts, pairs, out)
        written += [*(out / name for name in SCHEDULE_TABLES), Path(shutil.copyfile(path, out / COMPARISON_JSON))]
    return written


def _is_schedules(folder: Path) -> bool:
    return all((folder / name).exists() for name in ("summary.md", "comparison.json", "curves.csv"))


RENDERERS: dict[str, tuple[Callable[[Path], bool], Callable[[Path, Path], list[Path]]]] = {
    "ablation": (_is_ablation, _ablation),
    "proxy validity": (_is_proxy_validity, _proxy_validity),
    "supernet validity": (_is_supernet_validity, _supernet_validity),
    "bench (ours vs timm)": (_is_bench_models, _bench_models),
    "bench attention": (_is_attention_scaling, _attention_scaling),
    "bench proxy": (_is_proxy_throughput, _proxy_throughput),
    "bench repeatability": (_is_repeatability, _repeatability),
    "study": (_is_study, _study),
    "importance": (_is_importance, _importance),
    "importance runs": (_is_importance_runs, _importance_runs),
    "latency-table evaluation": (_is_latency_table_evaluation, _latency_table_evaluation),
    "compare-schedules": (_is_schedules, _schedules),
}
"""Report kind -> (does a folder hold one, render it from ``folder`` into ``out``)."""


def report_kind(folder: str | Path) -> str | None:
    """The kind of report stored in ``folder`` (a key of :data:`RENDERERS`), or None when no renderer knows it."""
    return next((kind for kind, (holds, _) in RENDERERS.items() if holds(Path(folder))), None)


def rerender_folder(folder: str | Path, out: str | Path | None = None) -> tuple[str, list[Path]]:
    """Render the report in ``folder`` again from its stored data into ``out`` (default: ``folder``).

    Returns:
        (its kind, the files written).

    Raises:
        ExploreError: no such folder, no renderer for its kind, or stored data that cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExploreError("folder", str(folder), "an existing report folder (no such report folder)")
    kind = report_kind(folder)
    if kind is None:
        raise ExploreError("folder", str(folder), f"a report of a kind with a renderer ({', '.join(RENDERERS)}): no "
                           "renderer knows this kind of report yet; re-run the command on its 'Made by' line instead")
    target = Path(out) if out is not None else folder
    return kind, RENDERERS[kind][1](folder, target)


@app.command()
def rerender(
    folders: Annotated[list[str], typer.Argument(help="Report folders, e.g. reports/ablation_cga_table6_cpu.")],
    out: Annotated[Optional[str], typer.Option(help="Write here instead of into the folder (one folder only).")] = None,
) -> None:
    """Render committed reports again from the data stored beside them: no training, no timing."""
    if out is not None and len(folders) > 1:
        raise fail(ExploreError("--out", out, f"one folder with --out (got {len(folders)} folders)"))
    for folder in folders:
        try:
            kind, written = rerender_folder(folder, out)
        except ExploreError as exc:
            raise fail(exc) from None
        console.print(f"{folder}: {kind} report, wrote {', '.join(p.name for p in written)}", highlight=False)
