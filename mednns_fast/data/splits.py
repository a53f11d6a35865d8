"""Region-blocked splitting: whole spatial blocks (slab of slices, image tile) go to one split, before patches are cut.

Patches that overlap or sit side by side are nearly copies of each other; splitting them at random leaks test
content into training. Here the unit of assignment is the block (group id), never the patch.
"""

from __future__ import annotations

import numpy as np

FRACTIONS = (0.7, 0.15, 0.15)


def split_groups(
    groups: np.ndarray,
    seed: int,
    fractions: tuple[float, float, float] = FRACTIONS,
    strata: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Assign every distinct group id to train/val/test and return the sample indices of each split.

    groups: (N,) int, the block each sample came from. strata: optional (N,) int, e.g. the source image, constant
    within a group; groups are then shuffled and divided within each stratum so every stratum reaches every split.
    A stratum with at least three groups gives at least one group to each split.
    Returns {"train": idx, "val": idx, "test": idx} (sorted int64 arrays), disjoint in groups by construction.
    """
    ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    strata = np.zeros(len(inverse), dtype=np.int64) if strata is None else np.asarray(strata)
    group_stratum = np.full(len(ids), -1, dtype=np.int64)
    _, stratum_index = np.unique(strata, return_inverse=True)
    group_stratum[inverse] = stratum_index
    if not np.array_equal(group_stratum[inverse], stratum_index):
        raise ValueError("strata must be constant within a group")
    rng = np.random.default_rng(seed)
    which_group = np.empty(len(ids), dtype=np.int64)
    for stratum in range(group_stratum.max() + 1):
        members = np.flatnonzero(group_stratum == stratum)
        members = members[rng.permutation(len(members))]
        for split_index, chunk in enumerate(_divide(len(members), fractions)):
            which_group[members[chunk]] = split_index
    which = which_group[inverse]
    return {name: np.flatnonzero(which == i) for i, name in enumerate(("train", "val", "test"))}


def _divide(n: int, fractions: tuple[float, float, float]) -> list[slice]:
    # Cumulative rounding, then make sure val and test get a group each whenever there are three or more.
    n_val = max(1, round(n * fractions[1])) if n >= 3 else 0
    n_test = max(1, round(n * fractions[2])) if n >= 3 else 0
    n_train = n - n_val - n_test
    return [slice(0, n_train), slice(n_train, n_train + n_val), slice(n_train + n_val, n)]


def grid_blocks(height: int, width: int, block: int) -> np.ndarray:
    """(height, width) map of tile ids for square tiles of side `block` (the last row/column may be smaller)."""
    rows = np.arange(height) // block
    cols = np.arange(width) // block
    n_cols = (width + block - 1) // block
    return rows[:, None] * n_cols + cols[None, :]
