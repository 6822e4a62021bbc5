"""Build machinery of the docs site (mkdocs.yml names it twice; not part of the package).

1. **API reference from the package tree** (the MkDocs hook: ``on_config``, ``on_files``). At
   build time every public module of ``explore/`` gets a page ``api/<subpackage>/<module>.md`` whose
   body is one mkdocstrings directive (``::: explore.<...>``); a subpackage's page shows its
   docstring, its public names (``__all__``, each linked to where it is documented) and its
   modules; the nav entry ``API reference: api/index.md`` of mkdocs.yml becomes one section per
   subpackage. No module path is written by hand, so a module that moves, appears or disappears
   moves its page with it, and a page or cross-reference that names something that no longer
   exists fails ``mkdocs build --strict``.
2. **Sphinx roles as links** (:class:`SphinxRoles`, a Griffe extension that mkdocs.yml loads for
   mkdocstrings). The docstrings are Google style but name other objects with Sphinx roles
   (``:func:`train_proxy```, ``:class:`~explore.arch.ArchConfig```, ``:mod:`.units```), which
   Markdown would show as raw text. Each role is resolved in the scope of the docstring that holds
   it (its module's imports included) and rewritten as a cross-reference to the object's canonical
   path; a target that the reference does not render on its own (a constant without a docstring, a
   private helper) links to the nearest object it renders (its class or module); a name outside the
   package (``torch.nn.Module``) stays code. A role that names nothing is a stale reference: a
   warning naming the docstring, which fails the strict build.
3. **Committed reports in the site** (``on_files``). The repository's ``reports/`` folder (and
   the data files that pages point at, ``search_spaces/`` and ``studies/``) is served under the
   same path, so a page links a report as ``/reports/<run>/summary.md``: the link works in the
   repository's web view (a leading ``/`` is the repository root there) and in the site (mkdocs.yml
   validates absolute links relative to the docs folder), and a link to a report that does not
   exist fails the strict build. These pages are outside the nav (the reports' index,
   ``/reports/README.md``, lists them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import griffe
from griffe import Alias, Extension, Module, Object
from mkdocs.structure.files import File, Files, InclusionLevel

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "explore"
API_DIR = "api"
API_NAV_TITLE = "API reference"
REPO_DIRS = ("reports", "search_spaces", "studies")
# Subpackages in pipeline order (docs/design.md) for the nav and the overview; a stage missing here
# comes after them, alphabetically: this list orders pages and never hides one.
PIPELINE_ORDER = ("arch", "nn", "space", "measure", "train", "supernet", "evaluate", "search", "analysis",
                  "report", "cli")

ROLE = re.compile(r":(?:py:)?(?:class|func|data|mod|meth|attr|exc|obj|const):`(~?)([^`]+?)`")
# Roles naming these stay code, unchecked (no other project's inventory is fetched at build time).
EXTERNAL = ("tests", "torch", "optuna", "numpy", "pandas", "timm", "fvcore", "sklearn", "scipy", "torchmetrics",
            "torchvision", "typer", "onnx", "onnxruntime", "psycopg", "sqlalchemy", "matplotlib", "PIL",
            "torch_pruning", "tomllib", "pathlib", "dataclasses", "typing", "collections", "concurrent",
            "multiprocessing", "subprocess", "threading", "time", "os", "json", "math", "re", "enum")


# --- Sphinx roles -> cross-references (Griffe extension) ---------------------------------------------

class SphinxRoles(Extension):
    """Rewrite every ``:role:`name``` of the package's docstrings as a checked cross-reference."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        if pkg.name != PACKAGE:
            return
        for obj in _objects(pkg):
            if obj.docstring is not None and ":" in obj.docstring.value:
                obj.docstring.value = ROLE.sub(lambda match, obj=obj: _reference(pkg, obj, match),
                                               obj.docstring.value)


def _objects(obj: Object) -> Iterator[Object]:
    """``obj`` and everything defined in it (imported names are documented where they are defined)."""
    yield obj
    for member in obj.members.values():
        if not isinstance(member, Alias):
            yield from _objects(member)


def _reference(pkg: Module, scope: Object, match: re.Match) -> str:
    short, name = match.group(1) == "~", match.group(2).strip()
    bare = name.removesuffix("()")
    shown = name.rpartition(".")[2] if short else name
    path = _resolve(scope, bare)
    target = _lookup(pkg, path) if path is not None and path.startswith(PACKAGE + ".") else None
    if target is None:
        outside = bare.split(".")[0] in EXTERNAL if path is None else not path.startswith(PACKAGE + ".")
        if not outside:
            griffe.logger.warning("%s:%s: %s: role %r names nothing in the package or its imports",
                                  scope.relative_filepath, scope.docstring.lineno, scope.path, match.group(0))
        return f"`{shown}`"
    anchor = _rendered(target)
    return f"[`{shown}`][{anchor.path}]" if anchor is not None else f"`{shown}`"


def _resolve(scope: Object, name: str) -> str | None:
    """The full path that ``name`` means in ``scope`` (its imports included), or None: unknown there."""
    first, _, rest = name.partition(".")
    if name.startswith("."):  # relative to the docstring's module: ``:mod:`.units``` in a package
        return (scope if scope.is_module else scope.module).path + name
    if first == PACKAGE:
        return name
    try:
        base = scope.resolve(first)
    except griffe.NameResolutionError:
        return None
    return f"{base}.{rest}" if rest else base


def _lookup(pkg: Module, path: str) -> Object | None:
    """The object at ``path`` in the package, aliases followed (None: there is none)."""
    try:
        obj = pkg.modules_collection[path]
        while isinstance(obj, Alias):
            obj = obj.final_target
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    return obj


def _rendered(obj: Object) -> Object | None:
    """``obj`` where the reference renders it, else its nearest rendered parent (None: no page).

    The reference (mkdocs.yml) renders every module of a public module path and, inside it, the
    public members (no leading underscore) that have docstrings, recursively.
    """
    chain = []
    node: Object | None = obj
    while node is not None:
        chain.append(node)
        node = node.parent
    rendered = None
    for node in reversed(chain):
        if node.name.startswith("_") and not (node.is_module and node.name == "__init__"):
            return rendered
        if not node.is_module and not node.has_docstrings:
            return rendered
        rendered = node
    return rendered


# --- API pages and nav (MkDocs hook) ------------------------------------------------------------------

@cache
def _package() -> Module:
    """The package as Griffe reads it (static analysis, no import), roles rewritten."""
    return griffe.load(PACKAGE, search_paths=[str(ROOT)], extensions=griffe.load_extensions(SphinxRoles))


def _is_package(module: Module) -> bool:
    return module.filepath.name == "__init__.py"


def _modules(module: Module) -> list[Module]:
    """The public modules directly inside ``module``, alphabetically; in the package itself the
    stages in pipeline order, then any other subpackage, then the base modules."""
    found = [m for name, m in module.modules.items() if not name.startswith("_") and name != "__main__"]
    if module.path != PACKAGE:
        return sorted(found, key=lambda m: m.name)
    order = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return sorted(found, key=lambda m: (m.name not in order, order.get(m.name, 0), not _is_package(m), m.name))


def _is_base(module: Module) -> bool:
    """A base module: a plain module of the package itself that is not a stage (errors, resources, ...)."""
    return module.parent is not None and module.parent.path == PACKAGE and not _is_package(module) \
        and module.name not in PIPELINE_ORDER


def _page(module: Module) -> str:
    parts = module.path.split(".")[1:]
    return "/".join([API_DIR, *parts, "index.md"]) if _is_package(module) else "/".join([API_DIR, *parts]) + ".md"


def _rel(from_uri: str, to_uri: str) -> str:
    return os.path.relpath(to_uri, os.path.dirname(from_uri)).replace(os.sep, "/")


def _summary(obj: Object) -> str:
    """The first paragraph of a docstring, on one line (table cells hold one line)."""
    text = obj.docstring.value if obj.docstring is not None else ""
    return text.strip().split("\n\n")[0].replace("\n", " ").replace("|", "\\|")


def _public_names(package: Module) -> str:
    """A table of the package's ``__all__``: each name, its kind and summary, linked to its docs."""
    rows = []
    for name in package.exports or ():
        name = str(name)
        member = package.members.get(name)
        if member is None:
            griffe.logger.warning("%s: __all__ names %r, which the package does not define",
                                  package.relative_filepath, name)
            continue
        obj = _lookup(package, member.path) if isinstance(member, Alias) else member
        anchor = _rendered(obj) if obj is not None else None
        if obj is None or anchor is None:  # defined outside the package, or in a private module
            rows.append(f"| `{name}` | | |")
        elif anchor is obj:
            rows.append(f"| [`{name}`][{obj.path}] | {obj.kind.value} | {_summary(obj)} |")
        else:  # not rendered on its own (a constant without a docstring): where it is
            rows.append(f"| `{name}` | {obj.kind.value} | in [`{anchor.path}`][{anchor.path}] |")
    if not rows:
        return ""
    return "## Public names\n\nImport them from the package: `from " + package.path + " import ...`.\n\n" \
           "| name | kind | what |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"


def _api_pages() -> dict[str, str]:
    """src_uri -> Markdown of every API page, the overview included."""
    pkg = _package()
    pages: dict[str, str] = {}

    def add(module: Module) -> None:
        uri = _page(module)
        if not _is_package(module):
            pages[uri] = f"::: {module.path}\n"
            return
        table = "\n".join(f"| [`{m.name}`]({_rel(uri, _page(m))}) | {_summary(m)} |" for m in _modules(module))
        # members defined in the package's own __init__ (re-exported ones are documented where they live)
        own = [name for name, member in module.members.items()
               if not isinstance(member, Alias) and not member.is_module and _rendered(member) is member]
        pages[uri] = (f"::: {module.path}\n    options:\n      members: {own or 'false'}\n\n" + _public_names(module)
                      + f"## Modules\n\n| module | what |\n|---|---|\n{table}\n")
        for child in _modules(module):
            add(child)

    for module in _modules(pkg):
        add(module)
    overview = f"{API_DIR}/index.md"
    rows = "\n".join(f"| [`{m.path}`]({_rel(overview, _page(m))}) | {_summary(m)} |" for m in _modules(pkg))
    pages[overview] = (
        "# API reference\n\n"
        f"{_summary(pkg)}\n\n"
        "Generated at build time from the package tree and its docstrings (Google style: arguments, "
        "returns, raises; the shapes, units and the paper a piece follows are in the text). Public "
        "modules only, in pipeline order; a subpackage's page lists its public names and its modules.\n\n"
        f"| module | what |\n|---|---|\n{rows}\n"
    )
    return pages


def _nav(module: Module) -> list:
    """Nav entries of ``module``'s children: a section per subpackage (its page first), a page per
    module; in the package itself the base modules go into one section, last."""
    entries: list = []
    base: list = []
    for child in _modules(module):
        title = child.path if module.path == PACKAGE and not _is_base(child) else child.name
        entry = {title: [_page(child), *_nav(child)]} if _is_package(child) else {title: _page(child)}
        (base if _is_base(child) else entries).append(entry)
    return entries + ([{"base modules": base}] if base else [])


def on_config(config):
    """Expand the nav entry ``API reference: api/index.md`` into the generated section."""
    _package.cache_clear()  # ``mkdocs serve`` rebuilds: read the package again
    for item in config.nav or []:
        if isinstance(item, dict) and item.get(API_NAV_TITLE) == f"{API_DIR}/index.md":
            item[API_NAV_TITLE] = [f"{API_DIR}/index.md", *_nav(_package())]
    return config


def on_files(files: Files, config) -> Files:
    """Add the generated API pages, then the repository folders served beside the docs."""
    for uri, content in _api_pages().items():
        files.append(File.generated(config, uri, content=content, inclusion=InclusionLevel.INCLUDED))
    for folder in REPO_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file():
                files.append(File(path.relative_to(ROOT).as_posix(), src_dir=str(ROOT), dest_dir=config.site_dir,
                                  use_directory_urls=config.use_directory_urls, inclusion=InclusionLevel.NOT_IN_NAV))
    return files
