"""Pure-PyTorch references of every op: the oracle the fast paths are tested against, never a fast path.

`reference.<op>` is the function ``reference_<op>`` of the op's family module (ops/<family>.py), gathered
here so that tests and users reach every reference through one module. They compute in float64 (or
float32 for half types) the plain textbook formula, so they are slow and memory hungry on purpose: readable
first.
"""

from __future__ import annotations

from ._families import FAMILIES

_PREFIX = "reference_"


def _gather() -> dict[str, object]:
    found: dict[str, object] = {}
    for module in FAMILIES:
        for attr, value in vars(module).items():
            if attr.startswith(_PREFIX) and getattr(value, "__module__", None) == module.__name__:
                name = attr[len(_PREFIX):]
                if name in found:
                    raise ValueError(f"two families define the reference of {name!r}")
                found[name] = value
    return found


_REFERENCES = _gather()
globals().update(_REFERENCES)
__all__ = sorted(_REFERENCES)
