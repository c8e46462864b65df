"""The README's Python examples run unchanged (docs/continual-learning.md shows the same
calls, which tests/test_strategies.py runs at test size)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ("README.md",)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def _cases() -> list[tuple[str, int]]:
    return [(doc, i) for doc in DOCS for i in range(len(python_blocks(ROOT / doc)))]


def test_the_readme_has_python_examples() -> None:
    assert python_blocks(ROOT / "README.md")


@pytest.mark.slow
@pytest.mark.parametrize(("doc", "index"), _cases())
def test_python_example_runs(doc: str, index: int, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # whatever an example writes stays in the test's folder
    code = python_blocks(ROOT / doc)[index]
    exec(compile(code, f"{doc} example {index + 1}", "exec"), {"__name__": "__example__"})
