"""Imports point down the pipeline only (../shared/DESIGN.md, README "Layout").

Every ``explore`` module is parsed (not imported) and each ``import explore.X`` / ``from explore.X
import ...`` it makes, at module level or inside a function, is checked against the stages its own
stage may use. A new upward import (``nn`` reaching into ``search``, ``report`` importing a model
builder) fails here with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "explore"

# base modules any stage may import
BASE = {"errors", "resources", "device", "reproduce", "resolution", "stats", "records"}

# stage -> the stages below it that it may import (besides itself and BASE); the transitive closure
# of the pipeline: space -> arch -> nn -> measure / train -> evaluate -> search -> analysis; report
# works from stored tables (no models); cli sits on top of everything.
BELOW: dict[str, set[str]] = {
    "errors": set(),
    "resources": {"errors"},
    "resolution": {"errors"},
    "device": {"errors"},
    "reproduce": set(),
    "stats": set(),
    "records": {"errors"},
    "arch": set(),
    "nn": {"arch"},
    "space": {"arch"},
    "measure": {"arch", "nn", "space"},
    "train": {"arch", "nn"},
    "evaluate": {"arch", "nn", "measure", "train"},
    "search": {"arch", "nn", "space", "measure", "train", "evaluate"},
    "analysis": {"arch", "nn", "space", "measure", "train", "evaluate", "search"},
    "report": set(),
    "cli": {"arch", "nn", "space", "measure", "train", "evaluate", "search", "analysis", "report"},
}


def _stage(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_stages(tree: ast.AST) -> list[tuple[int, str]]:
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
                found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_belongs_to_a_known_stage():
    unknown = sorted({_stage(p) for p in MODULES} - set(BELOW) - {"__main__"})
    assert not unknown, f"modules outside the pipeline's stages: {unknown}; add them to BELOW and README 'Layout'"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_pipeline(path: Path):
    stage = _stage(path)
    allowed = BELOW.get(stage, set()) | BASE | {stage}
    if stage in BASE:  # a base module only uses what BELOW names for it
        allowed = BELOW[stage] | {stage}
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} imports explore.{target}"
             for line, target in _imported_stages(tree) if target not in allowed]
    assert not wrong, f"stage {stage!r} may import only {sorted(allowed)}:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path):
    """The parser finds both import forms, so an upward import cannot slip past as unparsed."""
    source = "from explore.search import run_study\nimport explore.report.study\ndef f():\n    from explore import cli\n"
    stages = [target for _, target in _imported_stages(ast.parse(source))]
    assert stages == ["search", "report", "cli"]
