"""The acceptance report: one line per check, each check's command, summary and table, and
``checks.csv``; from the typed results of :func:`explore.cli.acceptance.run_acceptance`
(:class:`CheckResult`, :class:`AcceptanceRun`: the record of a run, defined where it is rendered,
since the runner sits above every stage in the CLI)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CheckResult", "AcceptanceRun", "render_acceptance", "write_acceptance_report"]


@dataclass
class CheckResult:
    """The outcome of one check.

    Attributes:
        name: the check's name (``study``, ``bench-throughput`` ...).
        status: ``PASS``, ``FAIL`` or ``SKIP`` (not applicable on this device; not a failure).
        seconds: wall-clock time of the check (s).
        summary: one line of what was measured or what went wrong.
        command: the command line the check ran (paths relative to the working directory).
        details: figures for the report (a table as a list of dicts, or key/values).
    """

    name: str
    status: str
    seconds: float
    summary: str
    command: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def line(self) -> str:
        """The check's one line: status, name, seconds, summary."""
        return f"{self.status:4} {self.name:17} {self.seconds:6.1f} s  {self.summary}"


@dataclass(frozen=True)
class AcceptanceRun:
    """What an acceptance run found (:func:`explore.cli.acceptance.run_acceptance`): the checks, the
    machine, the command, the wall time (s) and the report folder (:func:`write_acceptance_report`
    writes ``report.md`` and ``checks.csv`` there)."""

    results: list[CheckResult]
    environment: dict[str, str]
    command: str
    wall_s: float
    out: Path

    @property
    def failed(self) -> int:
        """Checks that failed (a SKIP is not a failure)."""
        return sum(r.status == "FAIL" for r in self.results)


def _cell(value: Any) -> str:
    """A table cell: numbers with 4 significant digits, the rest as text."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).replace("|", "/")
    if number.is_integer() and abs(number) < 1e9:
        return str(int(number))
    return f"{number:.4g}"


def render_acceptance(results: list[CheckResult], env: dict[str, str], command: str, wall_s: float) -> str:
    """``report.md`` of an acceptance run: the result, the machine, a line per check, then each check's
    command, summary and table."""
    status = "PASSED" if all(r.status != "FAIL" for r in results) else "FAILED"
    lines = [f"# Acceptance run: {env.get('device', '?')}", "", f"Command: `{command}`", "",
             "Each check's command below ran in this report's folder (its paths are relative to it).", "",
             f"Result: **{status}** in {wall_s:.0f} s. "
             + ", ".join(f"{k} {v}" for k, v in env.items()), "",
             "| check | status | seconds | what was measured |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.summary.replace('|', '/')} |" for r in results]
    for r in results:
        lines += ["", f"## {r.name}", "", f"`{r.command}`" if r.command else "", "", r.summary]
        table = r.details.get("table")
        if table:
            keys = list(table[0])
            lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |" for row in table]
        rest = {k: v for k, v in r.details.items() if k != "table"}
        if rest:
            lines += ["", "```", json.dumps(rest, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def write_acceptance_report(run: AcceptanceRun) -> Path:
    """Write ``report.md`` and ``checks.csv`` of an acceptance run into its folder; returns the
    markdown's path."""
    path = run.out / "report.md"
    path.write_text(render_acceptance(run.results, run.environment, run.command, run.wall_s), encoding="utf-8")
    with (run.out / "checks.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["check", "status", "seconds", "summary", "command"])
        for r in run.results:
            writer.writerow([r.name, r.status, f"{r.seconds:.1f}", r.summary, r.command])
    return path
