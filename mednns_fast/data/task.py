"""Types of the built-in suite: a task's card, its definition (with a builder), and a builder's raw output."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

DERIVED_NOTE = (
    "Derived for method development and testing from a small number of real images shipped in a package; "
    "not a clinical dataset, not representative of any patient population, and not for diagnostic claims."
)


@dataclass(frozen=True)
class TaskCard:
    """Provenance of a task: where its pixels come from and how its labels were made."""

    source: str  # the shipped file(s) or package function the images come from
    install: str  # the command line that provides the source (pip or apt)
    license: str  # the source's license, as stated by its package
    labels: str  # how the labels/masks were derived
    split: str  # the spatial blocking used to keep splits apart
    note: str = DERIVED_NOTE


@dataclass
class Samples:
    """What a builder returns before splitting.

    images: uint8 (N, H, W) or (N, H, W, 3). labels: int (N,) for classification; masks: int (N, H, W) for
    segmentation. groups: int (N,) spatial block of each sample; blocks never share pixels (or slices) and are
    the unit assigned to a split. strata: optional int (N,) constant within a group (e.g. source image), so
    each stratum reaches every split.
    """

    images: np.ndarray
    groups: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    strata: np.ndarray | None = None


@dataclass(frozen=True)
class Task:
    """A built-in task: a stable name, what it is, and a deterministic builder `builder(rng) -> Samples`."""

    name: str
    kind: str  # "classification" or "segmentation"
    domain: str  # "medical" or "control" (non-medical)
    classes: tuple[str, ...]
    size: int
    channels: int
    card: TaskCard
    builder: Callable[[np.random.Generator], Samples]
    version: int = 1  # bump when the builder changes, so stale caches are rebuilt
    # Whether flips and 90-degree rotations keep the label (False for hemisphere, slice plane, digits, ...).
    geometric_augment: bool = True

    @property
    def n_classes(self) -> int:
        return len(self.classes)
