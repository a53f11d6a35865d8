"""Locating the real images that ship inside installed packages (nothing is ever downloaded).

Each source function returns arrays or paths and raises `SourceMissing` (naming the pip or apt package to install)
when the package or file is absent, so the suite can skip that task with a one-line notice.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
ITK_EXAMPLES_DATA = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")


class SourceMissing(RuntimeError):
    """A shipped data source is not installed; `install` is the command line that provides it."""

    def __init__(self, what: str, install: str):
        super().__init__(f"{what} is not available; install it with: {install}")
        self.what = what
        self.install = install


def pip_module(module: str, pip_name: str | None = None) -> ModuleType:
    """Import `module`, or raise SourceMissing naming the PyPI package that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SourceMissing(f"Python package {module!r}", f"pip install {pip_name or module}") from exc


def apt_file(path: Path, package: str) -> Path:
    """Return `path` if it exists, else raise SourceMissing naming the Debian package that ships it."""
    # An override directory lets users on other distributions point at copies of the same files.
    override = os.environ.get("MEDNNS_FAST_SHARE")
    if override and not path.exists():
        alt = Path(override) / path.name
        if alt.exists():
            return alt
    if not path.exists():
        raise SourceMissing(f"{path}", f"apt-get install {package}")
    return path
