"""The hot functions of a distillation, compiled once per run (``--compile``) and run at the
run's precision (``--precision``).

Three functions take most of a DREAM run's time: the refresh's embedding of every real image,
each class's matching gradient, and the network update's gradient on real data. Under
``--compile`` each is one ``torch.compile``'d torch.func function whose network parameters
are inputs, so every fresh network of the run reuses the code compiled for the first. The
compiled code fuses the norm, activation and pooling around each convolution; it reorders
floating-point sums, so results agree with the eager ones up to float rounding, not bit for
bit (docs/fidelity.md). Networks with buffers (BatchNorm) are refused: a pure function cannot
carry their train-mode statistics updates.

``--precision bf16`` runs the same forward passes under bfloat16 autocast (parameters,
optimiser state and the synthetic images stay float32). It pays where the hardware has bf16
units (AVX-512 BF16 or AMX on CPUs, CUDA); elsewhere it is emulated and slower.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dream_cl.augment import traced_cutmix_loss
from dream_cl.errors import UserError


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward passes' precision: bf16 autocast on ``device``, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX-512 BF16 or AMX)."""
    if torch.backends.cpu.get_cpu_capability() in ("AVX512_BF16", "AMX"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 on a CPU without bf16 units, where it is emulated many times slower than
    fp32 (docs/performance.md)."""
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise UserError(
            "--precision bf16: this CPU has no bf16 units (AVX-512 BF16 or AMX), where bf16 "
            "runs many times slower than fp32; use --precision fp32"
        )


def _template(net: nn.Module) -> nn.Module:
    """A private copy of ``net``: the architecture the compiled code is traced with (the run's
    own networks switch modes, which would force recompilation)."""
    if any(True for _ in net.buffers()):
        raise UserError(
            "--compile needs a network without buffers (instance norm or none); "
            "drop --compile for BatchNorm networks"
        )
    return copy.deepcopy(net).train()


def _detached(net: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in net.named_parameters()}


class CompiledEmbed:
    """The embedding of normalised images (eval mode, no grad) as one compiled function."""

    def __init__(self, net: nn.Module, precision: str, device: torch.device) -> None:
        from torch.func import functional_call

        features = _template(net).features.eval()

        def embed(params: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
            with autocast(device, precision):
                out = functional_call(features, params, (z,))
            return torch.flatten(out, 1).float()

        self._fn = torch.compile(embed)

    def __call__(self, net: nn.Module, z: torch.Tensor) -> torch.Tensor:
        prefix = "features."
        params = {n[len(prefix) :]: p for n, p in _detached(net).items() if n.startswith(prefix)}
        with torch.no_grad():
            return self._fn(params, z)


class CompiledUpdate:
    """The gradient of a network update's CutMix loss w.r.t. every parameter, and the loss.

    ``lam`` enters as a tensor (a Python float would recompile for every new value), and
    both cross-entropy terms are always computed: with ``lam = 1`` the second is multiplied
    by an exact zero.
    """

    def __init__(self, net: nn.Module, precision: str, device: torch.device) -> None:
        from torch.func import functional_call, grad_and_value

        template = _template(net)

        def loss(
            params: dict[str, torch.Tensor],
            x: torch.Tensor,
            y_a: torch.Tensor,
            y_b: torch.Tensor,
            lam: torch.Tensor,
            scale: torch.Tensor,
        ) -> torch.Tensor:
            with autocast(device, precision):
                logits = functional_call(template, params, (x,))
            return traced_cutmix_loss(logits.float(), y_a, y_b, lam) * scale

        self._fn = torch.compile(grad_and_value(loss))

    def backward(
        self,
        net: nn.Module,
        x: torch.Tensor,
        y_a: torch.Tensor,
        y_b: torch.Tensor,
        lam: float,
        scale: float = 1.0,
    ) -> None:
        """Set every parameter's ``.grad`` to d(scale * loss)/d(parameter)."""
        names = [n for n, _ in net.named_parameters()]
        as_tensor = lambda v: torch.tensor(v, dtype=torch.float32, device=x.device)  # noqa: E731
        grads, _ = self._fn(_detached(net), x, y_a, y_b, as_tensor(lam), as_tensor(scale))
        for name, p in zip(names, net.parameters(), strict=True):
            p.grad = grads[name]


class CompiledMatching:
    """One class's matching loss and its gradient w.r.t. the augmented synthetic batch, as a
    single torch.func function: the per-class step's arithmetic (same parameters, distance
    and image step)."""

    def __init__(
        self,
        net: nn.Module,
        names: list[str],
        distance: Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor],
        precision: str,
        device: torch.device,
    ) -> None:
        from torch.func import functional_call, grad, grad_and_value

        self.names = names
        template = _template(net)

        def ce(matched: dict, rest: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            with autocast(device, precision):
                logits = functional_call(template, {**rest, **matched}, (x,))
            return F.cross_entropy(logits.float(), y)

        def loss(
            z_syn: torch.Tensor,
            matched: dict,
            rest: dict,
            z_real: torch.Tensor,
            y_real: torch.Tensor,
            y_syn: torch.Tensor,
        ) -> torch.Tensor:
            g_real = grad(ce)(matched, rest, z_real, y_real)
            g_syn = grad(ce)(matched, rest, z_syn, y_syn)
            return distance([g_real[n].detach() for n in names], [g_syn[n] for n in names])

        self._fn = torch.compile(grad_and_value(loss))

    def __call__(
        self,
        net: nn.Module,
        z_real: torch.Tensor,
        y_real: torch.Tensor,
        z_syn: torch.Tensor,
        y_syn: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        params = _detached(net)
        matched = {n: params.pop(n) for n in self.names}
        return self._fn(z_syn.detach(), matched, params, z_real, y_real, y_syn)


class CompiledFunctions:
    """A run's compiled functions, each built from the first network that needs it and
    reused by every later one (the one home of the run's compilation cache)."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision, self.device = precision, device
        self._built: dict[str, Any] = {}

    def _get(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._built:
            self._built[key] = build()
        return self._built[key]

    def embed(self, net: nn.Module) -> CompiledEmbed:
        return self._get("embed", lambda: CompiledEmbed(net, self.precision, self.device))

    def update(self, net: nn.Module) -> CompiledUpdate:
        return self._get("update", lambda: CompiledUpdate(net, self.precision, self.device))

    def matching(
        self,
        net: nn.Module,
        names: list[str],
        distance: Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor],
    ) -> CompiledMatching:
        return self._get(
            "matching",
            lambda: CompiledMatching(net, names, distance, self.precision, self.device),
        )
