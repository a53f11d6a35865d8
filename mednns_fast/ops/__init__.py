"""The public op API: `mf.ops.NAME`. Each op dispatches, through its spec (`_spec.py`), to the C++, Triton
or reference path (docs/architecture.md).

The op families (ops/<family>.py) are found by `_families.py`; their public names (each module's
``__all__``) are re-exported here, so adding a family edits no file of this package but its own module.
"""

from . import reference
from ._backend import backend_for, get_backend, set_backend, use_backend
from ._checks import debug_checks, set_debug_checks
from ._families import FAMILIES

__all__ = ["backend_for", "get_backend", "set_backend", "use_backend", "debug_checks", "set_debug_checks",
           "reference"]


def _family_names() -> dict[str, object]:
    names: dict[str, object] = {}
    for module in FAMILIES:
        for name in module.__all__:
            if name in names or name in __all__:
                raise ValueError(f"mednns_fast.ops: {name!r} is exported twice ({module.__name__})")
            names[name] = getattr(module, name)
    return names


_PUBLIC = _family_names()
globals().update(_PUBLIC)
__all__ += list(_PUBLIC)
