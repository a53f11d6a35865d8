"""An endless, seeded stream of minibatch indices whose position is part of a checkpoint.

DARTS alternates a weight step on one half of the training data with an architecture step on the other;
each half has its own stream that runs on across epochs (never restarted per step), reshuffling after
every pass. `state_dict` / `load_state_dict` restore the exact position, so a resumed search draws the same
batches as an uninterrupted one.
"""

from __future__ import annotations

import torch


class BatchStream:
    """Batches of `batch_size` indices into ``range(n)``; a fresh permutation after each full pass (the
    last, short batch of a pass is dropped unless the pass is shorter than one batch)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"BatchStream: n and batch_size must be >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self._perm = torch.randperm(n, generator=self.generator)
        self._pos = 0

    @property
    def batches_per_pass(self) -> int:
        return self.n // self.batch_size

    def next(self) -> torch.Tensor:
        if self._pos + self.batch_size > self.n:
            self._perm = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        idx = self._perm[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self._perm.clone(), "pos": self._pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self._perm = state["perm"].clone()
        self._pos = int(state["pos"])
