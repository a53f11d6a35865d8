"""The package's import rules (docs/architecture.md): data flows one way, the ops import nothing above them,
the query path imports nothing from the evaluation, and test-only code stays out of the package."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mednns_fast"

# What each top-level part of the package may import from (besides itself).
ALLOWED = {
    "ops": set(),
    "triton": {"ops"},
    "io": set(),
    "stats": set(),
    "data": {"io"},
    "nas": {"ops"},
    "iac": {"ops", "io", "stats", "data", "nas"},
    "search": {"iac"},
    "zoo": {"ops", "io", "data", "nas"},
    "metaspace": {"ops", "io", "data", "nas", "zoo"},
    "evaluation": {"ops", "io", "stats", "data", "nas", "zoo", "metaspace"},
    "report": {"ops", "io", "stats", "iac"},
    "cli": {"ops", "io", "stats", "data", "nas", "iac", "zoo", "metaspace", "evaluation", "report"},
}


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    """Top-level parts of mednns_fast that `path` imports (absolute or relative, at any depth in the file)."""
    here = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = here if path.name == "__init__.py" else here[:-1]
    if path.name == "__init__.py":
        package = package[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = (node.module or "").split(".")
            names = [a.name for a in node.names] if len(target) == 1 else []
        elif isinstance(node, ast.Import):
            target, names = None, []
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "mednns_fast" and len(parts) > 1:
                    out.add(parts[1])
            continue
        else:
            continue
        if target[:1] != ["mednns_fast"]:
            continue
        if len(target) > 1:
            out.add(target[1])
        else:  # `from mednns_fast import data` / `from .. import ops`
            out.update(n for n in names if (PACKAGE / n).exists() or (PACKAGE / f"{n}.py").exists())
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path):
    part = _part(path)
    assert part in ALLOWED, f"{path}: a top-level part with no import rule (add it to ALLOWED and the docs)"
    bad = _imported_parts(path) - ALLOWED[part] - {part}
    assert not bad, f"{path.relative_to(PACKAGE)} ({part}) imports {sorted(bad)}; allowed: {sorted(ALLOWED[part])}"


def test_the_rule_checker_sees_a_violation(tmp_path):
    bad = PACKAGE / "metaspace" / "_layout_probe.py"
    bad.write_text("from ..evaluation import lodo\n")
    try:
        assert _imported_parts(bad) == {"evaluation"}
    finally:
        bad.unlink()


def test_query_path_loads_no_evaluation_module():
    code = ("import sys, mednns_fast.metaspace, mednns_fast.metaspace.query, mednns_fast.metaspace.persist; "
            "print([m for m in sys.modules if m.startswith('mednns_fast.evaluation')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_no_test_support_in_the_package():
    for name in ("browser", "synthetic", "search_cnn"):
        assert not list(PACKAGE.rglob(f"{name}.py")), f"test-only module {name}.py is back in the package"
    for path in [*PACKAGE.parent.glob("python_tests/**/*.py"), *PACKAGE.parent.glob("benchmarks/*.py"),
                 *PACKAGE.parent.glob("examples/*.py")]:
        assert "sys.path.insert" not in path.read_text() or path.name == "test_layout.py", path
