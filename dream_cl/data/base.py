"""The in-memory form every dataset takes: one split, images grouped by class.

Distillation takes "all real images of class c" thousands of times, so a split keeps its
images sorted by label as one uint8 tensor; class ``c`` is the contiguous slice
``offsets[c]:offsets[c+1]`` (a view, never a copy). uint8 keeps CIFAR-100's training split
at 150 MB instead of 600 MB as float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and the normalisation need to know about a dataset."""

    name: str
    channels: int
    image_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise [0,1] images (N, C, H, W) with the dataset's mean and std."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "channels": self.channels,
            "image_size": self.image_size,
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetInfo:
        return cls(
            name=str(d["name"]),
            channels=int(d["channels"]),
            image_size=int(d["image_size"]),
            class_names=tuple(d["class_names"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
        )


@dataclass
class DatasetSplit:
    """One split (train or test) with images sorted by class.

    ``images`` is uint8 (N, C, H, W), or float in [0,1] for sets that are not 8-bit;
    ``labels`` is int64 (N,) and non-decreasing; ``offsets`` (num_classes + 1,) bounds each
    class. Use :meth:`from_unsorted` to build one from arbitrary order.
    """

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    held_out: tuple[str, float, int] | None = None
    """Set by :func:`dream_cl.data.hold_out`: ("rest" or "val", fraction, seed), so code that
    records a validation split can check it was given the matching part."""
    offsets: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got {tuple(self.images.shape)}")
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.labels = self.labels.to(torch.int64)
        if self.labels.numel() > 1 and bool((self.labels[1:] < self.labels[:-1]).any()):
            raise ValueError("labels must be sorted; use DatasetSplit.from_unsorted")
        counts = torch.bincount(self.labels.cpu(), minlength=self.info.num_classes)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])

    @classmethod
    def from_unsorted(
        cls, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo
    ) -> DatasetSplit:
        """Sort by label (stable, so the within-class file order is kept)."""
        labels = torch.as_tensor(labels, dtype=torch.int64)
        order = torch.sort(labels, stable=True).indices
        return cls(images[order].contiguous(), labels[order].contiguous(), info)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def class_count(self, c: int) -> int:
        return int(self.offsets[c + 1] - self.offsets[c])

    def class_counts(self) -> list[int]:
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    def class_slice(self, c: int) -> slice:
        return slice(int(self.offsets[c]), int(self.offsets[c + 1]))

    def class_images(self, c: int) -> torch.Tensor:
        """Raw images of class ``c`` (a view of the stored tensor)."""
        return self.images[self.class_slice(c)]

    def class_float(self, c: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images of class ``c`` as float32 in [0,1] on ``device``."""
        return to_float(self.class_images(c).to(device))

    def float_images(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """All images as float32 in [0,1] on ``device`` (a copy)."""
        return to_float(self.images.to(device))

    def subset_classes(self, classes: list[int], relabel: bool = False) -> DatasetSplit:
        """Keep only ``classes``; with ``relabel`` they become 0..k-1 in the given order."""
        parts = [self.class_images(c) for c in classes]
        images = torch.cat(parts) if parts else self.images[:0]
        if relabel:
            labels = torch.cat(
                [torch.full((p.shape[0],), i, dtype=torch.int64) for i, p in enumerate(parts)]
            )
            names = tuple(self.info.class_names[c] for c in classes)
            info = DatasetInfo(
                self.info.name,
                self.info.channels,
                self.info.image_size,
                names,
                self.info.mean,
                self.info.std,
            )
            return DatasetSplit(images, labels, info)
        labels = torch.cat(
            [
                torch.full((p.shape[0],), c, dtype=torch.int64)
                for c, p in zip(classes, parts, strict=True)
            ]
        )
        return DatasetSplit.from_unsorted(images, labels, self.info)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0,1]; float stays float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()
