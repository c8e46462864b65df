"""Evaluate a small image set: train a fresh net on it, test on real data, report the last epoch.

Each framework is evaluated with its own official recipe (``EvalConfig.recipe``):

- ``idc`` (IDC ``train.py``, which DREAM reuses; IDC and DREAM sets and every coreset): SGD
  lr 0.01, momentum 0.9, weight decay 5e-4, batch 64, 1000 epochs, MultiStepLR x0.2 at 2/3
  and 5/6 of the epochs (666 and 833); per batch the images are normalised, augmented with
  per-sample DSA (flip, colour, one geometric op, cutout as listed), then CutMix'ed with
  probability 0.5 (the dataset rules of :func:`official_eval_cutmix`).
- ``dc``, ``dsa``, ``dm`` (VICO ``utils.evaluate_synset``): batch 256, SGD lr 0.01, momentum
  0.9, weight decay 5e-4, ``E + 1`` passes with the lr x0.1 after pass ``E // 2 + 1`` (the
  optimiser rebuilt there, so its momentum restarts), no CutMix. DSA and DM augment with
  per-sample DSA in their 'S' mode (one op group per call, among
  ``color_crop_cutout_flip_scale_rotate``), E = 1000. DC augments only MNIST (one of crop,
  scale, rotate per image, E = 1000) and trains every other dataset without augmentation
  (E = 300).

Differences from the official code, on purpose:

- The reported number is the **last** epoch's top-1 accuracy on the full test split. The
  official IDC log also prints a "best" (the max over test checkpoints), which selects on the
  test set; we never report it.
- Every random draw (shuffling, augmentation, CutMix) comes from one seeded CPU
  ``torch.Generator``, so a run is reproducible from ``seed`` alone.
- A trailing batch of a single image is merged into the previous batch (BatchNorm models cannot
  train on one image); with the default batch 64 this only matters for sets of 64k+1 images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dream_cl.artifact import ImageSet
from dream_cl.augment import cutmix_loss, dsa, maybe_cutmix, parse_strategy
from dream_cl.augment.dcaug import dc_augment
from dream_cl.data.base import DatasetInfo, DatasetSplit, to_float
from dream_cl.errors import UserError
from dream_cl.models import build_model
from dream_cl.progress import NullProgress, Progress
from dream_cl.protocol.evaluation import (
    FULL_EVAL_DSA,
    RECIPES,
    default_eval_dsa,
    default_recipe_epochs,
    eval_augmentation,
    official_eval_cutmix,
    recipe_for_framework,
    recipe_settings,
)
from dream_cl.utils import atomic_torch_save, load_checkpoint_file

__all__ = [
    "DSA_MODES",
    "EVAL_CHECKPOINT_FORMAT",
    "EVAL_CHECKPOINT_VERSION",
    "FULL_EVAL_DSA",
    "RECIPES",
    "EvalCheckpoint",
    "EvalConfig",
    "EvalResult",
    "default_eval_dsa",
    "default_recipe_epochs",
    "eval_recipe",
    "evaluate_image_set",
    "official_eval_cutmix",
    "recipe_for_framework",
    "resolve_eval_config",
    "test_accuracy",
    "train_and_test",
]
"""The recipes and their rules live in :mod:`dream_cl.protocol.evaluation`; the ones callers
import from here are re-exported."""

DSA_MODES = ("stack", "one")
"""``stack``: IDC's DiffAug (flip, colour, one geometric op, cutout, each if listed);
``one``: the DSA/DM papers' 'S' mode (one op group per call, chosen at random)."""


@dataclass(frozen=True)
class EvalConfig:
    """Training recipe for evaluation; the defaults are the official IDC/DREAM protocol.

    Build another framework's recipe with :func:`eval_recipe`. ``milestones`` are fractions
    of ``epochs``; ``lr_epochs``, when set, gives the decay epochs explicitly instead.
    ``dsa_strategy=None`` means "the official IDC recipe for this dataset" (see
    :func:`resolve_eval_config`): the dataset's DSA strategy and, for the cases the official
    code evaluates without CutMix, ``cutmix_p`` forced to 0. Give a strategy explicitly
    ('none' for no DSA) to control ``cutmix_p`` yourself.
    """

    epochs: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    milestones: tuple[float, ...] = (2 / 3, 5 / 6)
    gamma: float = 0.2
    dsa_strategy: str | None = None
    cutmix_p: float = 0.5
    cutmix_beta: float = 1.0
    test_batch_size: int = 500
    recipe: str = "idc"
    dsa_mode: str = "stack"
    dc_augment: str = "none"
    """DC's per-image augmentation (``crop_scale_rotate`` on MNIST), applied before DSA."""
    lr_epochs: tuple[int, ...] | None = None
    restart_optimizer: bool = False
    """Rebuild the optimiser at each lr decay (VICO's loop does), so momentum restarts."""

    def __post_init__(self) -> None:
        from dream_cl.settings import refuse_non_finite

        refuse_non_finite(self, "evaluation")
        for name in ("epochs", "batch_size", "test_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"evaluation {name}={value!r} must be a positive integer")
        if not 0.0 <= self.cutmix_p <= 1.0:
            raise UserError(f"evaluation cutmix_p={self.cutmix_p} must lie in [0, 1]")
        if any(not 0.0 < f < 1.0 for f in self.milestones):
            raise UserError(
                f"evaluation milestones {self.milestones} must be fractions of the epochs in (0, 1)"
            )
        if self.recipe not in RECIPES:
            raise UserError(f"unknown evaluation recipe '{self.recipe}'; use {', '.join(RECIPES)}")
        if self.dsa_mode not in DSA_MODES:
            raise UserError(f"unknown DSA mode '{self.dsa_mode}'; use {' or '.join(DSA_MODES)}")

    def milestone_epochs(self) -> list[int]:
        """Epoch indices at which the lr is multiplied by ``gamma`` (666, 833 for 1000)."""
        if self.lr_epochs is not None:
            return list(self.lr_epochs)
        # The small epsilon makes e.g. 300 * (2/3) land on 200, like the official 2 * 300 // 3.
        return [int(self.epochs * f + 1e-9) for f in self.milestones]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        d["lr_epochs"] = None if self.lr_epochs is None else list(self.lr_epochs)
        d["milestone_epochs"] = self.milestone_epochs()
        return d


def eval_recipe(recipe: str, dataset: str, *, epochs: int | None = None) -> EvalConfig:
    """The official evaluation recipe ``recipe`` for ``dataset``, with E = ``epochs``.

    For ``idc`` the DSA strategy is left to :func:`resolve_eval_config` (it depends on the
    set's factor and IPC). For the VICO recipes ``epochs`` is their E: the loop runs E + 1
    passes and decays the lr after pass E // 2 + 1, as ``evaluate_synset`` does.
    """
    if recipe not in RECIPES:
        raise UserError(f"unknown evaluation recipe '{recipe}'; use {', '.join(RECIPES)}")
    return EvalConfig(**recipe_settings(recipe, dataset, epochs))


def resolve_eval_config(
    cfg: EvalConfig, dataset: str, factor: int = 1, ipc: int = 10
) -> EvalConfig:
    """Fill ``dsa_strategy=None`` with the dataset's official strategy (and CutMix choice).

    A config with an explicit strategy is returned unchanged.
    """
    if cfg.dsa_strategy is not None:
        return cfg
    strategy, cutmix_p = eval_augmentation(dataset, factor, ipc, cfg.cutmix_p)
    return dataclasses.replace(cfg, dsa_strategy=strategy, cutmix_p=cutmix_p)


def _augment(x: torch.Tensor, cfg: EvalConfig, ops: tuple[str, ...], gen: torch.Generator):
    """The recipe's augmentation of one normalised training batch."""
    if cfg.dc_augment != "none":
        x = dc_augment(x, cfg.dc_augment, gen)
    if not ops:
        return x
    if cfg.dsa_mode == "one" and len(ops) > 1:
        ops = (ops[int(torch.randint(len(ops), (1,), generator=gen))],)
    return dsa(x, ops, generator=gen, per_sample=True)


def _batches(perm: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split a permutation into batches; a trailing singleton joins the previous batch."""
    parts = list(torch.split(perm, batch_size))
    if len(parts) > 1 and parts[-1].numel() == 1:
        last = parts.pop()
        parts[-1] = torch.cat([parts[-1], last])
    return parts


@torch.no_grad()
def test_accuracy(
    model: nn.Module,
    test: DatasetSplit,
    info: DatasetInfo,
    device: torch.device | str = "cpu",
    batch_size: int = 500,
) -> float:
    """Top-1 accuracy (in [0,1]) on the whole split, in eval mode.

    Test images stay uint8 on the CPU; each batch is converted and normalised on ``device``,
    so memory grows with the batch, not the split.
    """
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(test), batch_size):
        x = info.normalize(to_float(test.images[start : start + batch_size].to(device)))
        y = test.labels[start : start + batch_size].to(device)
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return correct / max(len(test), 1)


@dataclass(frozen=True)
class EvalCheckpoint:
    """Where a long evaluation saves itself, so that rerunning it continues where it stopped.

    A ResNet or DenseNet trained for hundreds of epochs on a CPU takes most of an hour; a
    stop should cost minutes, not the model. Each training run is one file in ``folder``
    named by a fingerprint of its inputs (network, options, recipe, seed, dataset
    description, training images, test split), written atomically at the end of an epoch
    once ``every_seconds`` have passed since the last (0: every epoch). It holds the weights,
    the optimiser, the learning rate and the random streams, so on the same device and
    thread count a resumed run ends exactly where an uninterrupted one ends; a finished run
    keeps only its accuracy, so a rerun returns it without training. The caller removes
    ``folder`` once it has stored the result.
    """

    folder: Path
    every_seconds: float = 60.0


EVAL_CHECKPOINT_FORMAT = "dream-cl-eval-checkpoint"
EVAL_CHECKPOINT_VERSION = 1
"""Part of every fingerprint: bump it when a change to evaluation training (this loop, the
augmentations, the models) would make a saved run continue differently, so old files are
not resumed."""


def _tensor_digest(h: Any, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.view(-1).view(torch.uint8).numpy().tobytes())


def _run_fingerprint(
    model_name: str,
    model_options: dict[str, Any] | None,
    cfg: EvalConfig,
    seed: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    test: DatasetSplit,
    info: DatasetInfo,
) -> str:
    """sha256 of every input that decides a training run's result."""
    h = hashlib.sha256()
    meta = {
        "version": EVAL_CHECKPOINT_VERSION,
        "model": model_name,
        "model_options": model_options or {},
        "cfg": cfg.to_dict(),
        "seed": seed,
        "dataset": info.to_dict(),
    }
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for t in (images.to(torch.float32), labels.to(torch.int64), test.images, test.labels):
        _tensor_digest(h, t)
    return h.hexdigest()


@dataclass
class _Training:
    """One evaluation training run's whole state: the one thing a checkpoint saves."""

    model: nn.Module
    opt: torch.optim.Optimizer
    lr: float
    gen: torch.Generator
    device: torch.device
    epoch: int = 0
    """Epochs finished."""

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "epoch": self.epoch,
            "lr": self.lr,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "generator": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":  # only the training device: CPU runs never touch CUDA
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def decay_lr(
        self, gamma: float, restart: Callable[[float], torch.optim.Optimizer] | None
    ) -> None:
        """Multiply the lr by ``gamma``; with ``restart``, first rebuild the optimiser at the
        new lr (VICO's loop does, so its momentum restarts)."""
        self.lr *= gamma
        if restart is not None:
            self.opt = restart(self.lr)
        for group in self.opt.param_groups:
            group["lr"] = self.lr

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.lr = float(state["lr"])
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


def _read_eval_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none; a damaged file is one clear line."""
    if not path.exists():
        return None
    state = load_checkpoint_file(
        path, "evaluation checkpoint", "delete it to train that model from the start"
    )
    if not isinstance(state, dict) or state.get("format") != EVAL_CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not a dream-cl evaluation checkpoint; move it away")
    return state


def train_and_test(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    info: DatasetInfo,
    test: DatasetSplit,
    cfg: EvalConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    model_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    checkpoint: EvalCheckpoint | None = None,
) -> float:
    """Train a fresh ``model_name`` on (images, labels) and return its last-epoch test accuracy.

    ``images`` are float in [0,1] and already decoded. ``cfg.dsa_strategy=None`` resolves to the
    dataset's official strategy (assuming factor 1, ipc 10; :func:`evaluate_image_set` passes
    the real ones). Accuracy is a fraction in [0,1]. With ``checkpoint``, an interrupted call
    continues where it stopped when called again with the same arguments.
    """
    cfg = resolve_eval_config(cfg, info.name)
    strategy = parse_strategy(cfg.dsa_strategy or "none")
    progress = progress or NullProgress()
    device = torch.device(device)
    path, every_seconds = None, math.inf
    if checkpoint is not None:
        every_seconds = checkpoint.every_seconds
        fp = _run_fingerprint(model_name, model_options, cfg, seed, images, labels, test, info)
        path = Path(checkpoint.folder) / f"eval-{fp[:24]}.pt"
    saved = _read_eval_checkpoint(path) if path is not None else None
    if saved is not None and "accuracy" in saved:
        return float(saved["accuracy"])
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # anything outside our generator (e.g. dropout) is seeded too
    model = _fresh_model(model_name, info, model_options, gen).to(device)
    x_all = images.detach().to(device=device, dtype=torch.float32)
    y_all = labels.detach().to(device=device, dtype=torch.int64)
    n = int(y_all.shape[0])
    if n == 0:
        raise ValueError("cannot train on an empty image set")
    milestones = set(cfg.milestone_epochs())

    def sgd(lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )

    run = _Training(model=model, opt=sgd(cfg.lr), lr=cfg.lr, gen=gen, device=device)
    if saved is not None:
        _load_or_refuse(run, saved, path)
    progress.start("eval", cfg.epochs)
    if run.epoch:
        progress.advance("eval", run.epoch)
    model.train()
    last_save = time.monotonic()
    while run.epoch < cfg.epochs:
        if run.epoch in milestones:
            run.decay_lr(cfg.gamma, sgd if cfg.restart_optimizer else None)
        loss = _train_epoch(run, x_all, y_all, info, cfg, strategy)
        run.epoch += 1
        _check_loss(loss, model_name, seed, run.epoch, path)
        due = time.monotonic() - last_save >= every_seconds
        if path is not None and due and run.epoch < cfg.epochs:
            atomic_torch_save(_stamped(run.state_dict()), path)
            last_save = time.monotonic()
        progress.advance("eval", 1, loss=loss)
    acc = test_accuracy(model, test, info, device, cfg.test_batch_size)
    if path is not None:
        atomic_torch_save(_stamped({"accuracy": acc, "epoch": run.epoch}), path)
    progress.finish("eval")
    return acc


def train_and_test_ensemble(
    model_name: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    info: DatasetInfo,
    test: DatasetSplit,
    cfg: EvalConfig,
    *,
    seeds: list[int],
    device: torch.device | str = "cpu",
    model_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    checkpoint: EvalCheckpoint | None = None,
) -> list[float]:
    """:func:`train_and_test` for every seed of ``seeds`` at once, as one vmapped ensemble
    (:mod:`dream_cl.ensemble`; the caller checks :func:`~dream_cl.ensemble.can_ensemble`).
    The last-epoch test accuracies, in ``seeds`` order."""
    from dream_cl.ensemble import Ensemble

    cfg = resolve_eval_config(cfg, info.name)
    strategy = parse_strategy(cfg.dsa_strategy or "none")
    progress, device = progress or NullProgress(), torch.device(device)
    path, every_seconds = None, math.inf
    if checkpoint is not None:
        every_seconds = checkpoint.every_seconds
        tag = f"ensemble {seeds}"
        fp = _run_fingerprint(model_name, model_options, cfg, tag, images, labels, test, info)  # type: ignore[arg-type]
        path = Path(checkpoint.folder) / f"eval-{fp[:24]}.pt"
    saved = _read_eval_checkpoint(path) if path is not None else None
    if saved is not None and "accuracies" in saved:
        return [float(a) for a in saved["accuracies"]]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    models = [_fresh_model(model_name, info, model_options, g).to(device) for g in gens]
    run = Ensemble(models, gens, cfg.lr, cfg.momentum, cfg.weight_decay)
    if saved is not None:
        _load_or_refuse(run, saved, path)
    x_all = images.detach().to(device=device, dtype=torch.float32)
    y_all = labels.detach().to(device=device, dtype=torch.int64)
    milestones = set(cfg.milestone_epochs())
    progress.start("eval", cfg.epochs)
    if run.epoch:
        progress.advance("eval", run.epoch)
    last_save = time.monotonic()
    while run.epoch < cfg.epochs:
        if run.epoch in milestones:
            run.decay_lr(cfg.gamma, cfg.restart_optimizer)
        losses = run.train_epoch(
            int(y_all.shape[0]),
            lambda perm: _batches(perm, cfg.batch_size),
            lambda idx, g: _draw_batch(x_all, y_all, idx, info, cfg, strategy, g),
        )
        run.epoch += 1
        for seed, loss in zip(seeds, losses, strict=True):
            _check_loss(loss, model_name, seed, run.epoch, path)
        if (
            path is not None
            and run.epoch < cfg.epochs
            and time.monotonic() - last_save >= every_seconds
        ):
            atomic_torch_save(_stamped(run.state_dict()), path)
            last_save = time.monotonic()
        progress.advance("eval", 1, loss=sum(losses) / len(losses))
    accs = [test_accuracy(m, test, info, device, cfg.test_batch_size) for m in run.unstacked()]
    if path is not None:
        atomic_torch_save(_stamped({"accuracies": accs, "epoch": run.epoch}), path)
    progress.finish("eval")
    return accs


def _load_or_refuse(run: Any, saved: dict[str, Any], path: Path | None) -> None:
    try:
        run.load_state_dict(saved)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise UserError(
            f"evaluation checkpoint {path} does not fit this run ({type(err).__name__}); "
            "delete it to train that model from the start"
        ) from None


def _train_epoch(
    run: _Training,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    info: DatasetInfo,
    cfg: EvalConfig,
    strategy: Any,
) -> float:
    """One epoch over the set in a fresh seeded order; the mean training loss."""
    model, gen, n = run.model, run.gen, int(y_all.shape[0])
    total, seen = 0.0, 0
    for idx in _batches(torch.randperm(n, generator=gen), cfg.batch_size):
        x, y_a, y_b, lam = _draw_batch(x_all, y_all, idx, info, cfg, strategy, gen)
        loss = cutmix_loss(model(x), y_a, y_b, lam)
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        total += float(loss.detach()) * idx.numel()
        seen += idx.numel()
    return total / seen


def _draw_batch(
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    idx: torch.Tensor,
    info: DatasetInfo,
    cfg: EvalConfig,
    strategy: Any,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """One model's training batch at ``idx``: normalised, augmented and (by the recipe's
    ``cutmix_p``) CutMixed with that model's generator; (x, y_a, y_b, lam), lam 1 for none."""
    idx = idx.to(x_all.device)
    x = _augment(info.normalize(x_all[idx]), cfg, strategy, gen)
    y = y_all[idx]
    if cfg.cutmix_p > 0:
        return maybe_cutmix(x, y, cfg.cutmix_p, gen, beta=cfg.cutmix_beta)
    return x, y, y, 1.0


def _check_loss(loss: float, model: str, seed: int, epoch: int, path: Path | None) -> None:
    """One line when a model's epoch loss is not finite (its checkpoint is kept)."""
    if not math.isfinite(loss):
        raise UserError(
            f"the evaluation diverged: model {model} (seed {seed}) had a {loss} loss in epoch "
            f"{epoch}; {_kept_note(path)}lower --lr or check the image set"
        )


def _kept_note(path: Path | None) -> str:
    """What a diverged model leaves: its last checkpoint, if one was saved."""
    saved = _read_eval_checkpoint(path) if path is not None else None
    epoch = int(saved.get("epoch", 0)) if saved else 0
    return f"its checkpoint of epoch {epoch} in {path.parent} is kept; " if epoch else ""


def _stamped(state: dict[str, Any]) -> dict[str, Any]:
    return {"format": EVAL_CHECKPOINT_FORMAT, "version": EVAL_CHECKPOINT_VERSION, **state}


@dataclass
class EvalResult:
    """Accuracies (fractions in [0,1]) of ``repeats`` independently trained models.

    ``std`` is the population standard deviation (numpy's default, ddof=0), as the DC/DSA/DM
    evaluation code reports it; it is 0 for a single repeat.
    """

    model: str
    accuracies: list[float]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies)) if self.accuracies else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies)) if self.accuracies else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "accuracies": list(self.accuracies),
            "mean": self.mean,
            "std": self.std,
            "std_kind": "population",
            "config": self.config,
        }


def evaluate_image_set(
    s: ImageSet,
    test: DatasetSplit,
    *,
    model: str = "convnet",
    repeats: int = 1,
    cfg: EvalConfig = EvalConfig(),
    seed: int = 0,
    device: torch.device | str = "cpu",
    model_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
    checkpoint: EvalCheckpoint | None = None,
    ensemble: bool = False,
    workers: int = 1,
) -> EvalResult:
    """Decode ``s`` and train/test ``repeats`` fresh models; repeat k uses ``seed + k``.

    With ``checkpoint``, a call interrupted part-way continues, on the next call with the
    same arguments, from the models it finished and the last saved epoch of the one it was
    training (see :class:`EvalCheckpoint`). With ``ensemble``, a model that allows it trains
    its repeats together in lock step (:mod:`dream_cl.ensemble`: the same models up to float
    rounding, in less time). With ``workers`` > 1, the repeats are trained one per process,
    ``workers`` at a time, each process with its share of this one's threads (the same
    models up to the rounding of another thread count)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    resolved = resolve_eval_config(cfg, s.info.name, s.factor, s.ipc)
    images, labels = s.decoded()
    common = dict(device=device, model_options=model_options, progress=progress)
    common["checkpoint"] = checkpoint
    ensemble = ensemble and repeats > 1 and _ensembles(model, s.info, model_options)
    seeds = [seed + k for k in range(repeats)]
    if ensemble:
        accs = train_and_test_ensemble(
            model, images, labels, s.info, test, resolved, seeds=seeds, **common
        )
    elif workers > 1 and repeats > 1:
        calls = [(model, images, labels, s.info, test, resolved, k) for k in seeds]
        accs = _in_processes(calls, workers, common)
    else:
        accs = [
            train_and_test(model, images, labels, s.info, test, resolved, seed=seed + k, **common)
            for k in range(repeats)
        ]
    config = {
        **resolved.to_dict(),
        "model_options": dict(model_options or {}),
        "seed": seed,
        "repeats": repeats,
        "trained_together": ensemble,
        "workers": workers if not ensemble and repeats > 1 else 1,
        "factor": s.factor,
        "ipc": s.ipc,
        "num_train_images": int(labels.shape[0]),
        "method": s.method,
        "dataset": s.info.name,
    }
    return EvalResult(model=model, accuracies=accs, config=config)


def _fresh_model(
    name: str,
    info: DatasetInfo,
    model_options: dict[str, Any] | None,
    gen: torch.Generator | None,
) -> nn.Module:
    """A freshly initialised evaluation network for ``info``'s images (from ``gen``)."""
    return build_model(
        name,
        channels=info.channels,
        num_classes=info.num_classes,
        image_size=info.image_size,
        generator=gen,
        dataset=info.name,
        **(model_options or {}),
    )


def _ensembles(model: str, info: DatasetInfo, model_options: dict[str, Any] | None) -> bool:
    """Whether ``model`` can train its repeats as one ensemble (built once to look)."""
    from dream_cl.ensemble import can_ensemble

    return can_ensemble(_fresh_model(model, info, model_options, None))


def _in_processes(calls: list[tuple], workers: int, common: dict[str, Any]) -> list[float]:
    """:func:`train_and_test` of every call (its last item the seed) in spawned processes,
    ``workers`` at a time; their epochs reach ``common["progress"]`` as one task. A stop
    (or an error) ends every worker; their checkpoints stay for the next call."""
    import multiprocessing

    progress = common["progress"] or NullProgress()
    threads = max(1, torch.get_num_threads() // workers)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        queue = manager.Queue()
        options = {**common, "progress": None}
        jobs = [(call, options, threads, queue) for call in calls]
        pool = context.Pool(min(workers, len(calls)))
        try:
            pending = [pool.apply_async(_one_repeat, (job,)) for job in jobs]
            epochs = calls[0][5].epochs
            progress.start("eval", epochs * len(calls))
            while not all(r.ready() for r in pending):
                _forward_progress(queue, progress)
            _forward_progress(queue, progress, wait=0.0)
            accs = [r.get() for r in pending]
        finally:
            pool.terminate()
            pool.join()
    progress.finish("eval")
    return accs


def _forward_progress(queue: Any, progress: Progress, wait: float = 0.2) -> None:
    import queue as queues

    try:
        while True:
            n, metrics = queue.get(timeout=wait) if wait else queue.get_nowait()
            progress.advance("eval", n, **metrics)
    except queues.Empty:
        return


class _QueueProgress:
    """A worker's progress: its epochs (and their losses), sent to the parent."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, task: str, n: int = 1, **metrics: float) -> None:
        self.queue.put((n, metrics))

    def finish(self, task: str) -> None:
        pass


def _one_repeat(job: tuple) -> float:
    """One repeat in a worker process (:func:`_in_processes`)."""
    (model, images, labels, info, test, cfg, seed), options, threads, queue = job
    torch.set_num_threads(threads)
    options = {**options, "progress": _QueueProgress(queue)}
    return train_and_test(model, images, labels, info, test, cfg, seed=seed, **options)
