"""The shape of the code: a thin command line, short functions, one module per command."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_LINES = 80
MAX_CLI_LINES = 200


def _sources() -> list[Path]:
    files = [ROOT / "cli.py"]
    for folder in ("dream_cl", "strategies", "scenarios"):
        files += [p for p in (ROOT / folder).rglob("*.py") if not p.is_symlink()]
    return files


def body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring not counted."""
    body = node.body
    has_doc = (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    )
    first = body[1] if has_doc else body[0]
    return node.end_lineno - first.lineno + 1


def test_no_function_body_is_longer_than_the_limit() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = body_lines(node)
                if n > MAX_BODY_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long


def test_body_lines_counts_the_body_without_the_docstring() -> None:
    tree = ast.parse('def f():\n    """Doc.\n\n    More."""\n    a = 1\n    return a\n')
    assert body_lines(tree.body[0]) == 2


def test_the_command_line_only_wires_the_commands() -> None:
    text = (ROOT / "cli.py").read_text()
    assert len(text.splitlines()) <= MAX_CLI_LINES
    tree = ast.parse(text)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert defined <= {"main", "_run_as_rank", "_on_sigterm"}, defined
    commands = ROOT / "dream_cl" / "commands"
    assert {p.stem for p in commands.glob("*.py")} >= {"distill", "coreset", "evaluate", "show"}


def test_user_docs_point_only_at_folders_a_user_has() -> None:
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    bad = [str(p.relative_to(ROOT)) for p in docs if "../shared" in p.read_text()]
    assert not bad, bad
    assert (ROOT / "docs" / "architecture.md").is_file()
