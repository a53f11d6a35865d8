"""Images of the built-in tasks as float tensors, and the seeded sample of TRAINING images a dataset is encoded by."""

from __future__ import annotations

import numpy as np
import torch


def to_float_images(images: np.ndarray, channels: int = 3) -> torch.Tensor:
    """uint8 (N, H, W) or (N, H, W, 3) -> float32 [N, channels, H, W] in [0, 1].

    Grey images are repeated to 3 channels; RGB images are averaged to 1 channel.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] == channels:
        return x.contiguous()
    return x.expand(-1, 3, -1, -1).contiguous() if channels == 3 else x.mean(1, keepdim=True)


def standardise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> the supernets' input convention (x - 0.5) / 0.25 (every supernet, zoo
    record and fine-tuned network sees its inputs so)."""
    return (x - 0.5) / 0.25


def training_sample(task, n: int, seed: int = 0) -> np.ndarray:
    """Indices of a seeded sample of `n` images of the task's TRAIN split (all of them when it has fewer).

    task: a BuiltTask (or anything with `task["train"].images`). Only the train split is ever read here:
    the dataset encoder must not see validation or test images.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"training_sample: n must be a positive int, got {n!r}")
    total = len(task["train"].images)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(total)[: min(n, total)])
