"""What every command shares: the typer app, the consoles, the one ``error:`` line and list options.
The options several commands take are declared once in :mod:`explore.cli.options`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from explore.errors import ExploreError

T = TypeVar("T")

__all__ = ["app", "console", "err_console", "fail", "run_or_exit", "names", "int_list", "float_list", "print_table"]

# no locals in tracebacks: they would print storage URLs with their passwords
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Architecture exploration and ablation for efficient vision transformers.")
# wide tables when the output is a file or a pipe (rich falls back to 80 columns there)
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def fail(exc: Exception) -> typer.Exit:
    """Print ``error: <message>`` (one line, to stderr) and return the exit to raise (code 1)."""
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


@app.callback()
def _check_environment() -> None:
    """Settings read from the environment are checked before any command runs (one ``error:`` line,
    nothing written), not when a measurement first uses them."""
    from explore.device import lock_dir
    from explore.measure.protocols import contention_pauses

    try:
        contention_pauses()
        lock_dir()
    except ExploreError as exc:
        raise fail(exc) from None


def run_or_exit(work: Callable[[], T], interrupted: str) -> T:
    """``work()``; an :class:`ExploreError` becomes the one ``error:`` line (exit 1), Ctrl-C prints
    ``interrupted: <interrupted>`` and exits with code 130."""
    try:
        return work()
    except ExploreError as exc:
        raise fail(exc) from None
    except KeyboardInterrupt:
        err_console.print(f"interrupted: {interrupted}", highlight=False)
        raise typer.Exit(code=130) from None


def names(text: str) -> list[str]:
    """A comma-separated option as a list of its non-empty, stripped items."""
    return [item.strip() for item in text.split(",") if item.strip()]


def int_list(text: Optional[str], field: str) -> Optional[list[int]]:
    """A comma-separated option of integers (None stays None).

    Raises:
        typer.Exit: after the ``error:`` line naming ``field``, when an item is not an integer.
    """
    return _number_list(text, field, int, "integers, e.g. 0,1")


def float_list(text: Optional[str], field: str) -> Optional[list[float]]:
    """A comma-separated option of numbers (None stays None).

    Raises:
        typer.Exit: after the ``error:`` line naming ``field``, when an item is not a number.
    """
    return _number_list(text, field, float, "numbers, e.g. 0.5,1,2")


def _number_list(text: Optional[str], field: str, kind: Callable[[str], T], example: str) -> Optional[list[T]]:
    if text is None:
        return None
    try:
        return [kind(v) for v in names(text)]
    except ValueError:
        raise fail(ExploreError(field, text, f"expected comma-separated {example}")) from None


def print_table(rows: list[list[str]], header: list[str], title: str | None = None) -> None:
    """A rich table of text cells on the console."""
    table = Table(*header, title=title)
    for row in rows:
        table.add_row(*row)
    console.print(table)
