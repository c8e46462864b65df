"""Continual learning into a run folder: what ``dream-cl run`` and ``compare`` do."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dream_cl.cost import CostMeter
from dream_cl.distributed import DistEnv
from dream_cl.errors import UserError
from dream_cl.jobs.process import progress_for
from dream_cl.logs import LogOptions
from dream_cl.protocol.distillation import long_run_note
from dream_cl.runfolder import claimed
from dream_cl.settings import changes_from, read_config_file
from dream_cl.utils import resolve_device


@dataclass(frozen=True)
class ContinualRequest:
    """One continual-learning run: a scenario (default: the embedded digits-5step), a
    preset (default: cpu for digits, else paper) and ``overrides`` of any ``CLConfig``
    field on top, written to ``out`` (default ``runs/NAME-MEMORY-REGIME``)."""

    scenario: str | None = None
    preset: str | None = None
    steps: int | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    out: Path | None = None
    data_root: Path = Path("data")
    resume: bool = False
    download: bool = False

    @property
    def scenario_name(self) -> str:
        from dream_cl.scenarios import DEFAULT_SCENARIO

        return self.scenario or DEFAULT_SCENARIO

    @property
    def dataset(self) -> str:
        from dream_cl.scenarios import resolve_scenario_source

        return resolve_scenario_source(self.scenario_name, self.steps)[1]

    @property
    def preset_name(self) -> str:
        return self.preset or ("cpu" if self.dataset == "digits" else "paper")

    def settings(self) -> dict[str, Any]:
        """The overrides ``resolve_cl_config`` takes (the steps among them)."""
        return {**{k: v for k, v in self.overrides.items() if v is not None}, "steps": self.steps}

    def check_distill_settings(self, memories: list[str]) -> None:
        """A memory's distillation setting that no memory of the run reads is refused (a
        setting is applied to each memory whose framework reads it)."""
        from dream_cl.protocol.continual import ENGINE_METHOD
        from dream_cl.protocol.frameworks import framework_rules

        given = set(self.overrides.get("distill_overrides") or {})
        frameworks = {ENGINE_METHOD[m][0] for m in memories if m in ENGINE_METHOD}
        read = {k for k in given if any(k not in framework_rules(f).unused for f in frameworks)}
        if given - read:
            which = ", ".join(sorted(given - read))
            raise UserError(
                f"--distill-set {which}: no memory of this run ({', '.join(memories)}) "
                "distils with a framework that reads it; leave it out"
            )

    def config(self) -> Any:
        """The resolved, validated ``CLConfig`` (a bad value is one line)."""
        from dream_cl.strategies import resolve_cl_config

        return resolve_cl_config(self.scenario_name, self.preset_name, **self.settings())

    def target(self, default_name: str) -> Path:
        return self.out or Path("runs") / default_name

    @property
    def short_name(self) -> str:
        """The scenario as a folder name (an image folder's last part)."""
        name = self.scenario_name
        return name if "/" not in name else Path(name).name


def request_from_config(path: Path, **changes: Any) -> ContinualRequest:
    """The request that repeats the ``dream-cl run`` whose ``config.json`` is at ``path``;
    ``changes`` (request fields, or ``overrides`` merged over the saved settings) on top."""
    saved = read_config_file(path, "run", required=("scenario", "preset", "steps"))
    config = dict(saved["config"])
    scenario, preset, steps = config.pop("scenario"), config.pop("preset"), config.pop("steps")
    request = ContinualRequest(steps=steps)
    if scenario != request.scenario_name:  # else the default's own string, as first run
        request = dataclasses.replace(request, scenario=scenario)
    if preset != request.preset_name:
        request = dataclasses.replace(request, preset=preset)
    baseline = request.config().to_dict()
    overrides = changes_from(config, baseline) | changes.pop("overrides", {})
    if isinstance(saved.get("data_root"), str):
        changes.setdefault("data_root", Path(saved["data_root"]))
    return dataclasses.replace(request, overrides=overrides, **changes)


def run_continual(
    request: ContinualRequest,
    *,
    quiet: bool = True,
    env: DistEnv | None = None,
    log: LogOptions | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run every class order of the request; returns (results, run folder)."""
    from dream_cl.strategies import execute_run, prepare_run

    env = env or DistEnv.current()
    cfg = request.config()
    request.check_distill_settings([cfg.memory])
    target = request.target(f"{request.short_name}-{cfg.memory}-{cfg.regime}")
    with claimed(target, "run"):
        meter = CostMeter.start(resolve_device(cfg.device))
        plan = prepare_run(
            cfg,
            data_root=request.data_root,
            out=target,
            resume=request.resume,
            download=request.download,
        )
        hint = long_run_note(cfg.preset, cfg.device)
        log = log or LogOptions()
        with progress_for(quiet or log.interactive, env, long_run=hint) as progress:
            results = execute_run(
                plan,
                progress=progress,
                interactive=log.interactive,
                tensorboard=log.tensorboard,
                wandb=log.wandb,
                meter=meter,
            )
    return results, target


def compare_continual(
    request: ContinualRequest,
    memories: list[str],
    *,
    quiet: bool = True,
    env: DistEnv | None = None,
    log: LogOptions | None = None,
) -> tuple[dict[str, Any], Path]:
    """Run each memory method with one budget and class order; returns (record, folder)."""
    from dream_cl.strategies import compare

    env = env or DistEnv.current()
    if "memory" in request.overrides:
        raise UserError("compare runs each memory of --memories; leave out --set memory")
    request.check_distill_settings(memories)
    target = request.target(f"compare-{request.short_name}")
    device = request.overrides.get("device") or "auto"
    hint = long_run_note(request.preset_name, device)
    with claimed(target, "compare"), progress_for(quiet, env, long_run=hint) as progress:
        record = compare(
            request.scenario_name,
            memories,
            preset=request.preset_name,
            overrides=request.settings(),
            data_root=request.data_root,
            out=target,
            resume=request.resume,
            download=request.download,
            progress=progress,
            log=log,
        )
    return record, target
