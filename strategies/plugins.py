"""How a model trains on the memory: one Avalanche plugin, three named regimes.

The storage policy (:class:`~dream_cl.strategies.memory.DistilledBuffer`) decides *what* is
stored; :class:`DistilledReplayPlugin` decides *how* the model trains, through the template's
lifecycle callbacks:

- ``before_train_dataset_adaptation``: the classifier grows to the classes seen so far (old
  rows kept, new rows freshly initialised); ``finetune-kd`` first keeps a frozen copy of the
  model as the KD teacher; ``scratch`` starts from a fresh network.
- ``after_train_dataset_adaptation``: memory-only regimes add the experience's classes to the
  memory and train on the memory alone (``adapted_dataset = buffer``, as GDumb does).
- ``before_training_exp``: per-step seeding, optimizer state and lr reset; the memory-only
  regimes iterate the decoded memory as tensors (no per-sample dataset calls), ``replay-mix``
  installs Avalanche's ``ReplayDataLoader`` (current data + memory).
- ``before_forward``: per-sample DSA, then CutMix with probability p; under torchrun each
  rank then keeps its share of the batch (data-parallel, DDP's semantics; models with
  BatchNorm train the whole batch on every rank, so their statistics are one process's).
- ``before_backward``: the CutMix label mix and the KD term are added to ``strategy.loss``
  (weighted by the rank's share under torchrun).
- ``after_backward`` (torchrun only): gradients summed over ranks.
- ``after_training_epoch``: the step schedule (x gamma at the milestones).
- ``after_training_exp``: ``replay-mix`` adds the experience to the memory (Avalanche replay).

Regimes:

- ``finetune-kd`` (default; IDC/DREAM): the model keeps training across steps on the
  cumulative memory only, with KD from the previous step's model on the old classes' logits:
  ``T^2 * beta * KL(softmax(ref/T) || softmax(out/T))`` averaged over the batch (IDC writes it
  as ``KLDivLoss()`` (element mean) times the number of old classes: the same value).
- ``scratch`` (DM / GDumb): a fresh model per step, trained on the cumulative memory only.
- ``replay-mix``: Avalanche's replay, each batch mixes the current task's real data with the
  memory; the model keeps training, no KD.

All randomness of a step comes from streams derived from ``(seed, step)``, so training step k
does not depend on what ran in this process before it: a resumed run matches an uninterrupted
one.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.augment import dsa, maybe_cutmix, parse_strategy
from dream_cl.distributed import (
    AgreedError,
    DistEnv,
    all_reduce_gradients,
    any_rank,
    balanced_range,
    check_replicated,
)
from dream_cl.progress import NullProgress, Progress
from dream_cl.protocol.continual import CL_DSA, default_cl_dsa
from dream_cl.strategies.config import REGIMES, TrainConfig, derive_seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from avalanche.core import SupervisedPlugin
    from avalanche.training.plugins import ReplayPlugin

__all__ = [
    "DistilledReplayPlugin",
    "MemoryBatches",
    "grow_classifier",
    "kd_loss",
]

ModelFactory = Callable[[int, int], nn.Module]
"""(num_classes, step) -> a freshly initialised model (for the ``scratch`` regime)."""


def grow_classifier(model: nn.Module, num_classes: int, generator: torch.Generator) -> bool:
    """Widen ``model.classifier`` to ``num_classes`` outputs, keeping the old rows exactly.

    New rows get PyTorch's default ``Linear`` initialisation, drawn from ``generator`` alone.
    Returns whether the layer changed (never shrinks).
    """
    old = model.classifier
    if not isinstance(old, nn.Linear):
        raise TypeError("the model's classifier must be an nn.Linear to grow")
    if old.out_features >= num_classes:
        return False
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        new.reset_parameters()
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight[: old.out_features].copy_(old.weight)
        if old.bias is not None:
            new.bias[: old.out_features].copy_(old.bias)
    model.classifier = new
    return True


def kd_loss(
    logits: torch.Tensor,
    ref_logits: torch.Tensor,
    old_classes: list[int],
    temperature: float = 2.0,
    beta: float = 1.0,
) -> torch.Tensor:
    """Knowledge distillation on the old classes' logits (IDC's continual-learning loss).

    ``T^2 * beta * KL(p_ref || p)`` with ``p = softmax(logits[:, old] / T)``, averaged over the
    batch: equal to IDC's ``KLDivLoss()(...) * T^2 * beta * n_old``.
    """
    n_old = len(old_classes)
    if n_old == 0:
        return logits.new_zeros(())
    if old_classes == list(range(n_old)):
        out, ref = logits[:, :n_old], ref_logits[:, :n_old]
    else:
        index = torch.tensor(old_classes, device=logits.device)
        out, ref = logits.index_select(1, index), ref_logits.index_select(1, index)
    t = temperature
    log_p = F.log_softmax(out / t, dim=1)
    log_q = F.log_softmax(ref / t, dim=1)
    kl = F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)
    return kl * (t * t) * beta


class MemoryBatches:
    """Shuffled mini-batches ``[x, y, t]`` of in-memory tensors, shuffled by ``generator``.

    A trailing batch of a single sample joins the previous one (BatchNorm cannot train on one).
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        generator: torch.Generator,
        device: torch.device | str,
    ) -> None:
        self.x = x.to(device)
        self.y = y.to(device)
        self.t = torch.zeros_like(self.y)
        self.batch_size = int(batch_size)
        self.generator = generator

    def _batches(self) -> list[torch.Tensor]:
        perm = torch.randperm(int(self.y.shape[0]), generator=self.generator)
        parts = list(torch.split(perm, self.batch_size))
        if len(parts) > 1 and parts[-1].numel() == 1:
            last = parts.pop()
            parts[-1] = torch.cat([parts[-1], last])
        return parts

    def __len__(self) -> int:
        n = int(self.y.shape[0])
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and full == 0) else 0)

    def __iter__(self) -> Iterator[list[torch.Tensor]]:
        for idx in self._batches():
            idx = idx.to(self.x.device)
            yield [self.x[idx], self.y[idx], self.t[idx]]


class DistilledReplayPlugin(SupervisedPlugin, supports_distributed=True):
    """Train on a (distilled) memory under a named regime; see the module docstring.

    ``storage_policy`` is usually a :class:`~dream_cl.strategies.memory.DistilledBuffer`;
    ``replay-mix`` accepts any Avalanche ``ExemplarsBuffer``. ``model_factory(num_classes,
    step)`` gives ``scratch`` its fresh networks; without it the first model the plugin sees is
    copied (GDumb's way; then a resumed ``scratch`` run must pass a factory to be exact). The lr
    comes from the strategy's optimizer (its value when the plugin first sees it); momentum and
    weight decay stay as set there.
    """

    def __init__(
        self,
        storage_policy: Any,
        *,
        regime: str = "finetune-kd",
        config: TrainConfig = TrainConfig(),
        model_factory: ModelFactory | None = None,
        progress: Progress | None = None,
    ) -> None:
        super().__init__()
        if regime not in REGIMES:
            raise ValueError(f"unknown regime {regime!r}; use one of {', '.join(REGIMES)}")
        self.storage_policy = storage_policy
        self.regime = regime
        self.config = config
        self.model_factory = model_factory
        self.progress = progress or NullProgress()
        info = getattr(storage_policy, "info", None)
        if config.dsa_strategy is not None:
            strategy = config.dsa_strategy
        else:
            strategy = default_cl_dsa(info.name) if info is not None else CL_DSA
        self.dsa_ops = parse_strategy(strategy)
        self._replay = (
            ReplayPlugin(mem_size=storage_policy.max_size, storage_policy=storage_policy)
            if regime == "replay-mix"
            else None
        )
        self._init_model: nn.Module | None = None
        self._base_lrs: list[float] | None = None
        self.ref_model: nn.Module | None = None
        self.old_classes: list[int] = []
        self._seen: set[int] = set()
        self._step = 0
        self._epoch = 0
        self._milestones: list[int] = []
        self._gen = torch.Generator()
        self._mix: tuple[torch.Tensor, float] | None = None
        self._loss_sum = 0.0
        self._loss_count = 0
        self._env = DistEnv()
        self._share: float | None = None

    @property
    def memory_only(self) -> bool:
        return self.regime in ("finetune-kd", "scratch")

    def _task(self) -> str:
        return f"train step {self._step}"

    # -- model ---------------------------------------------------------------------------------
    def before_training(self, strategy: Any, **kwargs: Any) -> None:
        if self.config.cutmix_p > 0 and not isinstance(strategy._criterion, nn.CrossEntropyLoss):
            raise ValueError("CutMix mixes cross-entropy terms: use nn.CrossEntropyLoss()")
        if self._replay is not None and DistEnv.current().world_size > 1:
            # Avalanche's replay loader samples per rank (DistributedSampler); the
            # data-parallel step here assumes every rank drew the same batch
            raise AgreedError(
                "--regime replay-mix does not run on several processes yet; use finetune-kd "
                "or scratch, or run it in one process"
            )

    def before_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        exp = strategy.experience
        self._step = int(getattr(exp, "current_experience", self._step))
        current = {int(c) for c in exp.classes_in_this_experience}
        previous = getattr(exp, "previous_classes", None)
        previous = {int(c) for c in previous} if previous is not None else set(self._seen)
        self._seen = previous | current
        num_classes = max(self._seen) + 1
        grow_gen = torch.Generator().manual_seed(derive_seed(self.config.seed, "grow", self._step))
        if self.regime == "scratch":
            if self.model_factory is not None:
                strategy.model = self.model_factory(num_classes, self._step)
            else:
                if self._init_model is None:
                    self._init_model = copy.deepcopy(strategy.model)
                strategy.model = copy.deepcopy(self._init_model)
        elif self.regime == "finetune-kd":
            self.old_classes = sorted(previous)
            self.ref_model = None
            if self.old_classes:
                ref = copy.deepcopy(strategy.model).to(strategy.device).eval()
                for p in ref.parameters():
                    p.requires_grad_(False)
                self.ref_model = ref
        grow_classifier(strategy.model, num_classes, grow_gen)
        strategy.model = strategy.model.to(strategy.device)

    # -- data ----------------------------------------------------------------------------------
    def after_train_dataset_adaptation(self, strategy: Any, **kwargs: Any) -> None:
        if self.memory_only:
            self.storage_policy.post_adapt(strategy, strategy.experience)
            strategy.adapted_dataset = self.storage_policy.buffer

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._env = DistEnv.current()
        check_replicated(
            [*strategy.model.parameters(), *strategy.model.buffers()], "model before training"
        )
        seed = self.config.seed
        torch.manual_seed(derive_seed(seed, "global", self._step))  # Avalanche's own loaders
        self._gen = torch.Generator().manual_seed(derive_seed(seed, "train", self._step))
        opt = strategy.optimizer
        if self._base_lrs is None:
            self._base_lrs = [float(g.get("initial_lr", g["lr"])) for g in opt.param_groups]
        while len(self._base_lrs) < len(opt.param_groups):
            self._base_lrs.append(self._base_lrs[0])
        opt.state = defaultdict(dict)  # a fresh optimizer per step, as IDC's protocol
        for group, lr in zip(opt.param_groups, self._base_lrs, strict=False):
            group["lr"] = lr
        self._epoch = 0
        self._milestones = self.config.milestone_epochs(int(strategy.train_epochs))
        if self.memory_only and hasattr(self.storage_policy, "tensors"):
            x, y = self.storage_policy.tensors()
            strategy.dataloader = MemoryBatches(
                x, y, strategy.train_mb_size, self._gen, strategy.device
            )
        if self._replay is not None:
            self._replay.before_training_exp(strategy, **kwargs)
        self.progress.start(self._task(), int(strategy.train_epochs))

    # -- one mini-batch ------------------------------------------------------------------------
    def before_forward(self, strategy: Any, **kwargs: Any) -> None:
        x, y = strategy.mbatch[0], strategy.mbatch[1]
        if self.dsa_ops:
            x = dsa(x, self.dsa_ops, generator=self._gen, per_sample=True)
        self._mix = None
        if self.config.cutmix_p > 0:
            x, _, y_b, lam = maybe_cutmix(
                x, y, self.config.cutmix_p, self._gen, beta=self.config.cutmix_beta
            )
            if lam < 1.0:
                self._mix = (y_b, lam)
        strategy.mbatch[0] = x
        self._share = None
        if self._env.world_size > 1:
            self._take_share(strategy)

    def _take_share(self, strategy: Any) -> None:
        """Data-parallel training under torchrun, with DDP's semantics.

        Every rank drew the same mini-batch and the same augmentation (the streams are
        seeded alike); each keeps its rows, and the loss is weighted by its share so that
        the summed gradients equal the whole batch's mean-loss gradient. A model with
        buffers (BatchNorm) trains on the whole batch on every rank instead, so that its
        batch statistics, and hence the run, are one process's (per-rank statistics, as
        plain DDP has them, would not be; PyTorch's SyncBatchNorm runs on GPUs only).
        """
        n = int(strategy.mbatch[0].shape[0])
        rank, world = self._env.rank, self._env.world_size
        if n < world or any(True for _ in strategy.model.buffers()):
            return  # the same decision on every rank
        lo, hi = balanced_range(n, rank, world)
        for i, part in enumerate(strategy.mbatch):
            if isinstance(part, torch.Tensor) and part.shape[:1] == (n,):
                strategy.mbatch[i] = part[lo:hi]
        if self._mix is not None:
            self._mix = (self._mix[0][lo:hi], self._mix[1])
        self._share = (hi - lo) / n

    def before_backward(self, strategy: Any, **kwargs: Any) -> None:
        out = strategy.mb_output
        if self._mix is not None:
            y_b, lam = self._mix
            # the criterion gave CE(out, y_a); this makes it lam*CE(y_a) + (1-lam)*CE(y_b)
            extra = F.cross_entropy(out, y_b) - F.cross_entropy(out, strategy.mb_y)
            strategy.loss = strategy.loss + (1.0 - lam) * extra
        if self.ref_model is not None and self.old_classes:
            with torch.no_grad():
                ref = self.ref_model(strategy.mb_x)
            strategy.loss = strategy.loss + kd_loss(
                out, ref, self.old_classes, self.config.kd_temperature, self.config.kd_beta
            )
        self._loss_sum += float(strategy.loss.detach()) * int(out.shape[0])
        self._loss_count += int(out.shape[0])
        if self._share is not None:
            strategy.loss = strategy.loss * self._share

    def after_backward(self, strategy: Any, **kwargs: Any) -> None:
        if self._share is not None:
            all_reduce_gradients(list(strategy.model.parameters()), fill_missing=False)

    def after_update(self, strategy: Any, **kwargs: Any) -> None:
        check_replicated(
            [*strategy.model.parameters(), *strategy.model.buffers()], "model after a step"
        )

    # -- schedule and bookkeeping --------------------------------------------------------------
    def after_training_epoch(self, strategy: Any, **kwargs: Any) -> None:
        self._epoch += 1
        drops = sum(1 for m in self._milestones if self._epoch >= m)
        for group, lr in zip(strategy.optimizer.param_groups, self._base_lrs or [], strict=False):
            group["lr"] = lr * self.config.gamma**drops
        loss = self._loss_sum / max(self._loss_count, 1)
        self._loss_sum, self._loss_count = 0.0, 0
        self._check_finite(loss)
        self.progress.advance(self._task(), 1, loss=loss)

    def _check_finite(self, loss: float) -> None:
        """Stop a training whose loss became NaN or infinite on any rank, on every rank
        together, before the step is saved."""
        if any_rank(not math.isfinite(loss))[0]:
            raise AgreedError(
                f"the training diverged in step {self._step}, epoch {self._epoch}: its loss "
                "became NaN or infinite; the steps completed before it are kept. Lower --lr "
                "and start again in a new --out"
            )

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        if self._replay is not None:  # what ReplayPlugin.after_training_exp does, minus the
            self.storage_policy.post_adapt(strategy, strategy.experience)  # deprecated update()
        self.ref_model = None
        self.progress.finish(self._task())
