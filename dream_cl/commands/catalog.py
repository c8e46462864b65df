"""``dream-cl datasets`` and ``dream-cl scenarios``: what is registered, and what is found."""

from __future__ import annotations

import typer

from dream_cl.commands.common import DataRoot, default_data_root


def datasets(data_root: DataRoot = None) -> None:
    """List the registered datasets and whether each is found under the data root."""
    from dream_cl.data import DATASETS

    root = data_root or default_data_root()
    typer.echo(f"data root: {root}")
    for name, spec in DATASETS.items():
        found = "found" if spec.available(root) else "missing"
        kind = spec.found_as(root) if found == "found" else ""
        kind = f"  ({kind})" if kind else ""
        typer.echo(f"  {name:<14} {found:<8} {spec.expected_path(root)}{kind}")


def scenarios(data_root: DataRoot = None) -> None:
    """List the registered class-incremental scenarios and whether their data is present."""
    from dream_cl.scenarios import SCENARIOS

    root = data_root or default_data_root()
    typer.echo(f"data root: {root}")
    for name, spec in SCENARIOS.items():
        found = "found" if spec.available(root) else "missing"
        typer.echo(f"  {name:<20} {found:<8} {spec.description}")
    typer.echo(
        "others: dream-cl run DATASET --steps N [--class-order 3,1,...] or "
        "dream-cl run IMAGE_FOLDER --steps N"
    )
