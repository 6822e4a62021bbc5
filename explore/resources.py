"""Where the built-in data files live: ``search_spaces/*.toml`` and ``studies/*.toml``.

They are found in the source checkout (next to the package) and, for a non-editable install, in
``<prefix>/share/explore/<folder>`` (installed as data files by ``pyproject.toml``). A user's own
file path always wins over a built-in name.
"""

from __future__ import annotations

import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

from explore.errors import ExploreError

__all__ = ["builtin_dirs", "resolve_builtin", "read_toml"]


def builtin_dirs(folder: str) -> list[Path]:
    """Existing folders holding the built-in ``folder`` files (``"search_spaces"`` or ``"studies"``):
    the source checkout's first, then the installed copy."""
    dirs = [Path(__file__).resolve().parent.parent / folder]
    for prefix in {sys.prefix, sysconfig.get_path("data")}:
        dirs.append(Path(prefix) / "share" / "explore" / folder)
    return [d for d in dirs if d.is_dir()]


def resolve_builtin(name: str, folder: str, field: str, error: type[ExploreError] = ExploreError) -> Path:
    """Turn a CLI argument into a TOML file: an existing path as given, else a built-in name.

    Args:
        name: a file path, or the stem of a built-in file (``cga`` -> ``search_spaces/cga.toml``).
        folder: ``"search_spaces"`` or ``"studies"``.
        field: the CLI field named in errors (``--space``, ``RECIPE``).
        error: the :class:`ExploreError` subclass to raise.

    Raises:
        error: neither a file nor a known name (the message lists the known names).
    """
    path = Path(name)
    if path.is_file():
        return path
    known: dict[str, Path] = {}
    for directory in builtin_dirs(folder):
        for file in sorted(directory.glob("*.toml")):
            known.setdefault(file.stem, file)
    if name in known:
        return known[name]
    if path.suffix or "/" in name:
        raise error(field, name, "no such file")
    kind = "space" if folder == "search_spaces" else "recipe"
    raise error(field, name, f"unknown {kind}; expected a file path or one of {', '.join(sorted(known)) or '(none found)'}")


def read_toml(path: Path, error: type[ExploreError] = ExploreError) -> dict[str, Any]:
    """Parse a TOML file as data.

    Raises:
        error: the file cannot be read or is not valid TOML (field: the path).
    """
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise error(str(path), "(file)", f"malformed TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(str(path), "(file)", f"cannot read: {exc}") from None
