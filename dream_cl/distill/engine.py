"""The distillation driver: initialise, run a framework's outer iterations, evaluate,
checkpoint atomically, resume exactly, and write the artifact, grid and metrics.

Output folder layout (``out``):

- ``config.json``: the command (``distill``) and the resolved configuration;
- ``checkpoint.pt``: the state at the last checkpointed iteration (tensors and plain
  containers only, loaded with ``weights_only=True``; equal runs write equal bytes);
- ``timing.json``: the wall-clock accounting at that checkpoint;
- ``images.pt`` + ``meta.json``: the final synthetic set in the image-set format;
- ``grid.png``: the stored images, one row per class;
- ``metrics.json``: loss curve, periodic accuracies, time breakdown.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dream_cl.artifact import ImageSet, save_image_set
from dream_cl.cost import CostMeter
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.distill import registry
from dream_cl.distill.compiled import check_precision
from dream_cl.distill.config import DistillConfig
from dream_cl.distill.context import Context, embed_fn, make_net
from dream_cl.distill.frameworks import OuterStep
from dream_cl.distill.samplers import RandomSampler, RealSampler, RepresentativeSampler
from dream_cl.distill.state import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, RunState
from dream_cl.distill.streams import RandomStreams
from dream_cl.distill.synthetic import SyntheticSet, initialize
from dream_cl.distill.timer import Timer
from dream_cl.distributed import (
    AgreedError,
    ClassShard,
    DistEnv,
    agree,
    any_rank,
)
from dream_cl.errors import UserError
from dream_cl.logs import IterationLog, LogOptions
from dream_cl.progress import NullProgress, Progress, notify
from dream_cl.protocol import distillation as distillation_protocol
from dream_cl.runfolder import CONFIG_FILE, claim, record
from dream_cl.utils import (
    atomic_torch_save,
    atomic_write_json,
    load_checkpoint_file,
    resolve_device,
)

CHECKPOINT_FILE = "checkpoint.pt"
LOGGED_PHASES = ("clustering", "matching", "network_update", "evaluation", "checkpoint")
"""The timer's phases each row of ``iterations.csv`` gives the seconds of."""
TIMING_FILE = "timing.json"
"""Wall-clock seconds at the checkpoint (kept apart: equal runs write equal checkpoints)."""
# settings that may differ between a run and its resumption without changing the result
_RESUMABLE_CHANGES = {
    "iterations",
    "eval_every",
    "eval_epochs",
    "eval_repeats",
    "eval_width",
    "eval_model",
    "eval_recipe",
    "eval_split",
    "checkpoint_every",
    "device",
}


LONG_RUN_SECONDS = distillation_protocol.LONG_RUN_SECONDS  # the rule: protocol.distillation


@dataclass
class PaceNote:
    """Estimate a run's duration from its first steps (inner steps where the framework has
    them, else outer iterations) and, on a CPU, say so once if it is long; the engine
    registers :meth:`inner_step` as the context's ``"inner"`` hook."""

    outer_left: int
    inner_loop: int
    what: str
    """The run in words: '<framework> on <dataset>'."""
    hint: str
    progress: Progress
    enabled: bool = True
    started: float = field(default_factory=time.perf_counter)
    inner: int = 0
    decided: bool = False

    @classmethod
    def for_run(
        cls, cfg: DistillConfig, outer_left: int, progress: Progress, enabled: bool
    ) -> PaceNote:
        hint = distillation_protocol.long_run_hint(cfg.preset)
        what = f"{cfg.framework} on {cfg.dataset}"
        return cls(outer_left, cfg.inner_loop, what, hint, progress, enabled)

    def inner_step(self) -> None:
        self.inner += 1
        self._check(self.inner / max(1, self.inner_loop))

    def outer_step(self, outer_done: int) -> None:
        self._check(float(outer_done))

    def _check(self, outer_done: float) -> None:
        if self.decided or not self.enabled or outer_done <= 0:
            return
        elapsed = time.perf_counter() - self.started
        if outer_done < 1 and (elapsed < 10.0 or self.inner < 2):
            return  # too little evidence yet (the first step also clusters)
        self.decided = True
        total = elapsed / outer_done * self.outer_left
        if total < LONG_RUN_SECONDS:
            return
        steps = (
            f"{self.inner} matching steps" if outer_done < 1 else f"{outer_done:.0f} iteration(s)"
        )
        notify(
            self.progress,
            f"note: {self.outer_left} iterations of {self.what} "
            f"will take about {_hours(total)} on this CPU (from the first {steps}){self.hint}",
        )


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


@dataclass
class DistillResult:
    image_set: ImageSet
    metrics: dict[str, Any]
    out: Path | None


def make_sampler(
    cfg: DistillConfig, train: DatasetSplit, classes: list[int] | None = None
) -> RealSampler:
    if cfg.sampler == "representative":
        return RepresentativeSampler(
            train,
            classes=classes,
            n_clusters=cfg.n_clusters,
            per_cluster=cfg.per_cluster,
            interval=cfg.interval,
            max_iter=cfg.kmeans_max_iter,
            candidates=cfg.candidates,
        )
    return RandomSampler(train, batch_size=cfg.batch_real, classes=classes)


def method_name(cfg: DistillConfig) -> str:
    """'dream-idc' for the full method, else e.g. 'idc' (baseline) or 'idc+rm' / 'idc+init'."""
    rm = cfg.sampler == "representative"
    km = cfg.init == "kmeans"
    if rm and km:
        return f"dream-{cfg.framework}"
    if rm:
        return f"{cfg.framework}+rm"
    if km:
        return f"{cfg.framework}+kmeans-init"
    return cfg.framework


def _grad_scale(cfg: DistillConfig, train: DatasetSplit, device: torch.device):
    return registry.framework(cfg.framework).grad_scale(train.info, device)


def _load_checkpoint(path: Path) -> dict[str, Any]:
    state = load_checkpoint_file(path, "checkpoint", "delete it to start over")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a dream-cl distillation checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise UserError(f"{path} was written by a newer dream-cl; upgrade to resume it")
    if state.get("version", 0) < CHECKPOINT_VERSION:
        raise UserError(
            f"{path} was written by an earlier dream-cl (checkpoint version "
            f"{state.get('version', 0)}, this one writes {CHECKPOINT_VERSION}: other random "
            "streams or protocol); rerun without --resume in a new --out"
        )
    return state


def eval_model_options(cfg: DistillConfig) -> dict[str, Any] | None:
    """Options of the evaluation model: ``eval_width`` applies to the ConvNet family only."""
    if cfg.eval_width is not None and cfg.eval_model.startswith("convnet"):
        return {"width": cfg.eval_width}
    return None


def describe_data(train: DatasetSplit | ShardedTrain) -> dict[str, Any]:
    """What a run was distilled from, recorded in ``config.json``: a checkpoint continues
    only on the same classes and class sizes (the same on every rank: global bounds)."""
    info, offsets = train.info, train.offsets
    return {
        "dataset": info.name,
        "classes": list(info.class_names),
        "class_counts": (offsets[1:] - offsets[:-1]).tolist(),
        "image_shape": [info.channels, info.image_size, info.image_size],
    }


def _check_same_data(saved: Any, current: dict[str, Any], folder: Path) -> None:
    """A resumed run's data matches the run's record (a moved data root is fine; a folder
    written before the record was kept is taken on trust)."""
    saved = saved if isinstance(saved, dict) else {}
    keys = sorted(k for k in current if k != "data_root" and k in saved)
    diff = [k for k in keys if saved[k] != current[k]]
    if diff:
        raise UserError(
            f"--resume: the run in {folder} was distilled from other data ({', '.join(diff)} "
            "differ); use the original dataset and classes or another --out"
        )


def _check_same_run(saved: dict[str, Any], cfg: DistillConfig, path: Path) -> None:
    current = cfg.to_dict()
    # a setting added after the run was saved had its default value then
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(DistillConfig)
        if f.default is not dataclasses.MISSING
    }
    diff = sorted(
        k
        for k in set(saved) | set(current)
        if k not in _RESUMABLE_CHANGES and saved.get(k, defaults.get(k)) != current.get(k)
    )
    if diff:
        raise UserError(
            f"--resume: settings differ from the run in {path.parent} ({', '.join(diff)}); "
            "use the original settings or another --out"
        )


@dataclass
class ShardedTrain:
    """A rank's share of the training split: its classes' images (a copy, so the whole
    split can be freed) and the class bounds of the whole split, from which every rank
    draws the same network-update batches."""

    local: DatasetSplit
    offsets: torch.Tensor

    @classmethod
    def from_split(cls, train: DatasetSplit, shard: ClassShard) -> ShardedTrain:
        if shard.world_size == 1:
            return cls(train, train.offsets)
        lo, hi = int(train.offsets[shard.start]), int(train.offsets[shard.stop])
        local = DatasetSplit(
            train.images[lo:hi].clone(), train.labels[lo:hi].clone(), train.info, train.held_out
        )
        return cls(local, train.offsets.clone())

    @property
    def info(self):
        return self.local.info

    @property
    def held_out(self) -> tuple[str, float, int] | None:
        return self.local.held_out

    @property
    def num_classes(self) -> int:
        return self.local.num_classes

    def to(self, device: torch.device) -> DatasetSplit:
        """The local split on ``device`` (class ids and labels as in the dataset)."""
        local = self.local
        return DatasetSplit(
            local.images.to(device), local.labels.to(device), self.info, self.held_out
        )


def framework_info(info: DatasetInfo, framework: str) -> DatasetInfo:
    """The normalisation each framework's official code uses: DREAM/IDC normalise CIFAR-100
    with CIFAR-10's statistics (the dataset's default here), VICO's DC/DSA/DM with
    CIFAR-100's own. The set keeps the statistics it was distilled with, so it is
    evaluated with them too (the rules: :mod:`dream_cl.protocol.normalization`)."""
    return registry.framework(framework).normalize(info)


def shard_train(train: DatasetSplit, env: DistEnv | None = None) -> ShardedTrain:
    """This rank's share of ``train`` (all of it in a single process)."""
    env = env or DistEnv.current()
    return ShardedTrain.from_split(train, ClassShard.for_env(train.num_classes, env))


def _prepare_out(
    out_dir: Path | None,
    cfg: DistillConfig,
    resume: bool,
    progress: Progress,
    data: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Check the output folder (rank 0 decides) and read the checkpoint to continue from.

    A folder without a checkpoint (empty, or a run killed before its first one) starts a
    run, with a note under ``resume``. A checkpoint of these exact settings continues with
    or without ``resume``; with ``resume``, one of other settings continues if only
    resumable settings differ. Another command's folder, unknown files, or a finished
    set of other settings without ``resume`` are refused with one line.
    """
    if out_dir is None:
        return None
    ckpt_path = out_dir / CHECKPOINT_FILE

    def check() -> bool:
        nothing_to_lose = not ckpt_path.exists() and not (out_dir / "images.pt").exists()
        # other settings need --resume, unless there is nothing of theirs to lose
        state = claim(out_dir, "distill", run_record(cfg, data), resume or nothing_to_lose)
        if state.kind in ("missing", "empty") or nothing_to_lose:
            if resume:
                notify(
                    progress,
                    f"--resume: no checkpoint in {out_dir} yet; starting from the beginning",
                )
            return False
        if not ckpt_path.exists():
            raise UserError(
                f"{out_dir} holds a finished set but no checkpoint.pt to continue from; "
                "choose another --out"
            )
        if state.kind == "same" and not resume:
            notify(progress, f"{out_dir} holds an earlier run of these settings; continuing it")
        _check_same_data((state.saved or {}).get("data"), data or {}, out_dir)
        return True

    if not agree(check):
        return None
    return agree(lambda: _load_checkpoint(ckpt_path))


def run_record(cfg: DistillConfig, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run folder's ``config.json``: the configuration and where the data came from."""
    return record("distill", cfg.to_dict(), **({"data": data} if data else {}))


def _read_timing(path: Path) -> dict[str, Any]:
    """The checkpoint's wall-clock accounting; unreadable or absent: none (it is only time)."""
    try:
        timing = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return timing if isinstance(timing, dict) else {}


def _sharded(train: DatasetSplit | ShardedTrain, shard: ClassShard, framework: str) -> ShardedTrain:
    """This rank's share of ``train``, normalised with the framework's own statistics."""
    if isinstance(train, DatasetSplit):
        train = ShardedTrain.from_split(train, shard)
    info = framework_info(train.info, framework)
    if info == train.info:
        return train
    local = train.local
    return ShardedTrain(
        DatasetSplit(local.images, local.labels, info, local.held_out), train.offsets
    )


def _initial_set(
    cfg: DistillConfig,
    train: ShardedTrain,
    train_dev: DatasetSplit,
    shard: ClassShard,
    streams: RandomStreams,
    timer: Timer,
    device: torch.device,
    resuming: bool,
) -> SyntheticSet:
    """The synthetic set at iteration 0, or a blank one that a checkpoint fills."""
    if resuming:
        shape = (shard.stop - shard.start) * cfg.ipc, *train.local.images.shape[1:]
        images = torch.zeros(shape, device=device)
        return SyntheticSet(images, train.info, cfg.ipc, cfg.factor, classes=shard.classes)
    # the network of iteration 0 embeds for the k-means init, as in the official code
    with timer.section("init"):
        embed = (
            embed_fn(make_net(cfg, train_dev.info, device, 0), train_dev.info, device)
            if cfg.init == "kmeans"
            else None
        )
        return initialize(
            train_dev,
            cfg.ipc,
            cfg.factor,
            cfg.init,
            embed=embed,
            generator=streams.per_class,
            device=device,
            classes=shard.classes,
        )


@dataclass
class DistillRun:
    """One call of :func:`distill`: the run's state (:class:`RunState`, its one home) and
    the things around it, each in one method: set-up and resume (:meth:`open`), periodic
    evaluation (:meth:`evaluate`), checkpoints (:meth:`save_checkpoint`), the outer loop
    (:meth:`run`) and the artifacts (:meth:`finish`).

    It holds the framework steps' :class:`Context`, the view over the state, and reads the
    state, its configuration and the device through it: each has one home."""

    env: DistEnv
    progress: Progress
    out_dir: Path | None
    ctx: Context
    test: DatasetSplit | None
    data: dict[str, Any] | None
    started: float
    """``perf_counter()`` when this call began its work (after the folder checks)."""
    checkpointed: int | None = None
    """The iteration of the newest checkpoint in ``out_dir`` (None: none yet)."""
    meter: CostMeter | None = None
    """What this call costs (started by the caller, to include its data loading)."""
    logs: IterationLog | None = None
    """The per-iteration log (rank 0, with an output folder)."""

    @property
    def state(self) -> RunState:
        return self.ctx.state

    @property
    def cfg(self) -> DistillConfig:
        return self.ctx.state.cfg

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @classmethod
    def open(
        cls,
        cfg: DistillConfig,
        train: DatasetSplit | ShardedTrain,
        test: DatasetSplit | None,
        *,
        out: str | Path | None,
        resume: bool,
        progress: Progress | None,
        env: DistEnv,
        data: dict[str, Any] | None,
        meter: CostMeter | None = None,
        log: LogOptions | None = None,
    ) -> DistillRun:
        """Check the inputs and the folder, then build the run fresh or from its checkpoint."""
        cfg.validate()
        progress = progress if (progress is not None and env.is_main) else NullProgress()
        device = resolve_device(cfg.device)
        check_precision(cfg.precision, device)
        out_dir = Path(out) if out is not None else None
        if cfg.eval_every > 0 and test is None and env.is_main:
            raise ValueError("eval_every > 0 needs a test split")
        from dream_cl.data.validation import ValidationSpec, check_parts

        check_parts(ValidationSpec(cfg.val_fraction, cfg.val_seed), train, test, cfg.eval_split)
        data = {**(data or {}), **describe_data(train)}
        saved = _prepare_out(out_dir, cfg, resume, progress, data)
        if saved is not None:
            _check_same_run(saved["config"], cfg, out_dir / CHECKPOINT_FILE)  # type: ignore[operator]

        started = time.perf_counter()
        shard = ClassShard.for_env(train.num_classes, env)
        train = _sharded(train, shard, cfg.framework)
        train_dev = train.to(device)
        streams = RandomStreams.create(cfg.seed, shard.classes)
        sampler = make_sampler(cfg, train_dev, shard.classes)
        timer = Timer(device)
        syn = _initial_set(
            cfg,
            train,
            train_dev,
            shard=shard,
            streams=streams,
            timer=timer,
            device=device,
            resuming=saved is not None,
        )
        syn.images.requires_grad_(True)
        opt_img = torch.optim.SGD([syn.images], lr=cfg.lr_img, momentum=cfg.momentum_img)
        state = RunState(cfg, shard, syn, opt_img, streams, sampler, timer)
        if saved is not None:
            try:
                state.load_state_dict(saved)
            except (RuntimeError, KeyError, IndexError):
                raise UserError(
                    f"{out_dir / CHECKPOINT_FILE} does not fit this run's data or settings; "
                    "use the original ones or another --out"
                ) from None
            if env.is_main:
                state.load_timing_dict(_read_timing(out_dir / TIMING_FILE))  # type: ignore[operator]
            if state.iteration > cfg.iterations:
                raise UserError(
                    f"--resume: the run in {out_dir} is already at iteration "
                    f"{state.iteration}; pass --iterations >= {state.iteration}"
                )
            notify(
                progress,
                f"continuing from iteration {state.iteration} of {cfg.iterations} "
                f"(the checkpoint in {out_dir})",
            )
        ctx = Context(
            state,
            train_dev,
            device,
            grad_scale=_grad_scale(cfg, train_dev, device),
            real_offsets=train.offsets,
        )
        if out_dir is not None and env.is_main:
            atomic_write_json(run_record(cfg, data), out_dir / CONFIG_FILE)
        saved_at = state.iteration if saved is not None else None
        meter = meter or CostMeter.start(device, reset_peak=False)
        logs = None
        if out_dir is not None and env.is_main:
            logs = IterationLog(out_dir, log or LogOptions(), cfg.to_dict(), out_dir.name)
        return cls(env, progress, out_dir, ctx, test, data, started, saved_at, meter, logs)

    def evaluate(self, iteration: int) -> None:
        """Train the evaluation models on the current set and record their accuracy
        (collective: every rank gathers the set, rank 0 alone trains)."""
        from dream_cl.evaluate import evaluate_image_set

        cfg, state = self.cfg, self.state
        image_set = state.full_set(method_name(cfg))  # collective
        if not self.env.is_main:
            return
        with state.timer.section("evaluation"):
            result = evaluate_image_set(
                image_set,
                self.test,
                model=cfg.eval_model,
                repeats=cfg.eval_repeats,
                cfg=cfg.eval_config(),
                model_options=eval_model_options(cfg),
                seed=cfg.seed,
                device=self.device,
            )
        state.evals.append(
            {
                "iteration": iteration,
                "model": cfg.eval_model,
                "split": cfg.eval_split,
                "recipe": cfg.resolved_eval_recipe(),
                "mean": result.mean,
                "std": result.std,
                "accuracies": result.accuracies,
            }
        )

    def save_checkpoint(self) -> None:
        """Write the state and its timing atomically (collective; rank 0 writes)."""
        if self.out_dir is None:
            return
        with self.state.timer.section("checkpoint"):
            snapshot = self.state.state_dict()  # collective
            if self.env.is_main:
                atomic_torch_save(snapshot, self.out_dir / CHECKPOINT_FILE)
                atomic_write_json(self.state.timing_dict(), self.out_dir / TIMING_FILE)
        self.checkpointed = self.state.iteration

    def check_finite(self, iteration: int, loss: float) -> None:
        """Stop a run whose loss or images became NaN or infinite, before anything of it is
        saved (collective: every rank stops together, at the same iteration)."""
        bad_loss, bad_images = any_rank(
            not math.isfinite(loss), not bool(torch.isfinite(self.state.syn.images).all())
        )
        if not (bad_loss or bad_images):
            return
        what = "loss" if bad_loss else "synthetic images"
        kept = (
            f"the checkpoint of iteration {self.checkpointed} in {self.out_dir} is kept"
            if self.checkpointed is not None and self.out_dir is not None
            else "nothing of it was saved"
        )
        raise AgreedError(
            f"the distillation diverged at iteration {iteration}: its {what} became NaN or "
            f"infinite; {kept}. Lower the image learning rate (lr_img) and start again in "
            "a new --out"
        )

    def run(self, stop_after: int | None = None) -> None:
        """The framework's outer iterations from where the state is, evaluating and
        checkpointing on schedule; ``stop_after`` ends early (with a checkpoint)."""
        cfg, state, progress = self.cfg, self.state, self.progress
        start = state.iteration
        if start == 0 and cfg.eval_every > 0 and not any(e["iteration"] == 0 for e in state.evals):
            self.evaluate(0)
        step = OuterStep(registry.framework(cfg.framework).outer)
        progress.start("distill", cfg.iterations)
        if start:
            progress.advance("distill", start)
        on_cpu = self.device.type == "cpu" and self.env.is_main
        pace = PaceNote.for_run(cfg, cfg.iterations - start, progress, on_cpu)
        self.ctx.hooks.register("inner", pace.inner_step)
        if self.logs is not None:
            self.logs.start(start)
        try:
            self._iterations(step, start, stop_after, pace)
        finally:
            if self.logs is not None:
                self.logs.close()
        progress.finish("distill")

    def _iterations(
        self, step: OuterStep, start: int, stop_after: int | None, pace: PaceNote
    ) -> None:
        cfg, state, progress = self.cfg, self.state, self.progress
        for it in range(start, cfg.iterations):
            before = dict(state.timer.seconds)
            loss = step(self.ctx, it)
            self.check_finite(it + 1, loss)
            state.losses.append(loss)
            done = state.iteration = it + 1
            pace.outer_step(done - start)
            if cfg.eval_every > 0 and done % cfg.eval_every == 0:
                self.evaluate(done)
            stopping = stop_after is not None and done - start >= stop_after
            if done % cfg.checkpoint_every == 0 or done == cfg.iterations or stopping:
                self.save_checkpoint()
            metrics = {"loss": loss}
            if state.evals:
                metrics["acc"] = state.evals[-1]["mean"]
            progress.advance("distill", 1, **metrics)
            self._log_iteration(done, loss, before)
            if stopping and done < cfg.iterations:
                break

    def _log_iteration(self, done: int, loss: float, before: dict[str, float]) -> None:
        """The iteration's row: loss, the evaluation made at it, each phase's seconds."""
        if self.logs is None:
            return
        evals = self.state.evals
        now = self.state.timer.seconds
        values: dict[str, float | None] = {
            "loss": loss,
            "eval_accuracy": evals[-1]["mean"]
            if evals and evals[-1]["iteration"] == done
            else None,
        }
        for key in LOGGED_PHASES:
            values[f"seconds_{key}"] = now.get(key, 0.0) - before.get(key, 0.0)
        self.logs.log(done, values)

    def metrics(self, image_set: ImageSet) -> dict[str, Any]:
        """``metrics.json``: the loss curve, the evaluations, and where the time went."""
        cfg, state = self.cfg, self.state
        stats = getattr(state.sampler, "stats", None)
        return {
            "method": method_name(cfg),
            "dataset": cfg.dataset,
            "iterations_done": len(state.losses),
            "losses": state.losses,
            "evals": state.evals,
            "time_seconds": dict(state.timer.seconds),
            "time_laps": {k: list(v) for k, v in state.timer.laps.items()},
            "wall_seconds_this_call": time.perf_counter() - self.started,
            "sampler": None
            if stats is None
            else {
                "refreshes": stats.refreshes,
                "embed_seconds": stats.embed_seconds,
                "kmeans_seconds": stats.kmeans_seconds,
                "select_seconds": stats.select_seconds,
            },
            "stored_images": image_set.num_stored,
            "decoded_images": image_set.num_decoded,
            "device": str(self.device),
            "processes": self.env.world_size,
            "classes_per_process": state.shard.sizes(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "config": cfg.to_dict(),
        }

    def finish(self) -> DistillResult:
        """The whole set (collective); rank 0 writes the artifacts of a finished run, or
        ``metrics.partial.json`` for one stopped early."""
        cfg, out_dir = self.cfg, self.out_dir
        meta = {"ipc": cfg.ipc, "config": cfg.to_dict()}
        image_set = self.state.full_set(method_name(cfg), meta=meta)
        metrics = self.metrics(image_set)
        metrics["cost"] = self.meter.finish() if self.meter is not None else None  # collective
        if out_dir is not None and self.env.is_main:
            if len(self.state.losses) == cfg.iterations:
                from dream_cl.visualize import save_class_grid

                save_image_set(image_set, out_dir)
                save_class_grid(image_set.images, image_set.labels, out_dir / "grid.png")
                atomic_write_json(metrics, out_dir / "metrics.json")
            else:
                atomic_write_json(metrics, out_dir / "metrics.partial.json")
        return DistillResult(image_set, metrics, out_dir)


def distill(
    cfg: DistillConfig,
    train: DatasetSplit | ShardedTrain,
    test: DatasetSplit | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    stop_after: int | None = None,
    env: DistEnv | None = None,
    data: dict[str, Any] | None = None,
    meter: CostMeter | None = None,
    log: LogOptions | None = None,
) -> DistillResult:
    """Run DREAM (or a baseline) on ``train``; evaluate on ``test`` every ``eval_every``.

    ``test`` is the split periodic evaluation reports on: the test split (monitoring only;
    nothing is chosen on it) or, with ``cfg.eval_split == "val"``, the validation split
    that :func:`dream_cl.data.validation.hold_out` carved out of ``train`` beforehand.

    ``data`` (e.g. the data root) is recorded in ``config.json`` and is part of what makes
    a later call "the same run".

    Under torchrun (``env``: the process group's view by default) each rank distils its
    block of classes and gets the whole synthetic set back; rank 0 alone evaluates (only
    it needs ``test``) and writes. Pass :func:`shard_train`'s result to free the other
    classes' images. ``stop_after`` ends the run early after that many outer iterations
    of this call (with a checkpoint), which is how tests and schedulers interrupt a run.
    """
    run = DistillRun.open(
        cfg,
        train,
        test,
        out=out,
        resume=resume,
        progress=progress,
        env=env or DistEnv.current(),
        data=data,
        meter=meter,
        log=log,
    )
    run.run(stop_after)
    return run.finish()
