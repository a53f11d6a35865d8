"""Output geometry of the "same"-padded strided window ops (depthwise convolutions, 3x3 pools), one rule for
the reference, fake and opaque paths, as csrc/ computes it."""

from __future__ import annotations


def strided_side(n: int, stride: int) -> int:
    """Output length of a side of n inputs at `stride`: floor((n - 1) / stride) + 1, 0 for n = 0."""
    return (n - 1) // stride + 1
