"""The repeats of one evaluation, trained together in lock step.

An evaluation trains ``repeats`` fresh models on one set, model k from seed ``seed + k``: its
own initialisation, batch order, augmentation and CutMix draws, all from its own generator.
An :class:`Ensemble` keeps the K models' parameters stacked (``stack_module_state``) under
one optimiser, and each step trains every model on its own batch. Every model draws exactly
what it draws when trained alone, in the same order, so the ensemble trains the same K
models up to float rounding: the accuracies keep their distribution.

A step runs one of two ways:

- ``vmap`` (the default on a GPU): one vmapped forward and backward over the K models'
  batches, so each layer is one launch for K models (a vmapped convolution is a grouped
  one). On a 2-core CPU grouped convolutions are slower than K plain ones.
- ``loop`` (the default on a CPU): model by model, through one ``torch.compile``'d
  gradient function whose parameters are inputs, compiled once for all K models; the
  compiled code fuses the norm, activation and pooling around each convolution. Without a
  working compiler it runs eagerly.

It needs a model without buffers or randomness of its own (BatchNorm's running statistics,
dropout draw from outside the model's generator): ConvNets with instance or no norm. Other
models are trained one after another (:func:`can_ensemble`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dream_cl.augment import traced_cutmix_loss

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]
"""One model's training batch: images, the two CutMix label sets and the mix (1: none)."""


def can_ensemble(model: nn.Module) -> bool:
    """Whether ``model`` trains the same inside a vmapped ensemble as alone."""
    has_buffers = any(True for _ in model.buffers())
    has_dropout = any(isinstance(m, nn.modules.dropout._DropoutNd) for m in model.modules())
    return not has_buffers and not has_dropout


@dataclass
class Ensemble:
    """K models of one architecture, trained in lock step: the one thing a checkpoint of an
    ensemble evaluation saves (stacked parameters, optimiser, learning rate, generators)."""

    models: list[nn.Module]
    gens: list[torch.Generator]
    lr: float
    momentum: float
    weight_decay: float
    epoch: int = 0

    step_kind: str | None = None
    """``vmap`` or ``loop`` (None: vmap on a GPU, loop on a CPU)."""
    compile: bool = True
    """``loop``: through one torch.compile'd gradient function (eager when False)."""

    def __post_init__(self) -> None:
        from torch.func import functional_call, grad_and_value, stack_module_state, vmap

        params, _ = stack_module_state(self.models)
        self.params = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        self.opt = self._sgd(self.lr)
        template = self.models[0]
        if self.step_kind is None:
            on_gpu = self.params[next(iter(self.params))].device.type == "cuda"
            self.step_kind = "vmap" if on_gpu else "loop"

        def loss(params: dict, x: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam):
            return traced_cutmix_loss(functional_call(template, params, (x,)), y_a, y_b, lam)

        self._eager_one = grad_and_value(loss)
        if self.step_kind == "vmap":
            self._grads = vmap(self._eager_one)
        else:
            self._one = self._eager_one
            if self.compile:
                self._one = torch.compile(self._eager_one, dynamic=False)
            self._grads = self._model_by_model

    def _model_by_model(self, params: dict, x, y_a, y_b, lam) -> tuple[dict, torch.Tensor]:
        outs = []
        for k in range(x.shape[0]):
            # a fresh tensor per model: views at other offsets could recompile
            mine = {n: p[k].clone() for n, p in params.items()}
            try:
                outs.append(self._one(mine, x[k], y_a[k], y_b[k], lam[k]))
            except Exception as err:  # noqa: BLE001 - no compiler: the same step, eagerly
                if self._one is self._eager_one:
                    raise
                warnings.warn(
                    f"the ensemble runs eagerly: torch.compile failed ({err})", stacklevel=2
                )
                self._one = self._eager_one
                outs.append(self._one(mine, x[k], y_a[k], y_b[k], lam[k]))
        grads = {n: torch.stack([g[n] for g, _ in outs]) for n in params}
        return grads, torch.stack([v for _, v in outs])

    def _sgd(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            list(self.params.values()),
            lr=lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )

    def decay_lr(self, gamma: float, restart: bool) -> None:
        """Multiply the lr by ``gamma``; with ``restart``, rebuild the optimiser first (its
        momentum restarts), as a single model's run does."""
        self.lr *= gamma
        if restart:
            self.opt = self._sgd(self.lr)
        for group in self.opt.param_groups:
            group["lr"] = self.lr

    def step(self, xs: list[torch.Tensor], ys_a, ys_b, lams: list[float]) -> torch.Tensor:
        """One SGD step of every model on its own batch; the K losses."""
        lam = torch.tensor(lams, dtype=torch.float32, device=xs[0].device)
        params = {n: p.detach() for n, p in self.params.items()}
        grads, losses = self._grads(
            params, torch.stack(xs), torch.stack(ys_a), torch.stack(ys_b), lam
        )
        self.opt.zero_grad(set_to_none=True)
        for name, p in self.params.items():
            p.grad = grads[name]
        self.opt.step()
        return losses.detach()

    def train_epoch(
        self,
        n: int,
        batches: Callable[[torch.Tensor], list[torch.Tensor]],
        draw: Callable[[torch.Tensor, torch.Generator], Batch],
    ) -> list[float]:
        """One epoch of every model over ``n`` images: each model's order is ``batches`` of
        its own permutation, each of its batches ``draw(idx, its generator)``, model by
        model in the order a model trained alone draws them. The models' mean losses."""
        orders = [batches(torch.randperm(n, generator=g)) for g in self.gens]
        totals = torch.zeros(len(self.models), dtype=torch.float64)
        for batch in zip(*orders, strict=True):
            drawn = [draw(idx, g) for idx, g in zip(batch, self.gens, strict=True)]
            xs, ys_a, ys_b, lams = (list(part) for part in zip(*drawn, strict=True))
            totals += self.step(xs, ys_a, ys_b, lams).double().cpu() * batch[0].numel()
        return (totals / n).tolist()

    def unstacked(self) -> list[nn.Module]:
        """The K models with their trained parameters."""
        with torch.no_grad():
            for k, model in enumerate(self.models):
                for name, p in model.named_parameters():
                    p.copy_(self.params[name][k])
        return self.models

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "lr": self.lr,
            "params": {n: p.detach() for n, p in self.params.items()},
            "optimizer": self.opt.state_dict(),
            "generators": [g.get_state() for g in self.gens],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.lr = float(state["lr"])
        with torch.no_grad():
            for name, p in self.params.items():
                p.copy_(state["params"][name])
        self.opt = self._sgd(self.lr)
        self.opt.load_state_dict(state["optimizer"])
        for g, s in zip(self.gens, state["generators"], strict=True):
            g.set_state(s)
