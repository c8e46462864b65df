"""The installable package: every package folder is in pyproject's list (a left-out one
installs a broken wheel), the version has one home, and the command prints it. CI builds
the wheel and the sdist and runs the installed wheel outside the source tree (.ci/run)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from typer.testing import CliRunner

import dream_cl
from dream_cl.cli import app

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"dream_cl": ROOT / "dream_cl", "dream_cl.strategies": ROOT / "strategies",
           "dream_cl.scenarios": ROOT / "scenarios"}  # fmt: skip


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_folder_is_listed_in_pyproject() -> None:
    found = set()
    for name, folder in FOLDERS.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((name, *rel)))
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    assert found == listed, f"missing: {sorted(found - listed)}, stale: {sorted(listed - found)}"


def test_the_version_has_one_home_and_the_command_prints_it() -> None:
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("dream-cl") == dream_cl.__version__
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"dream-cl {dream_cl.__version__}\n"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{dream_cl.__version__}]" in changelog
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
