"""``dream-cl show``: a PNG grid of an image set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dream_cl.errors import UserError


def show(
    artifact: Annotated[Path, typer.Argument(help="Image-set folder (coreset or distilled).")],
    out: Annotated[
        Path | None, typer.Option(help="PNG path (default: grid.png beside it).")
    ] = None,
    decoded: Annotated[
        bool, typer.Option(help="Show the decoded multi-formation images instead of stored.")
    ] = False,
    max_classes: Annotated[int, typer.Option(help="Show at most this many classes.")] = 100,
) -> None:
    """Save a PNG grid of an image set: one row per class."""
    from dream_cl.artifact import load_image_set
    from dream_cl.runfolder import check_output_file, is_png
    from dream_cl.visualize import save_class_grid

    if max_classes < 1:
        raise UserError("--max-classes must be at least 1")
    base = Path(artifact) if Path(artifact).is_dir() else Path(artifact).parent
    target = out or base / ("grid_decoded.png" if decoded else "grid.png")
    check_output_file(target, "show", is_png)  # redraws a picture, never overwrites data
    image_set = load_image_set(artifact)
    images, labels = image_set.decoded() if decoded else (image_set.images, image_set.labels)
    save_class_grid(images, labels, target, max_classes=max_classes)
    typer.echo(f"grid: {target}")
