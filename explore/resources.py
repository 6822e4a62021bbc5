"""Files and folders: where the built-in data files live, how reports name them, safe folder names,
files written atomically.

The built-in ``search_spaces/*.toml`` and ``studies/*.toml`` are found in the source checkout (next
to the package) and, for a non-editable install, in ``<prefix>/share/explore/<folder>`` (installed
as data files by ``pyproject.toml``). A user's own file path always wins over a built-in name.

A base module: any stage may import it (it imports only :mod:`explore.errors`).
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from explore.errors import ExploreError

__all__ = ["builtin_dirs", "resolve_builtin", "display_path", "read_toml", "safe_name", "write_atomically"]


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
        name: a file path, the stem of a built-in file (``cga`` -> ``search_spaces/cga.toml``), or
            ``<folder>/<file>.toml`` of a built-in file from any directory (see :func:`display_path`).
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
    if path.parent.as_posix() == folder and path.suffix == ".toml" and path.stem in known:
        return known[path.stem]  # "search_spaces/cga.toml", as reports and studies name a built-in file
    if path.suffix or "/" in name:
        raise error(field, name, "no such file")
    kind = "space" if folder == "search_spaces" else "recipe"
    raise error(field, name, f"unknown {kind}; expected a file path or one of {', '.join(sorted(known)) or '(none found)'}")


def display_path(path: str | Path, folder: str) -> str:
    """How reports and stored settings name a space or recipe file: never an absolute path.

    A built-in file shows as ``<folder>/<file>`` (``search_spaces/cga.toml``, which
    :func:`resolve_builtin` finds again from any directory), a file under the current directory
    relative to it, any other file by its name only.

    Args:
        path: the file (as resolved by :func:`resolve_builtin`).
        folder: ``"search_spaces"`` or ``"studies"``.

    Returns:
        A POSIX-style relative path or a bare file name.
    """
    resolved = Path(path).resolve()
    if any(resolved.parent == directory.resolve() for directory in builtin_dirs(folder)):
        return f"{folder}/{resolved.name}"
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.name


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


def safe_name(name: str, fallback: str = "study") -> str:
    """A file or folder name made from a study or model name that cannot leave its parent folder:
    letters, digits, ``.``, ``_`` and ``-`` only (others become ``_``), no leading dot, at most 100
    characters; ``fallback`` if nothing is left."""
    return (re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or fallback)[:100]


def write_atomically(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Write a file so that a reader or a crash never sees it half-written: ``write`` fills a
    temporary file beside ``path`` (``<name>.tmp``), which is then renamed over ``path`` (atomic on
    one file system). The parent folder is made if missing.

    Args:
        path: the file to write.
        write: called with the temporary file's path; writes the content there.

    Returns:
        ``path``.

    Raises:
        OSError: the folder or file cannot be written (the temporary file is left, ``path`` is not touched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path
