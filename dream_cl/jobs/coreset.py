"""Select a coreset into a run folder: what ``dream-cl coreset`` does."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dream_cl.artifact import ImageSet
from dream_cl.errors import UserError


@dataclass(frozen=True)
class CoresetRequest:
    """IPC real images per class of ``dataset``, chosen by ``method``, saved in ``out``."""

    dataset: str
    method: str = "herding"
    ipc: int = 10
    feature_model: str = "convnet"
    seed: int = 0
    out: Path = Path("runs/coreset")
    data_root: Path = Path("data")
    download: bool = False

    def validate(self) -> None:
        from dream_cl.coreset import METHODS
        from dream_cl.models import model_names

        if self.method not in METHODS:
            raise UserError(
                f"unknown coreset method '{self.method}'; use one of {', '.join(METHODS)}"
            )
        if self.feature_model not in model_names():
            raise UserError(
                f"unknown model '{self.feature_model}'; use one of {', '.join(model_names())}"
            )
        if self.ipc < 1:
            raise UserError("--ipc must be at least 1")

    def settings(self) -> dict:
        """What ``config.json`` records (the data root as text; not where it is written)."""
        d = asdict(self)
        d.pop("out")
        d.pop("download")
        d["data_root"] = str(self.data_root)
        return d


@dataclass(frozen=True)
class CoresetResult:
    image_set: ImageSet
    seconds: float
    out: Path
    cost: dict


def select_coreset_into(request: CoresetRequest, device: str = "auto") -> CoresetResult:
    """Select the coreset and save it with its ``config.json`` (rank 0 writes)."""
    from dream_cl.artifact import save_image_set
    from dream_cl.coreset import select_coreset
    from dream_cl.cost import CostMeter
    from dream_cl.data import check_out_outside_data, load_dataset
    from dream_cl.distributed import DistEnv, agree
    from dream_cl.runfolder import CONFIG_FILE, claim, claimed, record
    from dream_cl.utils import atomic_write_json, resolve_device, seed_everything

    request.validate()
    dev = resolve_device(device)
    meter = CostMeter.start(dev)
    run = record("coreset", request.settings())
    out = request.out
    check_out_outside_data(out, request.dataset, request.data_root)
    with claimed(out, "coreset"):
        agree(lambda: claim(out, "coreset", run, resume=False, resumable=False))
        seed_everything(request.seed)
        train = load_dataset(
            request.dataset, request.data_root, train=True, download=request.download
        )
        t0 = time.perf_counter()
        image_set = select_coreset(
            train,
            request.method,
            request.ipc,
            seed=request.seed,
            feature_model=request.feature_model,
            device=dev,
        )
        seconds = time.perf_counter() - t0
        cost = meter.finish()
        image_set.meta["cost"] = cost  # the set's meta.json records what it cost
        if DistEnv.current().is_main:
            atomic_write_json(run, out / CONFIG_FILE)
            save_image_set(image_set, out)
    return CoresetResult(image_set, seconds, out, cost)
