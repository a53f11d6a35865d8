"""The once-for-all ResNet's configuration space: choices, sampling, canonical keys and fixed-length encodings.

A *config* is a JSON-able dict ``{"depth": [4 ints], "expand": [18 floats], "width": [4 floats],
"kernel": [18 ints]}``: ``depth[s]`` is the number of extra blocks of stage ``s``; ``expand``/``kernel`` have one
entry per block slot (stage by stage, ``base_depth[s] + max_extra_depth`` slots each); values of inactive slots
are kept but ignored. `canonical_config` sets them to the smallest choice, so one network has one key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

EXPAND_CHOICES: tuple[float, ...] = (0.2, 0.25, 0.35)
WIDTH_CHOICES: tuple[float, ...] = (0.65, 0.8, 1.0)
KERNEL_CHOICES: tuple[int, ...] = (3, 5, 7)
BASE_DEPTH: tuple[int, ...] = (2, 2, 4, 2)
MAX_EXTRA_DEPTH = 2
DEPTH_CHOICES: tuple[int, ...] = tuple(range(MAX_EXTRA_DEPTH + 1))
N_SLOTS = sum(BASE_DEPTH) + MAX_EXTRA_DEPTH * len(BASE_DEPTH)  # 18 block slots
N_STAGES = len(BASE_DEPTH)
# One-hot per choice: depth and width per stage, expand and kernel per block slot.
CONFIG_ENCODING_DIM = N_STAGES * (len(DEPTH_CHOICES) + len(WIDTH_CHOICES)) + N_SLOTS * (
    len(EXPAND_CHOICES) + len(KERNEL_CHOICES)
)
CONFIG_KEYS = ("depth", "expand", "width", "kernel")


def make_divisible(value: float, divisor: int) -> int:
    """Round to the nearest multiple of `divisor` (never below `divisor`, never below 90% of `value`)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if out < 0.9 * value:
        out += divisor
    return out


def slot_offsets(base_depth: Sequence[int], extra: int) -> list[int]:
    offsets, total = [], 0
    for d in base_depth:
        offsets.append(total)
        total += d + extra
    return offsets


@dataclass(frozen=True)
class BlockSpec:
    """One active bottleneck of a subnet: where it sits and its active sizes."""

    stage: int
    slot: int  # global block slot, 0..17
    index: int  # position within its stage
    in_channels: int
    mid_channels: int
    out_channels: int
    kernel: int
    stride: int

    @property
    def projection(self) -> bool:
        return self.index == 0  # the first block of every stage has a 1x1 projection shortcut


# ----------------------------------------------------------------------------------------------------------
# Config space (module-level: the default space; the class methods below use the instance's space).


def validate_config(config: dict, base_depth: Sequence[int] = BASE_DEPTH, max_extra: int = MAX_EXTRA_DEPTH) -> None:
    """Raise ValueError naming the field when `config` is not in the space."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict with keys {CONFIG_KEYS}, got {type(config).__name__}")
    missing = [k for k in CONFIG_KEYS if k not in config]
    extra = [k for k in config if k not in CONFIG_KEYS]
    if missing or extra:
        raise ValueError(f"config must have exactly the keys {CONFIG_KEYS}; missing {missing}, unexpected {extra}")
    n_slots = sum(base_depth) + max_extra * len(base_depth)
    lengths = {"depth": len(base_depth), "width": len(base_depth), "expand": n_slots, "kernel": n_slots}
    choices = {"depth": tuple(range(max_extra + 1)), "width": WIDTH_CHOICES, "expand": EXPAND_CHOICES,
               "kernel": KERNEL_CHOICES}
    for key in CONFIG_KEYS:
        values = config[key]
        if not isinstance(values, (list, tuple)) or len(values) != lengths[key]:
            raise ValueError(f"config[{key!r}] must be a list of {lengths[key]} values, got {values!r}")
        for i, v in enumerate(values):
            if isinstance(v, bool) or not any(_same(v, c) for c in choices[key]):
                raise ValueError(f"config[{key!r}][{i}] = {v!r} is outside the space; choices are {choices[key]}")


def _same(value, choice) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and abs(float(value) - float(choice)) < 1e-9


def _snap(value, choices):
    # JSON round trips may turn 3 into 3.0; the config always holds the exact choice.
    return next(c for c in choices if _same(value, c))


def normalize_config(config: dict, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    """Validated copy with every value snapped to its exact choice (plain Python ints/floats)."""
    validate_config(config, base_depth, max_extra)
    return {
        "depth": [int(_snap(v, range(max_extra + 1))) for v in config["depth"]],
        "expand": [float(_snap(v, EXPAND_CHOICES)) for v in config["expand"]],
        "width": [float(_snap(v, WIDTH_CHOICES)) for v in config["width"]],
        "kernel": [int(_snap(v, KERNEL_CHOICES)) for v in config["kernel"]],
    }


def active_slots(config: dict, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> list[int]:
    """Global slot indices of the blocks `config` runs, in order."""
    offsets = slot_offsets(base_depth, max_extra)
    return [offsets[s] + i for s, d in enumerate(base_depth) for i in range(d + int(config["depth"][s]))]


def canonical_config(config: dict, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    """The same network with inactive slots set to the smallest choice: equal networks, equal configs."""
    out = normalize_config(config, base_depth, max_extra)
    active = set(active_slots(out, base_depth, max_extra))
    for slot in range(len(out["expand"])):
        if slot not in active:
            out["expand"][slot] = EXPAND_CHOICES[0]
            out["kernel"][slot] = KERNEL_CHOICES[0]
    return out


def config_key(config: dict) -> str:
    """Canonical JSON text of a config: the zoo's unique key."""
    return json.dumps(canonical_config(config), sort_keys=True, separators=(",", ":"))


def sample_stage(rng: np.random.Generator, stage: int, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    """Uniform choices for one stage: {"depth": int, "width": float, "expand": [...], "kernel": [...]}."""
    n = base_depth[stage] + max_extra
    return {
        "depth": int(rng.integers(0, max_extra + 1)),
        "width": float(WIDTH_CHOICES[rng.integers(len(WIDTH_CHOICES))]),
        "expand": [float(EXPAND_CHOICES[i]) for i in rng.integers(len(EXPAND_CHOICES), size=n)],
        "kernel": [int(KERNEL_CHOICES[i]) for i in rng.integers(len(KERNEL_CHOICES), size=n)],
    }


def join_stages(stages: Sequence[dict]) -> dict:
    """A config from per-stage choices (as `sample_stage` returns them)."""
    return {
        "depth": [s["depth"] for s in stages],
        "expand": [e for s in stages for e in s["expand"]],
        "width": [s["width"] for s in stages],
        "kernel": [k for s in stages for k in s["kernel"]],
    }


def sample_config(rng: np.random.Generator, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    """Every choice drawn independently and uniformly."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return join_stages([sample_stage(rng, s, base_depth, max_extra) for s in range(len(base_depth))])


def _extreme_config(pick: int, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    n = sum(base_depth) + max_extra * len(base_depth)
    return {
        "depth": [(0, max_extra)[pick]] * len(base_depth),
        "expand": [(EXPAND_CHOICES[0], EXPAND_CHOICES[-1])[pick]] * n,
        "width": [(WIDTH_CHOICES[0], WIDTH_CHOICES[-1])[pick]] * len(base_depth),
        "kernel": [(KERNEL_CHOICES[0], KERNEL_CHOICES[-1])[pick]] * n,
    }


def max_config(base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    return _extreme_config(1, base_depth, max_extra)


def min_config(base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> dict:
    return _extreme_config(0, base_depth, max_extra)


def config_space_size(base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> int:
    """Number of distinct networks (inactive slots do not count)."""
    per_block = len(EXPAND_CHOICES) * len(KERNEL_CHOICES)
    total = 1
    for d in base_depth:
        total *= len(WIDTH_CHOICES) * sum(per_block ** (d + extra) for extra in range(max_extra + 1))
    return total


def encode_config(config: dict, base_depth=BASE_DEPTH, max_extra=MAX_EXTRA_DEPTH) -> torch.Tensor:
    """Fixed-length float32 vector [CONFIG_ENCODING_DIM]: one-hot per choice, inactive block slots all zero.

    Layout: depth one-hots (per stage), width one-hots (per stage), expand one-hots (per slot), kernel one-hots.
    """
    config = normalize_config(config, base_depth, max_extra)
    depth_choices = tuple(range(max_extra + 1))
    active = set(active_slots(config, base_depth, max_extra))
    parts: list[np.ndarray] = []

    def one_hot(value, choices, on=True):
        v = np.zeros(len(choices), dtype=np.float32)
        if on:
            v[[_same(value, c) for c in choices].index(True)] = 1.0
        return v

    parts += [one_hot(v, depth_choices) for v in config["depth"]]
    parts += [one_hot(v, WIDTH_CHOICES) for v in config["width"]]
    parts += [one_hot(v, EXPAND_CHOICES, i in active) for i, v in enumerate(config["expand"])]
    parts += [one_hot(v, KERNEL_CHOICES, i in active) for i, v in enumerate(config["kernel"])]
    return torch.from_numpy(np.concatenate(parts))
