"""Imports point down the pipeline only, as the README's "Layout" table says (../shared/DESIGN.md).

The table is the one source: its "may import" column is parsed into the stages each stage may use
(and, transitively, what those may use), so the table and this test cannot disagree. Every
``explore`` module is parsed (not imported) and each ``import explore.X`` / ``from explore.X import
...`` it makes, at module level or inside a function, is checked against its stage's row. A new
upward import (``nn`` reaching into ``search``, ``report`` importing a model builder) fails here
with the file and line. ``report`` may name other stages' types in annotations only: imports under
``if TYPE_CHECKING:`` are checked against the row's "for annotations only" part.

The table is looked up in README.md and, where the docs site holds it, in ``docs/**/*.md``; where
it is in both, the two must be the same.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "explore"
HEADER = "| path | what | may import |"


def _layout_tables() -> dict[Path, list[tuple[str, str]]]:
    """Every copy of the layout table: file -> its (path, may import) rows."""
    found = {}
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        if not doc.is_file():
            continue
        lines = doc.read_text(encoding="utf-8").splitlines()
        if HEADER not in lines:
            continue
        rows = []
        for line in lines[lines.index(HEADER) + 2:]:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows.append((cells[0], cells[-1]))
        found[doc] = rows
    return found


def _names(text: str) -> list[str]:
    text = re.sub(r"\([^)]*\)", "", text).replace("`", "")
    return [n.strip() for n in text.split(",") if n.strip() and n.strip() != "—"]


def parse_layout(rows: list[tuple[str, str]]) -> tuple[set[str], dict[str, set[str]], dict[str, set[str]]]:
    """(base modules, stage -> stages it may import directly, stage -> stages it may name in annotations only)."""
    base: set[str] = set()
    direct: dict[str, set[str]] = {}
    annotations: dict[str, set[str]] = {}
    for path_cell, may in rows:
        stages = [m.group(1) for m in re.finditer(r"`explore/(\w+)(?:\.py|/)`", path_cell)]
        if not stages:
            continue  # tests/, search_spaces/, ...: not part of the package
        runtime, _, typed = may.partition(";")
        typed = typed.strip().removeprefix("for annotations only:")
        if len(stages) > 1:
            base |= set(stages)
        for stage in stages:
            direct[stage] = set(_names(runtime))
            annotations[stage] = set(_names(typed))
    return base, direct, annotations


def allowed_imports(base: set[str], direct: dict[str, set[str]]) -> dict[str, set[str]]:
    """stage -> every stage it may import: its row, expanded (``base``, ``everything``) and closed
    transitively (a stage may use what the stages it names may use)."""
    def expand(names: set[str], stage: str) -> set[str]:
        out = set()
        for name in names:
            out |= base if name == "base" else (set(direct) - {stage} if name == "everything" else {name})
        return out

    closed = {stage: expand(names, stage) for stage, names in direct.items()}
    changed = True
    while changed:
        changed = False
        for stage, names in closed.items():
            more = set().union(*(closed.get(n, set()) for n in names)) - names - {stage}
            if more:
                names |= more
                changed = True
    return closed


TABLES = _layout_tables()
ROWS = next(iter(TABLES.values()), [])
BASE, DIRECT, ANNOTATIONS = parse_layout(ROWS)
ALLOWED = allowed_imports(BASE, DIRECT)


def _stage(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (getattr(node.test, "id", None) == "TYPE_CHECKING"
                                         or getattr(node.test, "attr", None) == "TYPE_CHECKING"):
            inside |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return inside


def _imported_stages(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, stage, for annotations only) of every ``explore`` import."""
    typed = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "explore":  # from explore import nn
                names = [f"explore.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "explore" and len(parts) > 1:
                found.append((node.lineno, parts[1], id(node) in typed))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_the_layout_table_is_found_and_every_copy_agrees():
    assert TABLES, f"no layout table ({HEADER}) in README.md or docs/"
    assert len({tuple(rows) for rows in TABLES.values()}) == 1, f"the layout tables differ: {sorted(map(str, TABLES))}"
    assert {"errors", "stats", "records"} <= BASE and {"arch", "search", "report", "cli"} <= set(DIRECT)


def test_every_module_belongs_to_a_stage_of_the_table():
    unknown = sorted({_stage(p) for p in MODULES} - set(DIRECT) - {"__main__"})
    assert not unknown, f"modules outside the layout table's stages: {unknown}; add them to README 'Layout'"


def test_the_tests_mirror_the_package():
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir()} - {"fixtures", "tools", "__pycache__"}
    assert folders <= set(DIRECT), f"test folders that are no stage of the package: {sorted(folders - set(DIRECT))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_pipeline(path: Path):
    stage = _stage(path)
    allowed = ALLOWED.get(stage, set()) | ({stage} if stage in BASE else BASE | {stage})
    typed = allowed | ANNOTATIONS.get(stage, set())
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} imports explore.{target}"
             for line, target, annotation in _imported_stages(tree) if target not in (typed if annotation else allowed)]
    assert not wrong, f"stage {stage!r} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import():
    """The parser finds both import forms and tells annotation-only imports apart, so an upward
    import cannot slip past as unparsed."""
    source = ("from typing import TYPE_CHECKING\nfrom explore.search import run_study\nimport explore.report.study\n"
              "def f():\n    from explore import cli\nif TYPE_CHECKING:\n    from explore.analysis import X\n")
    found = [(target, typed) for _, target, typed in _imported_stages(ast.parse(source))]
    assert sorted(found) == [("analysis", True), ("cli", False), ("report", False), ("search", False)]


def test_the_table_parser_closes_the_rules():
    rows = [("`explore/errors.py`, `explore/stats.py`", "errors"), ("`explore/arch/`", "base"),
            ("`explore/nn/`", "arch"), ("`explore/report/`", "base; for annotations only: nn"),
            ("`explore/cli/`", "everything"), ("`tests/`", "")]
    base, direct, annotations = parse_layout(rows)
    allowed = allowed_imports(base, direct)
    assert base == {"errors", "stats"} and annotations["report"] == {"nn"}
    assert allowed["nn"] == {"arch", "errors", "stats"} and allowed["report"] == {"errors", "stats"}
    assert allowed["cli"] == {"errors", "stats", "arch", "nn", "report"}
