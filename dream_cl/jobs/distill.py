"""Distil a dataset into a run folder: what ``dream-cl distill`` does, for Python users too."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dream_cl.cost import CostMeter, cost_line
from dream_cl.distill.config import DistillConfig, resolve_config
from dream_cl.distill.engine import DistillResult
from dream_cl.distributed import DistEnv
from dream_cl.jobs.process import progress_for
from dream_cl.logs import LogOptions
from dream_cl.protocol.distillation import long_run_note
from dream_cl.runfolder import claimed
from dream_cl.settings import changes_from, read_config_file
from dream_cl.utils import resolve_device

PROVISIONAL_IMAGE_SIZE = 32
"""The settings are checked before any data is read; the image size (which only scales
the image learning rate) is then taken from the data."""


@dataclass(frozen=True)
class DistillRequest:
    """One distillation: the preset's settings for (dataset, ipc, framework), ``overrides``
    (any :class:`DistillConfig` field) on top, written to ``out``."""

    dataset: str
    ipc: int = 10
    framework: str = "idc"
    preset: str = "paper"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    out: Path = Path("runs/distill")
    data_root: Path = Path("data")
    resume: bool = False
    download: bool = False
    log: LogOptions = field(default_factory=LogOptions)
    """Loggers beside ``OUT/iterations.csv`` (TensorBoard, W&B)."""

    def config(self, image_size: int) -> DistillConfig:
        """The resolved, validated configuration (a bad value is one line)."""
        return resolve_config(
            self.dataset,
            self.ipc,
            framework=self.framework,
            preset=self.preset,
            image_size=image_size,
            overrides=dict(self.overrides),
        )


def request_from_config(path: Path, **changes: Any) -> DistillRequest:
    """The request that repeats the run whose ``config.json`` is at ``path``; ``changes``
    (request fields, or ``overrides`` merged over the saved settings) on top."""
    saved = read_config_file(path, "distill", required=("dataset", "ipc", "framework", "preset"))
    config = dict(saved["config"])
    plain = DistillRequest(config.pop("dataset"))
    fields = {k: config.pop(k) for k in ("ipc", "framework", "preset")}
    request = dataclasses.replace(plain, **changes_from(fields, dataclasses.asdict(plain)))
    preset = dataclasses.replace(request, overrides={"factor": config.get("factor")})
    baseline = preset.config(PROVISIONAL_IMAGE_SIZE).to_dict()
    overrides = changes_from(config, baseline) | changes.pop("overrides", {})
    data = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    if "data_root" in data:
        changes.setdefault("data_root", Path(data["data_root"]))
    return dataclasses.replace(request, overrides=overrides, **changes)


def distill_dataset(
    request: DistillRequest, *, quiet: bool = True, env: DistEnv | None = None
) -> DistillResult:
    """Distil ``request.dataset`` into ``request.out`` (continued when it holds this run).

    Under torchrun each rank loads and keeps only its classes; rank 0 evaluates and writes.
    """
    from dream_cl.data import ValidationSpec, check_out_outside_data, load_splits
    from dream_cl.distill.engine import distill, shard_train

    env = env or DistEnv.current()
    early = request.config(PROVISIONAL_IMAGE_SIZE)  # every user error before any work
    meter = CostMeter.start(resolve_device(early.device))
    spec = ValidationSpec(early.val_fraction, early.val_seed)
    check_out_outside_data(request.out, request.dataset, request.data_root)
    with claimed(request.out, "distill"):
        train, val, test = load_splits(
            request.dataset, request.data_root, spec, download=request.download
        )
        if early.eval_split == "val":
            test = val
        if env.world_size > 1:
            train = shard_train(train, env)  # the other classes' images are freed
            test = test if env.is_main else None
        cfg = request.config(train.info.image_size)
        hint = long_run_note(cfg.preset, cfg.device)
        with progress_for(quiet, env, long_run=hint) as progress:
            return distill(
                cfg,
                train,
                test,
                out=request.out,
                resume=request.resume,
                progress=progress,
                data={"data_root": str(request.data_root)},
                meter=meter,
                log=request.log,
            )


def summary_lines(result: DistillResult, dataset: str, out: Path) -> list[str]:
    """What a finished distillation says: sizes, time, the last evaluations, the artifact."""
    m = result.metrics
    secs = m["time_seconds"]
    lines = [
        f"{m['method']} on {dataset}: {m['stored_images']} stored images "
        f"({m['decoded_images']} decoded), {m['iterations_done']} iterations",
        "time: " + ", ".join(f"{k} {v:.1f}s" for k, v in sorted(secs.items())),
    ]
    for e in m["evals"][-3:]:
        lines.append(
            f"  iteration {e['iteration']}: {e['model']} {100 * e['mean']:.2f}% "
            f"({e.get('split', 'test')}, {e.get('recipe', 'idc')} recipe, "
            f"{len(e.get('accuracies', [0]))} model(s))"
        )
    if m.get("cost"):
        lines.append(cost_line(m["cost"]))
    lines.append(f"artifact: {out}  (dream-cl evaluate {out}; dream-cl show {out})")
    return lines
