"""The distillation driver: initialise, run a framework's outer iterations, evaluate,
checkpoint atomically, resume exactly, and write the artifact, grid and metrics.

Output folder layout (``out``):

- ``config.json``: the resolved configuration;
- ``checkpoint.pt``: the state at the last checkpointed iteration (tensors and plain
  containers only, loaded with ``weights_only=True``);
- ``images.pt`` + ``meta.json``: the final synthetic set in the image-set format;
- ``grid.png``: the stored images, one row per class;
- ``metrics.json``: loss curve, periodic accuracies, time breakdown.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dream_cl.artifact import ImageSet, save_image_set
from dream_cl.data.base import DatasetSplit
from dream_cl.distill.config import DistillConfig
from dream_cl.distill.frameworks import FRAMEWORK_STEPS, Context, Timer, embed_fn, make_net
from dream_cl.distill.samplers import RandomSampler, RealSampler, RepresentativeSampler
from dream_cl.distill.synthetic import SyntheticSet, initialize
from dream_cl.errors import UserError
from dream_cl.progress import NullProgress, Progress
from dream_cl.utils import atomic_torch_save, atomic_write_json, resolve_device

CHECKPOINT_FORMAT = "dream-cl-distill-checkpoint"
CHECKPOINT_VERSION = 1
# settings that may differ between a run and its resumption without changing the result
_RESUMABLE_CHANGES = {
    "iterations",
    "eval_every",
    "eval_epochs",
    "eval_repeats",
    "eval_width",
    "eval_model",
    "checkpoint_every",
    "device",
}


@dataclass
class DistillResult:
    image_set: ImageSet
    metrics: dict[str, Any]
    out: Path | None


def make_sampler(cfg: DistillConfig, train: DatasetSplit) -> RealSampler:
    if cfg.sampler == "representative":
        return RepresentativeSampler(
            train,
            n_clusters=cfg.n_clusters,
            per_cluster=cfg.per_cluster,
            interval=cfg.interval,
            max_iter=cfg.kmeans_max_iter,
            candidates=cfg.candidates,
        )
    return RandomSampler(train, batch_size=cfg.batch_real)


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
    if cfg.framework == "idc":
        return None
    std = torch.tensor(train.info.std, device=device).view(1, -1, 1, 1)
    return std * std


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means an unusable file
        raise UserError(
            f"checkpoint {path} cannot be read ({type(err).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a dream-cl distillation checkpoint")
    if state.get("version", 0) > CHECKPOINT_VERSION:
        raise UserError(f"{path} was written by a newer dream-cl; upgrade to resume it")
    return state


def eval_model_options(cfg: DistillConfig) -> dict[str, Any] | None:
    """Options of the evaluation model: ``eval_width`` applies to the ConvNet family only."""
    if cfg.eval_width is not None and cfg.eval_model.startswith("convnet"):
        return {"width": cfg.eval_width}
    return None


def _check_same_run(saved: dict[str, Any], cfg: DistillConfig, path: Path) -> None:
    current = cfg.to_dict()
    diff = sorted(
        k
        for k in set(saved) | set(current)
        if k not in _RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )
    if diff:
        raise UserError(
            f"--resume: settings differ from the run in {path.parent} ({', '.join(diff)}); "
            "use the original settings or another --out"
        )


def distill(
    cfg: DistillConfig,
    train: DatasetSplit,
    test: DatasetSplit | None = None,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> DistillResult:
    """Run DREAM (or a baseline) on ``train``; evaluate on ``test`` every ``eval_every``.

    ``stop_after`` ends the run early after that many outer iterations of this call (with a
    checkpoint), which is how tests and schedulers interrupt a run deterministically.
    """
    cfg.validate()
    progress = progress or NullProgress()
    device = resolve_device(cfg.device)
    out_dir = Path(out) if out is not None else None
    ckpt_path = out_dir / "checkpoint.pt" if out_dir is not None else None
    if ckpt_path is not None and ckpt_path.exists() and not resume:
        raise UserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and (ckpt_path is None or not ckpt_path.exists()):
        raise UserError(f"--resume: no checkpoint in {out_dir}; run without --resume first")
    if cfg.eval_every > 0 and test is None:
        raise ValueError("eval_every > 0 needs a test split")

    start_wall = time.perf_counter()
    train_dev = DatasetSplit(train.images.to(device), train.labels.to(device), train.info)
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = make_sampler(cfg, train_dev)
    timer = Timer(device)
    losses: list[float] = []
    evals: list[dict[str, Any]] = []
    start = 0

    # the network of iteration 0 embeds for the k-means init, as in the official code
    if resume and ckpt_path is not None:
        state = _load_checkpoint(ckpt_path)
        _check_same_run(state["config"], cfg, ckpt_path)
        images = state["images"].to(device).requires_grad_(True)
        syn = SyntheticSet(images=images, info=train_dev.info, ipc=cfg.ipc, factor=cfg.factor)
        generator.set_state(state["generator"])
        sampler.load_state_dict(state.get("sampler", {}))
        losses = list(state["losses"])
        evals = list(state["evals"])
        for k, v in state["timer"].items():
            timer.seconds[k] = v
        start = int(state["iteration"])
        if start > cfg.iterations:
            raise UserError(
                f"--resume: the run in {out_dir} is already at iteration {start}; "
                f"pass --iterations >= {start}"
            )
    else:
        with timer.section("init"):
            embed = (
                embed_fn(make_net(cfg, train_dev.info, device, 0), train_dev.info, device)
                if cfg.init == "kmeans"
                else None
            )
            syn = initialize(
                train_dev,
                cfg.ipc,
                cfg.factor,
                cfg.init,
                embed=embed,
                generator=generator,
                device=device,
            )
    opt_img = torch.optim.SGD([syn.images], lr=cfg.lr_img, momentum=cfg.momentum_img)
    if resume:
        opt_img.load_state_dict(state["opt_img"])
    ctx = Context(
        cfg,
        train_dev,
        syn,
        opt_img,
        sampler,
        generator,
        device,
        timer,
        grad_scale=_grad_scale(cfg, train_dev, device),
    )
    if out_dir is not None:
        atomic_write_json(cfg.to_dict(), out_dir / "config.json")

    def evaluate_now(iteration: int) -> None:
        from dream_cl.evaluate import EvalConfig, evaluate_image_set

        with timer.section("evaluation"):
            result = evaluate_image_set(
                syn.to_image_set(method_name(cfg)),
                test,
                model=cfg.eval_model,
                repeats=cfg.eval_repeats,
                cfg=EvalConfig(epochs=cfg.eval_epochs),
                model_options=eval_model_options(cfg),
                seed=cfg.seed,
                device=device,
            )
        evals.append(
            {
                "iteration": iteration,
                "model": cfg.eval_model,
                "mean": result.mean,
                "std": result.std,
                "accuracies": result.accuracies,
            }
        )

    def save_checkpoint(iteration: int) -> None:
        if ckpt_path is None:
            return
        with timer.section("checkpoint"):
            atomic_torch_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "version": CHECKPOINT_VERSION,
                    "iteration": iteration,
                    "images": syn.images.detach().cpu(),
                    "opt_img": opt_img.state_dict(),
                    "generator": generator.get_state(),
                    "sampler": sampler.state_dict(),
                    "losses": losses,
                    "evals": evals,
                    "timer": dict(timer.seconds),
                    "config": cfg.to_dict(),
                },
                ckpt_path,
            )

    if start == 0 and cfg.eval_every > 0 and not any(e["iteration"] == 0 for e in evals):
        evaluate_now(0)
    step = FRAMEWORK_STEPS[cfg.framework]
    progress.start("distill", cfg.iterations)
    if start:
        progress.advance("distill", start)
    for it in range(start, cfg.iterations):
        loss = step(ctx, it)
        losses.append(loss)
        done = it + 1
        if cfg.eval_every > 0 and done % cfg.eval_every == 0:
            evaluate_now(done)
        if done % cfg.checkpoint_every == 0 or done == cfg.iterations:
            save_checkpoint(done)
        metrics = {"loss": loss}
        if evals:
            metrics["acc"] = evals[-1]["mean"]
        progress.advance("distill", 1, **metrics)
        if stop_after is not None and done - start >= stop_after and done < cfg.iterations:
            save_checkpoint(done)
            break
    progress.finish("distill")

    image_set = syn.to_image_set(method_name(cfg), meta={"ipc": cfg.ipc, "config": cfg.to_dict()})
    seconds = dict(timer.seconds)
    stats = getattr(sampler, "stats", None)
    metrics: dict[str, Any] = {
        "method": method_name(cfg),
        "dataset": cfg.dataset,
        "iterations_done": len(losses),
        "losses": losses,
        "evals": evals,
        "time_seconds": seconds,
        "time_laps": {k: list(v) for k, v in timer.laps.items()},
        "wall_seconds_this_call": time.perf_counter() - start_wall,
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
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "config": cfg.to_dict(),
    }
    if out_dir is not None and len(losses) == cfg.iterations:
        from dream_cl.visualize import save_class_grid

        save_image_set(image_set, out_dir)
        save_class_grid(image_set.images, image_set.labels, out_dir / "grid.png")
        atomic_write_json(metrics, out_dir / "metrics.json")
    elif out_dir is not None:
        atomic_write_json(metrics, out_dir / "metrics.partial.json")
    return DistillResult(image_set, metrics, out_dir)
