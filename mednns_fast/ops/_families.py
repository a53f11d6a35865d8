"""The op families of this package, found rather than listed: every module ``ops/<family>.py`` whose name
does not start with an underscore and that defines ``SPECS`` (its ops' `OpSpec`s). Importing one registers
its ops; `ops/__init__.py` re-exports each family's ``__all__`` and `ops.reference` its ``reference_<op>``
functions, so a new family needs no edit outside its own module (docs/architecture.md, "Adding an op
family")."""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_NOT_FAMILIES = {"reference"}  # the module that gathers the references from the families


def _load() -> tuple[ModuleType, ...]:
    package = __name__.rsplit(".", 1)[0]
    modules = [importlib.import_module(f"{package}.{info.name}")
               for info in pkgutil.iter_modules(importlib.import_module(package).__path__)
               if not info.name.startswith("_") and info.name not in _NOT_FAMILIES]
    return tuple(m for m in modules if hasattr(m, "SPECS"))


FAMILIES: tuple[ModuleType, ...] = _load()
