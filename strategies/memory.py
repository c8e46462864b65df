"""The storage policy: each experience's new classes become ``ipc`` stored images per class.

:class:`DistilledBuffer` is an Avalanche ``ExemplarsBuffer``. Its update hook
(``post_adapt(agent, experience)``, which the deprecated ``update(strategy)`` forwards to)
takes the experience's classes that are not in memory yet, builds their memory with the chosen
method and keeps it for the rest of the stream:

- ``dream``: the distillation engine with the representative sampler and k-means init;
- ``idc``: the same engine with the random sampler and random init (IDC);
- ``dm``: distribution matching (random sampler, random init);
- ``herding`` / ``random``: real images chosen per class (coresets).

Each step's classes are distilled alone, relabelled 0..k-1 for the engine, and mapped back.
Under torchrun the step's classes are distilled class-sharded across the ranks; every rank
ends with the same memory (the engine gathers it) and rank 0 alone writes it.

Accounting. The budget is the number of stored images, ``ipc`` per class; ``max_size`` is
``ipc * total_classes`` (what Avalanche's ``ReplayPlugin(mem_size=...)`` checks). With an IDC
factor f each stored image decodes into f*f training images, so the training set has
``ipc * f^2`` images per class; :meth:`DistilledBuffer.accounting` reports both numbers.

``buffer`` is an Avalanche dataset of the decoded, normalised images with their labels and task
label 0, so it plugs into ``ReplayPlugin``/``ReplayDataLoader`` like any other buffer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dream_cl.artifact import ImageSet, load_image_set, save_image_set
from dream_cl.data.base import DatasetInfo, DatasetSplit
from dream_cl.distributed import DistEnv, agree
from dream_cl.errors import UserError
from dream_cl.progress import Labelled, NullProgress, Progress
from dream_cl.scenarios.builder import ClassMap
from dream_cl.strategies.config import MemoryConfig, derive_seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from avalanche.training.storage_policy import ExemplarsBuffer

__all__ = ["DistilledBuffer", "StepMemory", "build_class_memory", "experience_split"]


def build_class_memory(
    split: DatasetSplit,
    cfg: MemoryConfig,
    *,
    seed: int,
    out: Path | None = None,
    progress: Progress | None = None,
) -> ImageSet:
    """The memory of every class of ``split`` (labels 0..k-1), with ``cfg.method``.

    Distillation runs write their engine folder (configuration, checkpoints) to ``out`` and
    resume from a checkpoint found there, so an interrupted step continues where it stopped.
    """
    need = cfg.images_needed(split.info.name, split.info.image_size)
    for c in range(split.num_classes):
        if split.class_count(c) < need:
            raise UserError(_too_small(split, c, cfg, need))
    if not cfg.distilled:
        from dream_cl.coreset import select_coreset
        from dream_cl.utils import resolve_device

        return select_coreset(
            split,
            cfg.method,
            cfg.ipc,
            seed=seed,
            feature_model=cfg.distill_model,
            device=resolve_device(cfg.device),
        )
    from dream_cl.distill.engine import distill

    dcfg = cfg.distill_config(split.info.name, split.info.image_size, seed=seed)
    resume = out is not None and agree(lambda: (out / "checkpoint.pt").is_file())
    result = distill(dcfg, split, out=out, resume=resume, progress=progress)
    return result.image_set


def _too_small(split: DatasetSplit, c: int, cfg: MemoryConfig, need: int) -> str:
    what = f"ipc*factor^2 = {need} real images" if need != cfg.ipc else f"{need} images"
    return (
        f"--ipc {cfg.ipc} is larger than class '{split.info.class_names[c]}' allows: it has "
        f"{split.class_count(c)} training images and {cfg.method} needs {what}; lower --ipc"
    )


def experience_split(dataset: Any, info: DatasetInfo, classes: list[int]) -> DatasetSplit:
    """Read an experience's (normalised) images back as a [0,1] split relabelled 0..k-1.

    The generic route for any Avalanche dataset whose items are ``(x, y, ...)`` normalised
    with ``info``; a buffer given ``source=`` skips it.
    """
    from torch.utils.data import DataLoader

    data = dataset.eval() if hasattr(dataset, "eval") else dataset
    xs, ys = [], []
    for batch in DataLoader(data, batch_size=512, shuffle=False):
        xs.append(batch[0].float())
        ys.append(torch.as_tensor(batch[1]).long())
    x = torch.cat(xs)
    y = torch.cat(ys)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    x = (x * std + mean).clamp(0, 1)
    local = torch.full_like(y, -1)
    for i, c in enumerate(classes):
        local[y == c] = i
    keep = local >= 0
    names = tuple(info.class_names[c] for c in classes)
    sub_info = DatasetInfo(info.name, info.channels, info.image_size, names, info.mean, info.std)
    return DatasetSplit.from_unsorted(x[keep], local[keep], sub_info)


def _settings(d: Any) -> Any:
    """What must match for a saved memory to be reused (the device may change)."""
    return {k: v for k, v in d.items() if k != "device"} if isinstance(d, dict) else d


@dataclass
class StepMemory:
    """The memory built at one step: its image set in model labels and where it was saved."""

    step: int
    classes: list[int]
    image_set: ImageSet
    path: Path | None = None
    seconds: float = 0.0


class DistilledBuffer(ExemplarsBuffer):
    """Class-balanced memory of ``ipc`` stored images per class, built per experience.

    ``info`` describes the data as the strategy sees it (model labels: class ``i`` of ``info``
    is label ``i``). Optional:

    - ``source``: the training split in the same labels; the new classes are taken from it
      directly (exact uint8 pixels, no pass over the experience's dataset);
    - ``workdir``: each step's memory is saved to ``workdir/step{k}/`` (image-set format,
      dataset labels through ``class_map``, plus ``grid.png``) and the engine's run folder to
      ``workdir/step{k}/distill/``; a complete saved memory is loaded instead of rebuilt, so
      a restarted run continues;
    - ``class_map``: model label -> dataset label, for the saved sets (default: identity);
    - ``progress``: reporter for the distillation.
    """

    def __init__(
        self,
        config: MemoryConfig,
        *,
        info: DatasetInfo,
        total_classes: int | None = None,
        source: DatasetSplit | None = None,
        workdir: str | Path | None = None,
        class_map: ClassMap | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.total_classes = int(total_classes or info.num_classes)
        super().__init__(max_size=config.ipc * self.total_classes)
        self.config = config
        self.info = info
        self.source = source
        self.workdir = Path(workdir) if workdir is not None else None
        self.class_map = class_map
        self.progress = progress or NullProgress()
        self.steps: list[StepMemory] = []
        self._stored: dict[int, torch.Tensor] = {}  # class -> (ipc, C, H, W) in [0,1]
        self._factor: int | None = None
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._dataset: Any = None

    # -- what is stored ----------------------------------------------------------------------
    @property
    def ipc(self) -> int:
        return self.config.ipc

    @property
    def factor(self) -> int:
        return self._factor or 1

    @property
    def classes(self) -> list[int]:
        """Classes in memory, in the order they arrived."""
        return list(self._stored)

    @property
    def num_stored(self) -> int:
        return sum(int(t.shape[0]) for t in self._stored.values())

    @property
    def num_decoded(self) -> int:
        return self.num_stored * self.factor**2

    def class_counts(self) -> dict[int, int]:
        return {c: int(t.shape[0]) for c, t in self._stored.items()}

    def stored_set(self) -> ImageSet:
        """All stored images (model labels) as one image set."""
        if not self._stored:
            shape = (0, self.info.channels, self.info.image_size, self.info.image_size)
            empty = torch.zeros(shape)
            return ImageSet(empty, torch.zeros(0, dtype=torch.int64), self.info, 1, "empty")
        labels = torch.cat(
            [torch.full((t.shape[0],), c, dtype=torch.int64) for c, t in self._stored.items()]
        )
        images = torch.cat(list(self._stored.values()))
        return ImageSet(images, labels, self.info, self.factor, self.config.method)

    def accounting(self) -> dict[str, Any]:
        """The budget in stored images and, beside it, the decoded training images."""
        return {
            "method": self.config.method,
            "ipc": self.ipc,
            "factor": self.factor,
            "classes": len(self._stored),
            "stored_images": self.num_stored,
            "decoded_images": self.num_decoded,
            "budget_max_size": self.max_size,
        }

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded training images (normalised, float32) and their labels, cached."""
        if self._cache is None:
            s = self.stored_set()
            x, y = s.decoded()
            self._cache = (self.info.normalize(x), y)
        return self._cache

    @property
    def buffer(self):  # noqa: ANN201 - an AvalancheDataset
        from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

        if self._dataset is None:
            x, y = self.tensors()
            self._dataset = _make_taskaware_tensor_classification_dataset(
                x, y, targets=y.tolist(), task_labels=0
            )
        return self._dataset

    @buffer.setter
    def buffer(self, new_buffer) -> None:  # noqa: ANN001
        # ExemplarsBuffer.__init__ assigns an empty dataset; the memory itself is _stored
        self._buffer = new_buffer

    # -- updates -------------------------------------------------------------------------------
    def post_adapt(self, agent_state: Any, exp: Any) -> None:
        """Add the memory of ``exp``'s classes that are not in memory yet (idempotent)."""
        classes = sorted(int(c) for c in exp.classes_in_this_experience)
        step = int(getattr(exp, "current_experience", len(self.steps)))
        new = [c for c in classes if c not in self._stored]
        if new:
            self.add_classes(new, step, dataset=exp.dataset)

    def update(self, strategy: Any, **kwargs: Any) -> None:
        """What Avalanche 0.6's stock ``ReplayPlugin`` calls after each experience. The base
        class's ``update`` is deprecated (removed in 0.7, which calls ``post_adapt``); this
        override does the same without the warning."""
        self.post_adapt(strategy, strategy.experience)

    def add_classes(self, classes: list[int], step: int, dataset: Any = None) -> StepMemory:
        """Build (or load from ``workdir``) the memory of ``classes`` and keep it."""
        import time

        for c in classes:
            if not 0 <= c < self.total_classes or c >= self.info.num_classes:
                raise ValueError(f"class {c} is outside the buffer's {self.total_classes} classes")
        if len(self._stored) + len(classes) > self.total_classes:
            raise ValueError("more classes than total_classes; raise total_classes")
        folder = self.workdir / f"step{step}" if self.workdir is not None else None
        t0 = time.perf_counter()
        # under torchrun rank 0 reads and writes the folder; every rank gets the same memory
        image_set = agree(lambda: self._load(folder, classes)) if folder is not None else None
        if image_set is None:
            image_set = self._build(classes, step, dataset, folder)
            if folder is not None and DistEnv.current().is_main:
                self._save(image_set, folder, step, classes)
        memory = StepMemory(step, list(classes), image_set, folder, time.perf_counter() - t0)
        self._keep(memory)
        return memory

    def _build(self, classes: list[int], step: int, dataset: Any, folder: Path | None) -> ImageSet:
        if self.source is not None:
            split = self.source.subset_classes(classes, relabel=True)
        elif dataset is not None:
            split = experience_split(dataset, self.info, classes)
        else:
            raise ValueError("no data: pass the experience's dataset or give the buffer a source")
        seed = derive_seed(self.config.seed, "memory", step)
        local = build_class_memory(
            split,
            self.config,
            seed=seed,
            out=folder / "distill" if folder is not None else None,
            progress=Labelled(self.progress, f"step {step}"),
        )
        table = torch.tensor(classes, dtype=torch.int64)
        meta = {
            "step": step,
            "ipc": self.ipc,
            "seed": seed,
            "memory_config": self.config.to_dict(),
            "source_meta": local.meta,
        }
        return ImageSet(
            local.images, table[local.labels], self.info, local.factor, self.config.method, meta
        )

    def _keep(self, memory: StepMemory) -> None:
        s = memory.image_set
        if self._factor is not None and s.factor != self._factor:
            raise ValueError(f"memory factor {s.factor} differs from the buffer's {self._factor}")
        self._factor = s.factor
        for c in memory.classes:
            images = s.images[s.labels == c]
            if images.shape[0] != self.ipc:
                raise ValueError(f"class {c} got {images.shape[0]} images, expected {self.ipc}")
            self._stored[c] = images.clone()
        self.steps.append(memory)
        self._cache, self._dataset = None, None

    # -- saving --------------------------------------------------------------------------------
    def _save(self, s: ImageSet, folder: Path, step: int, classes: list[int]) -> None:
        from dream_cl.visualize import save_class_grid

        cmap = self.class_map
        labels = cmap.to_dataset(s.labels) if cmap is not None else s.labels
        info = cmap.info if cmap is not None else self.info
        meta = dict(s.meta)
        meta["model_labels"] = list(classes)
        meta["dataset_labels"] = (
            cmap.to_dataset(torch.tensor(classes)).tolist() if cmap is not None else list(classes)
        )
        meta["accounting"] = {
            "stored_images": s.num_stored,
            "decoded_images": s.num_decoded,
            "factor": s.factor,
        }
        saved = ImageSet(s.images, labels, info, s.factor, s.method, meta)
        # grid first: the image set's meta.json, written last, marks the step's memory complete
        save_class_grid(saved.images, saved.labels, folder / "grid.png")
        save_image_set(saved, folder)

    def _load(self, folder: Path, classes: list[int]) -> ImageSet | None:
        if not (folder / "meta.json").is_file():
            return None
        saved = load_image_set(folder)
        cmap = self.class_map
        labels = cmap.to_model(saved.labels) if cmap is not None else saved.labels
        found = sorted(set(labels.tolist()))
        if found != sorted(classes) or _settings(saved.meta.get("memory_config")) != _settings(
            self.config.to_dict()
        ):
            raise UserError(
                f"{folder} holds a memory of other classes or settings; "
                "use the original settings or another --out"
            )
        return ImageSet(saved.images, labels, self.info, saved.factor, saved.method, saved.meta)

    def resize(self, strategy: Any, new_size: int) -> None:
        """Shrink to ``new_size // total_classes`` images per class (first ones kept).

        Growing is refused once classes are stored: their memories were built for the old
        IPC and the buffer must stay class-balanced.
        """
        new_ipc = int(new_size) // self.total_classes
        if new_ipc < 1:
            raise ValueError(f"max size {new_size} leaves no image per class")
        if new_ipc > self.ipc and self._stored:
            raise ValueError("cannot grow a memory that already holds classes")
        self._stored = {c: t[:new_ipc] for c, t in self._stored.items()}
        self.config = MemoryConfig(**{**self.config.to_dict(), "ipc": new_ipc})
        self.max_size = new_ipc * self.total_classes
        self._cache, self._dataset = None, None
