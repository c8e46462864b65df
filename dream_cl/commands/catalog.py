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
        if found == "missing":
            typer.echo(f"  {'':<14} to get it: {spec.how_to_get_under(root)}")


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


def cache(
    clear: bool = typer.Option(False, "--clear", help="Remove every cached decode."),
) -> None:
    """List the decoded-image cache (image folders and tars decoded once), or clear it."""
    from dream_cl.data.imagecache import CACHE_ENV, cache_dir, cache_entries, clear_cache

    folder = cache_dir()
    if folder is None:
        typer.echo(f"the decode cache is off ({CACHE_ENV}=off)")
        return
    if clear:
        removed, freed = clear_cache()
        typer.echo(f"removed {removed} entries ({freed / 2**20:.1f} MiB) from {folder}")
        return
    entries = cache_entries()
    total = sum(e.bytes for e in entries)
    typer.echo(f"{folder}: {len(entries)} entries, {total / 2**20:.1f} MiB")
    for e in entries:
        typer.echo(f"  {e.written}  {e.bytes / 2**20:8.1f} MiB  {e.images:>7} images  {e.source}")
