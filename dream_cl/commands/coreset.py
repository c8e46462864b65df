"""``dream-cl coreset``: options to a :class:`~dream_cl.jobs.coreset.CoresetRequest`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dream_cl.commands.common import (
    DataRoot,
    Device,
    Download,
    Nproc,
    Seed,
    default_data_root,
)


def coreset(
    dataset: Annotated[str, typer.Argument(help="Registered dataset name (see `datasets`).")],
    method: Annotated[str, typer.Option(help="random, herding or k-center.")] = "herding",
    ipc: Annotated[int, typer.Option(help="Images per class.")] = 10,
    out: Annotated[Path, typer.Option(help="Output folder for the image set.")] = Path(
        "runs/coreset"
    ),
    feature_model: Annotated[
        str, typer.Option(help="Network whose random-init features herding/k-center use.")
    ] = "convnet",
    data_root: DataRoot = None,
    download: Download = False,
    device: Device = "auto",
    seed: Seed = 0,
    nproc: Nproc = 1,
) -> None:
    """Select IPC real images per class (coreset baseline) and save them as an image set."""
    from dream_cl.cost import cost_line
    from dream_cl.jobs.coreset import CoresetRequest, select_coreset_into
    from dream_cl.jobs.process import join_processes, set_threads

    request = CoresetRequest(
        dataset,
        method=method,
        ipc=ipc,
        feature_model=feature_model,
        seed=seed,
        out=out,
        data_root=data_root or default_data_root(),
        download=download,
    )
    request.validate()
    _, device = join_processes(nproc, device)
    set_threads(None, dataset)
    done = select_coreset_into(request, device)
    typer.echo(
        f"{method} coreset of {dataset}: {done.image_set.num_stored} images "
        f"({ipc} per class) in {done.seconds:.1f}s -> {out}"
    )
    typer.echo(cost_line(done.cost))
