"""What `pip install .` brings: every third-party module the package imports is a declared
dependency, and a module missing at run time is one `error:` line, not a traceback."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from typer.testing import CliRunner

from explore.cli import app

ROOT = Path(__file__).resolve().parent.parent
OPTIONAL = {"timm": "timm", "psycopg": "postgres"}
"""Modules of the optional extras -> extra: allowed only where imported lazily (inside a function)
or guarded (inside ``try: ... except ImportError``)."""
INDIRECT = {"onnx": "torch.onnx.export (the onnx-cpu protocol) imports it"}
"""Modules that the package needs without importing them itself."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_normalise(re.match(r"[A-Za-z0-9._-]+", req).group(0)) for req in project["dependencies"]}


def _guards_import_error(node: ast.Try) -> bool:
    names = []
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names += [k.id for k in kinds if isinstance(k, ast.Name)]
    return bool({"ImportError", "ModuleNotFoundError"} & set(names))


def _imports(tree: ast.AST) -> list[tuple[str, int, bool]]:
    """(top-level module, line, lazy or guarded) of every absolute import in a module."""
    found = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name.split(".")[0], node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.split(".")[0], node.lineno, lazy))
        lazy = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(node, ast.Try) and _guards_import_error(node):
            for stmt in node.body:
                visit(stmt, True)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                visit(part, lazy)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(tree, False)
    return found


def test_every_imported_third_party_module_is_a_declared_dependency():
    declared = _declared()
    distributions = importlib.metadata.packages_distributions()
    problems, seen = [], set()
    for path in sorted((ROOT / "explore").rglob("*.py")):
        for module, line, lazy in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if module in sys.stdlib_module_names or module in ("explore", "__future__"):
                continue
            seen.add(module)
            where = f"{path.relative_to(ROOT)}:{line}"
            if module in OPTIONAL:
                if not lazy:
                    problems.append(f"{where}: {module} (extra '{OPTIONAL[module]}') is imported at module level")
                continue
            dists = {_normalise(d) for d in distributions.get(module, [])}
            if not dists:
                problems.append(f"{where}: {module} is not installed here, so its distribution is unknown")
            elif not dists & declared:
                problems.append(f"{where}: {module} (distribution {', '.join(sorted(dists))}) is not in "
                                "pyproject.toml's dependencies")
    for module, why in INDIRECT.items():
        dists = {_normalise(d) for d in distributions.get(module, [module])}
        if not dists & declared:
            problems.append(f"{module} is not in pyproject.toml's dependencies; {why}")
    assert {"torch", "optuna", "onnxruntime"} <= seen  # the walk does find the imports
    assert not problems, "\n".join(problems)


def test_the_walk_tells_lazy_and_guarded_imports_from_module_level_ones():
    source = (
        "import numpy\n"
        "try:\n    import timm\nexcept ImportError:\n    timm = None\n"
        "def f():\n    import psycopg\n    from onnxruntime import InferenceSession\n"
        "try:\n    import scipy\nexcept KeyError:\n    pass\n"
    )
    assert _imports(ast.parse(source)) == [("numpy", 1, False), ("timm", 3, True), ("psycopg", 7, True),
                                           ("onnxruntime", 8, True), ("scipy", 10, False)]


def test_missing_onnxruntime_is_one_error_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    result = CliRunner().invoke(app, ["bench", "--protocol", "onnx-cpu", "--models", "efficientvit_m0", "--modes",
                                      "fused", "--no-reference", "--repeats", "2", "--warmup", "1", "--img-size", "32",
                                      "--batch-size", "1"])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --protocol = 'onnx-cpu'"), result.output
    assert "pip install onnx onnxruntime" in result.output and "Traceback" not in result.output
