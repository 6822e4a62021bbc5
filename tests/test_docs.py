"""The docs site builds with `mkdocs build --strict` (a broken link, anchor, report link, API reference
or docstring fails it), covers the package, and the README stays a newcomer's page whose CI blocks
and links hold."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mkdocs.config import load_config

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 300


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, str]:
    """The site built once into a temporary folder: (site folder, build output)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{output[-6000:]}"
    return out, output


def test_site_builds_strict_without_a_warning(site):
    _, output = site
    warnings = [line for line in output.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)


def test_the_strict_settings_cover_nav_links_anchors_and_reports():
    config = load_config(str(ROOT / "mkdocs.yml"))
    assert config.strict
    validation = config.validation
    assert validation.nav.omitted_files == logging.WARNING  # a page missing from the nav fails the build
    assert validation.nav.not_found == logging.WARNING
    assert validation.links.not_found == logging.WARNING
    assert validation.links.anchors == logging.WARNING
    assert validation.links.absolute_links.name == "RELATIVE_TO_DOCS"  # /reports/... links are checked too


def test_every_public_module_has_a_rendered_api_page(site):
    out, _ = site
    missing, empty = [], []
    for path in sorted((ROOT / "explore").rglob("*.py")):
        rel = path.relative_to(ROOT / "explore")
        if path.stem == "__main__" or any(part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        parts = rel.with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        if not parts:  # the package itself: the overview page, api/index.html
            continue
        page = out.joinpath("api", *parts, "index.html")
        dotted = ".".join(("explore", *parts))
        if not page.is_file():
            missing.append(dotted)
        elif f'id="{dotted}"' not in page.read_text(encoding="utf-8"):  # mkdocstrings' heading of the module
            empty.append(dotted)
    assert not missing and not empty, f"no API page: {missing}; no rendered module: {empty}"
    attention = (out / "api" / "nn" / "attention" / "index.html").read_text(encoding="utf-8")
    for name in ("CascadedGroupAttention", "MultiHeadSelfAttention", "LiteMLA"):
        assert f'id="explore.nn.attention.{name}"' in attention
    assert ":class:`" not in attention and ":func:`" not in attention  # the Sphinx roles became links


def test_committed_reports_are_served_beside_the_docs(site):
    out, _ = site
    reports = sorted(p for p in (ROOT / "reports").glob("*/*.md"))
    assert reports
    for report in reports:
        page = out / report.relative_to(ROOT).with_suffix("")
        if report.stem == "README":
            page = page.parent
        assert (page / "index.html").is_file(), report
    assert (out / "reports" / "cga_fashion_mnist_cpu" / "pareto.png").is_file()


def test_readme_is_a_newcomers_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move the detail into docs/"
    headings = [line for line in lines if line.startswith("## ")]
    for wanted in ("## Set-up: two commands", "## A five-minute tour", "## Results at a glance", "## Where to read on"):
        assert wanted in headings


def test_readme_keeps_the_ci_blocks():
    """`.ci/run` runs the command between the test-command markers; the main job has its own."""
    text = README.read_text(encoding="utf-8")
    for name in ("test-command", "main-command"):
        block = re.findall(rf"<!-- {name}:start -->\n```\n(.+?)\n```\n<!-- {name}:end -->", text, flags=re.S)
        assert len(block) == 1 and "\n" not in block[0].strip(), f"README.md: the {name} block"
    assert "python -m pytest" in re.search(r"<!-- test-command:start -->(.+?)<!-- test-command:end -->",
                                           text, flags=re.S).group(1)


def test_readme_links_point_at_files_of_the_repository():
    text = README.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+://", t) and not t.startswith("#")]
    assert local
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
