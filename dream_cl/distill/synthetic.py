"""The synthetic set: storage, multi-formation decode, and initialisation.

Stored images are one learnable tensor (C*ipc, ch, H, W), class-major, kept in [0,1] and
normalised inside the pipeline (as IDC/DREAM do). With factor f > 1 each stored image
decodes into f*f training images (:mod:`dream_cl.formation`).

Initialisations:

- ``kmeans`` (DREAM): per class, k-means with ipc*f^2 centres on the network's embedding of
  every real image of the class; the real image nearest each centre (never one twice). For
  f > 1 the picks are split into f^2 groups of ipc in centre order; group k = i*f + j fills
  tile (i, j) of all stored images.
- ``random``: ipc*f^2 distinct random real images per class, tiled the same way (the
  official code takes the *first* images of a class; a seeded random draw is what the
  baseline means).
- ``noise``: N(0,1)/4 + 0.5, clamped to [0,1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dream_cl.artifact import ImageSet
from dream_cl.data.base import DatasetInfo, DatasetSplit, to_float
from dream_cl.distill.kmeans import kmeans, nearest_distinct
from dream_cl.distill.samplers import ClassGenerators, EmbedFn, generator_for
from dream_cl.errors import UserError
from dream_cl.formation import decode, encode

INITS = ("kmeans", "random", "noise")


@dataclass
class SyntheticSet:
    """Learnable stored images with fixed hard labels.

    A process of a sharded run holds only its contiguous block of classes (``classes``,
    dataset class ids); ``None`` means every class of ``info``.
    """

    images: torch.Tensor  # (len(classes)*ipc, ch, H, W), requires_grad
    info: DatasetInfo
    ipc: int
    factor: int
    classes: Sequence[int] | None = None

    @property
    def class_ids(self) -> list[int]:
        return list(range(self.info.num_classes)) if self.classes is None else list(self.classes)

    @property
    def num_classes(self) -> int:
        """Classes held here (all of the dataset's unless sharded)."""
        return len(self.class_ids)

    @property
    def labels(self) -> torch.Tensor:
        ids = torch.tensor(self.class_ids, dtype=torch.int64, device=self.images.device)
        return ids.repeat_interleave(self.ipc)

    def class_stored(self, c: int) -> torch.Tensor:
        pos = c - self.class_ids[0]
        if not 0 <= pos < self.num_classes:
            raise IndexError(f"class {c} is not held by this synthetic set")
        return self.images[pos * self.ipc : (pos + 1) * self.ipc]

    def class_decoded(self, c: int) -> torch.Tensor:
        """Decoded training images of class ``c`` (ipc*f^2), differentiable."""
        stored = self.class_stored(c)
        labels = torch.full((self.ipc,), c, device=stored.device)
        return decode(stored, labels, self.factor)[0]

    def all_decoded(self) -> torch.Tensor:
        """Decoded images of every class as (C, ipc*f^2, ch, H, W), differentiable."""
        c, ipc = self.num_classes, self.ipc
        stored = self.images.view(c * ipc, *self.images.shape[1:])
        dec, _ = decode(stored, self.labels, self.factor)
        # decode orders tile-major over all images: (f^2, C*ipc) -> (C, f^2 * ipc)
        f2 = self.factor * self.factor
        dec = dec.view(f2, c, ipc, *dec.shape[1:]).transpose(0, 1)
        return dec.reshape(c, f2 * ipc, *dec.shape[3:])

    def to_image_set(self, method: str, meta: dict | None = None) -> ImageSet:
        return ImageSet(
            images=self.images.detach().clamp(0, 1).cpu().clone(),
            labels=self.labels.cpu(),
            info=self.info,
            factor=self.factor,
            method=method,
            meta=dict(meta or {}),
        )


def _kmeans_picks(
    train: DatasetSplit,
    c: int,
    k: int,
    embed: EmbedFn,
    generator: torch.Generator,
    embed_batch: int = 256,
) -> torch.Tensor:
    images = train.class_images(c)
    with torch.no_grad():
        feats = torch.cat(
            [
                embed(to_float(images[i : i + embed_batch])).float()
                for i in range(0, images.shape[0], embed_batch)
            ]
        )
    centers = kmeans(feats, k, generator).centers
    return nearest_distinct(feats, centers, 1).cpu()


def initialize(
    train: DatasetSplit,
    ipc: int,
    factor: int,
    init: str,
    *,
    embed: EmbedFn | None,
    generator: ClassGenerators,
    device: torch.device,
    classes: Sequence[int] | None = None,
) -> SyntheticSet:
    """Build the synthetic set for ``classes`` (default: all of ``train``'s) with
    initialisation ``init``; class ``c`` draws from ``generator_for(generator, c)``."""
    if init not in INITS:
        raise UserError(f"unknown init '{init}'; use one of {', '.join(INITS)}")
    info = train.info
    ids = list(range(train.num_classes)) if classes is None else list(classes)
    need = ipc * factor * factor if init != "noise" else 0
    for c in ids:
        if train.class_count(c) < max(need, 1):
            raise UserError(
                f"class '{info.class_names[c]}' has {train.class_count(c)} images but init "
                f"'{init}' needs {need} (ipc*factor^2); lower --ipc or --factor"
            )
    shape = (info.channels, info.image_size, info.image_size)
    if init == "noise":
        noise = [torch.randn(ipc, *shape, generator=generator_for(generator, c)) for c in ids]
        images = (torch.cat(noise) / 4 + 0.5).clamp(0, 1)
    else:
        per_class = []
        for c in ids:
            g = generator_for(generator, c)
            if init == "kmeans":
                if embed is None:
                    raise ValueError("kmeans init needs an embed function")
                idx = _kmeans_picks(train, c, need, embed, g)
            else:
                idx = torch.randperm(train.class_count(c), generator=g)[:need]
            picked = to_float(train.class_images(c)[idx.to(train.images.device)]).cpu()
            if factor == 1:
                per_class.append(picked)
            else:
                groups = picked.view(factor * factor, ipc, *shape)
                per_class.append(encode(groups, factor, info.image_size))
        images = torch.cat(per_class)
    images = images.to(device).requires_grad_(True)
    return SyntheticSet(
        images=images, info=info, ipc=ipc, factor=factor, classes=None if classes is None else ids
    )
