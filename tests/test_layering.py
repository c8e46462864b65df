"""The package's layering: data -> models -> distill -> strategies / scenarios -> CLI.

Every module has a layer (the helpers everything uses at the bottom); a module never
imports one of a higher layer (anywhere in it, function bodies included), and module-level
imports, counting the package ``__init__`` that importing a submodule runs, form no cycle
across packages, so each layer can be read, tested and reused alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {
    "dream_cl": ROOT / "dream_cl",
    "dream_cl.strategies": ROOT / "strategies",
    "dream_cl.scenarios": ROOT / "scenarios",
}
LAYERS = {
    # helpers with no knowledge of data, models or distillation
    "dream_cl.errors": 0,
    "dream_cl.cost": 0,
    "dream_cl.logs": 0,
    "dream_cl.settings": 0,
    "dream_cl.utils": 0,
    "dream_cl.progress": 0,
    "dream_cl.runfolder": 0,
    "dream_cl.distributed": 0,
    "dream_cl.formation": 0,
    "dream_cl.augment": 0,
    "dream_cl.visualize": 0,
    "dream_cl.data": 1,
    "dream_cl.artifact": 2,
    "dream_cl.models": 2,
    "dream_cl.ensemble": 2,
    "dream_cl.protocol": 2,
    "dream_cl.evaluate": 3,
    "dream_cl.coreset": 3,
    "dream_cl.distill": 4,
    "dream_cl.scenarios": 5,
    "dream_cl.strategies": 5,
    "dream_cl.jobs": 6,
    "dream_cl.commands": 7,
    "dream_cl.cli": 7,
    "dream_cl.entry": 8,  # the console script: loads the command line
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in SOURCES.items():
        for path in folder.rglob("*.py"):
            if path.is_symlink():
                continue  # dream_cl/cli.py links to the top-level cli.py
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    found["dream_cl.cli"] = ROOT / "cli.py"
    return found


def _imports(name: str, path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("dream_cl")}


def _layer(module: str) -> int | None:
    for prefix, rank in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _modules() if m != "dream_cl" and _layer(m) is None)
    assert not unplaced, f"give these a layer in LAYERS: {unplaced}"


def test_no_layer_imports_a_higher_one() -> None:
    bad = []
    for name, path in _modules().items():
        mine = _layer(name)
        if mine is None:
            continue
        for imported in _imports(name, path, top_level_only=False):
            theirs = _layer(imported)
            if theirs is not None and theirs > mine:
                bad.append(f"{name} imports {imported}")
    assert not bad, bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_module_level_imports_form_no_cycle_across_packages() -> None:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        edges = {m for m in _imports(name, path, top_level_only=True) if m in modules}
        # importing a submodule runs its package's __init__ first
        parents = {name.rsplit(".", k)[0] for k in range(1, name.count(".") + 1)}
        graph[name] = (edges | {p for p in parents if p in modules}) - {name}
    # a package whose __init__ gathers its own submodules is a cycle inside that package,
    # which Python resolves; one that spans two packages is not
    across = [c for c in _cycles(graph) if len({_package(m) for m in c} - {"dream_cl"}) > 1]
    assert not across, across
    assert graph["dream_cl.distill.engine"] and "dream_cl.data" in graph["dream_cl.data.base"]


def _named_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules ``name`` names in its import statements, anywhere in it (under
    ``if TYPE_CHECKING:`` and in function bodies too): ``from pkg import sub`` names the
    submodule ``pkg.sub`` where there is one, else the package ``pkg`` itself."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            named |= {
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            }
    found = set()
    for module in named:
        while module and module not in modules:  # a name in a module: the module
            module = module.rpartition(".")[0]
        if module:
            found.add(module)
    return found


def _import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Every import between ``modules``: the modules named, and the package ``__init__``s
    that importing them runs, except the importer's own packages (a submodule imported
    from its package's ``__init__`` that re-exports it forms no cycle unless the submodule
    names that package itself)."""
    graph = {}
    for name, path in modules.items():
        own = {name.rsplit(".", k)[0] for k in range(name.count(".") + 1)}
        edges = set()
        for target in _named_modules(name, path, modules):
            edges.add(target)
            edges |= {target.rsplit(".", k)[0] for k in range(1, target.count(".") + 1)} - own
        graph[name] = {m for m in edges if m in modules} - {name}
    return graph


def test_no_two_modules_import_each_other_even_for_types_or_inside_a_package() -> None:
    graph = _import_graph(_modules())
    assert not _cycles(graph), _cycles(graph)
    assert "dream_cl.distill.context" in graph["dream_cl.distill.gradmatch"]


def test_the_cycle_check_sees_type_only_imports_and_allows_a_gathering_init(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    sources = {
        "__init__": "from pkg.a import A\nfrom pkg.b import B\n",
        "a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
        "b": "from pkg.a import A\n",
        "c": "def f():\n    from pkg import A\n",  # names its package: an edge to __init__
    }
    for stem, text in sources.items():
        (pkg / f"{stem}.py").write_text(text)
    modules = {f"pkg.{s}".removesuffix(".__init__"): pkg / f"{s}.py" for s in sources}
    graph = _import_graph(modules)
    assert _cycles(graph) == [["pkg.a", "pkg.b"]]  # the __init__ gathering them is no cycle
    assert graph["pkg.c"] == {"pkg"}
    (pkg / "a.py").write_text("A = 1\n")
    assert _cycles(_import_graph(modules)) == []
