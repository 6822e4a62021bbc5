"""Tests patch libraries only in ways that every pytest and mock version can undo.

pytest 9.2's ``MonkeyPatch.undo()`` restores an attribute that was not in the object's own
``__dict__`` by deleting it. On torch's configuration modules (``torch._dynamo.config``,
``torch._inductor.config``, ...) entries are served by ``ConfigModule.__getattr__`` and a delete
*hides* the entry, so after such a patch every later ``torch.compile`` in the process fails inside
torch (issue 25). Configuration is therefore patched through torch's own API,
``torch._dynamo.config.patch(...)`` (a context manager and decorator), and this test parses every
test module and fails on a ``monkeypatch.setattr`` / ``mock.patch.object`` aimed at a config module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SOURCES = sorted(p for p in TESTS.rglob("*.py") if p.name != Path(__file__).name)
PATCH_CALLS = {"setattr", "delattr", "object"}  # monkeypatch.setattr/delattr, mock.patch.object


def _config_patches(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if node.func.attr not in PATCH_CALLS:
            continue
        target = ast.unparse(node.args[0])
        if isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            target = node.args[0].value.rsplit(".", 1)[0]  # monkeypatch.setattr("torch._dynamo.config.x", v)
        if target.split(".")[-1] == "config" or "._config" in target or ".config." in target:
            found.append((node.lineno, target))
    return found


def test_the_checker_sees_a_config_patch():
    tree = ast.parse('monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 2)\n'
                     'monkeypatch.setattr("torch._inductor.config.freezing", True)\n'
                     'monkeypatch.setattr(protocols, "measure_batch", fake)\n')
    assert _config_patches(tree) == [(1, "torch._dynamo.config"), (2, "torch._inductor.config")]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(TESTS)))
def test_no_monkeypatch_of_a_config_module(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    wrong = [f"{path.relative_to(TESTS.parent)}:{line} patches {target}" for line, target in _config_patches(tree)]
    assert not wrong, "patch library configuration with its own API (torch._dynamo.config.patch(...)): " + "; ".join(wrong)
