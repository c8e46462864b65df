"""The package's layering: data -> models -> distill -> strategies / scenarios -> CLI.

A lower layer never imports a higher one (anywhere in a module, function bodies included),
and module-level imports form no cycle, so each layer can be read, tested and reused alone.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = {"dream_cl": ROOT / "dream_cl", "dream_cl.strategies": ROOT / "strategies"}
SOURCES["dream_cl.scenarios"] = ROOT / "scenarios"
LAYERS = {
    "dream_cl.data": 0,
    "dream_cl.models": 1,
    "dream_cl.distill": 2,
    "dream_cl.strategies": 3,
    "dream_cl.scenarios": 3,
    "dream_cl.cli": 4,
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


def test_module_level_imports_form_no_cycle() -> None:
    modules = _modules()
    graph = {
        name: {m for m in _imports(name, path, top_level_only=True) if m in modules} - {name}
        for name, path in modules.items()
    }
    # a package's __init__ importing its own submodules is not a cycle through them
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            cycle = trail[trail.index(node) :] + [node]
            if not all(n.startswith(cycle[0] + ".") or n == cycle[0] for n in cycle):
                raise AssertionError(" -> ".join(cycle))
            return
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])
    assert "dream_cl.distill.engine" in graph and graph["dream_cl.distill.engine"]
