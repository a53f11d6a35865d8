"""PyTorch `Dataset`/`DataLoader` helpers for MedMNIST-format splits, with standard 2-D augmentation.

No torchvision: the augmentations are plain tensor operations (random flips, 90-degree rotations, small
brightness/contrast jitter), applied identically to an image and its mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .medmnist import SPLITS, MedMNISTSplit


@dataclass(frozen=True)
class Augment:
    """Random flips / 90-degree rotations (geometric) and intensity jitter, drawn from torch's global RNG.

    flip: horizontal and vertical flips, each with probability 1/2. rot90: a random multiple of 90 degrees.
    brightness, contrast: maximal additive / multiplicative change (fractions of the [0, 1] range).
    """

    flip: bool = True
    rot90: bool = True
    brightness: float = 0.05
    contrast: float = 0.1

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None):
        """image: (C, H, W) float in [0, 1]; mask: (H, W) or None. Returns the augmented pair."""
        dims = []
        if self.flip:
            dims += [d for d, p in zip((-1, -2), torch.rand(2).tolist()) if p < 0.5]
        if dims:
            image = image.flip(dims)
            mask = mask.flip(dims) if mask is not None else None
        if self.rot90:
            k = int(torch.randint(4, ()).item())
            if k:
                image = torch.rot90(image, k, (-2, -1))
                mask = torch.rot90(mask, k, (-2, -1)) if mask is not None else None
        if self.brightness or self.contrast:
            shift = (torch.rand(()) * 2 - 1) * self.brightness
            gain = 1 + (torch.rand(()) * 2 - 1) * self.contrast
            mean = image.mean()
            image = ((image - mean) * gain + mean + shift).clamp(0, 1)
        return image, mask


def standard_augment(geometric: bool = True) -> Augment:
    """The default training augmentation; `geometric=False` keeps orientation (intensity jitter only)."""
    return Augment(flip=geometric, rot90=geometric)


class MedMNISTDataset(Dataset):
    """A MedMNIST-format split as a torch Dataset.

    Item: (image, target). image: float32 (C, H, W) in [0, 1] (C = 1 or 3). target: int64 scalar class for
    single-label tasks, float32 (L,) 0/1 vector for multi-label tasks, int64 (H, W) mask for segmentation.
    """

    def __init__(self, split: MedMNISTSplit, augment: Augment | None = None):
        images = torch.from_numpy(np.ascontiguousarray(split.images))
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        self.images = images.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W) uint8, converted per item
        self.task = split.task
        if split.masks is not None:
            self.targets = torch.from_numpy(split.masks.astype(np.int64))
        elif split.task == "multi-label":
            self.targets = torch.from_numpy(split.labels.astype(np.float32))
        else:
            self.targets = torch.from_numpy(split.labels.astype(np.int64))
        self.augment = augment
        self.n_classes = split.n_classes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int):
        image = self.images[index].float().div_(255.0)
        target = self.targets[index]
        if self.augment is not None:
            if self.task == "segmentation":
                image, target = self.augment(image, target)
            else:
                image, _ = self.augment(image)
        return image, target


def make_loaders(
    splits,
    batch_size: int = 64,
    augment: Augment | None | bool = True,
    num_workers: int = 0,
    seed: int = 0,
) -> dict[str, DataLoader]:
    """DataLoaders for "train" (shuffled by a seeded generator, augmented), "val" and "test" (in order, plain).

    splits: a BuiltTask (its task's `geometric_augment` flag picks the default augmentation) or a mapping
    {"train": MedMNISTSplit, ...}. augment: True for the standard augmentation, False/None for none, or an Augment.
    """
    geometric = getattr(getattr(splits, "task", None), "geometric_augment", True)
    if augment is True:
        augment = standard_augment(geometric)
    elif augment is False:
        augment = None
    source = splits.splits if hasattr(splits, "splits") else splits
    loaders = {}
    for name in SPLITS:
        if name not in source:
            continue
        train = name == "train"
        dataset = MedMNISTDataset(source[name], augment if train else None)
        generator = torch.Generator().manual_seed(seed) if train else None
        loaders[name] = DataLoader(dataset, batch_size=batch_size, shuffle=train, generator=generator,
                                   num_workers=num_workers, drop_last=False)
    return loaders
