"""Every registered op is a complete family member (docs/architecture.md, "Adding an op family"): it has a
spec with a reference reachable as `mf.ops.reference.<op>`, fake kernels for its schemas (torch.compile),
a test file under python_tests/ that calls it and a benchmark under benchmarks/ that calls it.

"Calls it" is read from the source: the op's name called directly (`mf.ops.js_pairwise(...)`,
`torch.ops.mednns_fast.fid_covariance_defects(...)`) or passed as a callable from an op namespace
(`benchmark(mf.ops.js_pairwise, p, q)`, `opcheck(tops.feature_stats_update_, ...)`); calls of the
reference (`reference.<op>(...)`) and mentions in comments or strings do not count.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mednns_fast as mf
from mednns_fast.ops import _library
from mednns_fast.ops._spec import SPECS

ROOT = Path(__file__).resolve().parents[1]
OPS = sorted(SPECS)


def _sources(paths) -> dict[str, str]:
    """File name -> source without comments."""
    return {p.name: re.sub(r"#[^\n]*", "", p.read_text()) for p in paths}


TESTS = _sources(p for p in sorted((ROOT / "python_tests").glob("test_*.py")) if p.name != Path(__file__).name)
BENCHMARKS = _sources([*sorted((ROOT / "benchmarks").glob("bench_*.py")), ROOT / "benchmarks" / "gpu_bench.py"])


def _calls(name: str) -> re.Pattern:
    direct = rf"(?<![\w.\"'])(?<!def ){name}\s*\("
    qualified = rf"(?<![\w.])(?:[A-Za-z_]\w*\.)+(?<!reference\.){name}\s*[(,)]"
    return re.compile(f"{direct}|{qualified}")


def _callers(name: str, sources: dict[str, str]) -> list[str]:
    pattern = _calls(name)
    return [file for file, text in sources.items() if pattern.search(text)]


def test_every_schema_has_a_spec():
    """Each op of csrc/ops.cpp (other than the backward ops, wired through their forward's spec) is defined
    by a family module."""
    forward_ops = {op for op in _library.registered_ops() if not op.endswith("_backward")}
    assert forward_ops <= set(SPECS), f"schemas without an OpSpec: {sorted(forward_ops - set(SPECS))}"


@pytest.mark.parametrize("op", OPS)
def test_op_has_a_reference(op):
    assert callable(SPECS[op].reference), f"{op}: its spec has no reference"
    assert callable(getattr(mf.ops.reference, op, None)), f"{op}: no mf.ops.reference.{op} (define reference_{op})"


@pytest.mark.parametrize("op", OPS)
def test_op_has_fake_kernels(op):
    spec = SPECS[op]
    if spec.composite:
        return  # no schema of its own: its inner ops are traced
    assert callable(spec.fake), f"{op}: its spec has no fake kernel"
    if f"{op}_backward" in _library.registered_ops() or spec.backward_with is not None:
        assert callable(spec.backward_fake), f"{op}: its spec has no fake kernel for {op}_backward"


@pytest.mark.parametrize("op", OPS)
def test_op_is_called_by_a_test_file(op):
    assert _callers(op, TESTS), f"{op}: no python_tests/test_*.py calls it"


@pytest.mark.parametrize("op", OPS)
def test_op_is_called_by_a_benchmark(op):
    assert _callers(op, BENCHMARKS), f"{op}: no benchmarks/bench_*.py (or gpu_bench.py) calls it"


def test_the_call_pattern_is_strict():
    """Mentions that are not calls of the op are not taken for one."""
    sources = {"a": 'mf.ops.reference.js_pairwise(p, q)\nset_backend("reference", op="js_pairwise")\n'
                    "def js_pairwise(p, q):\n    return reference_js_pairwise(p, q)\n",
               "b": "out = mf.ops.js_pairwise(p, q)\n", "c": "benchmark(mf.ops.js_pairwise, p, q)\n",
               "d": "torch.library.opcheck(tops.js_pairwise, (p, q))\n"}
    assert _callers("js_pairwise", sources) == ["b", "c", "d"]


def test_triton_modules_write_no_fake_kernels():
    """A Triton kernel implements its op's spec (`OpSpec.add_triton`): the spec's fake kernels serve it, so
    mednns_fast/triton/*.py defines and registers none of its own."""
    for path in sorted((ROOT / "mednns_fast" / "triton").glob("*.py")):
        text = re.sub(r"#[^\n]*", "", path.read_text())
        assert not re.search(r"register_fake\s*\(|def \w*_fake\(", text), f"{path.name} writes a fake kernel"
        assert not re.search(r"(custom_op|triton_op)\s*\(", text), f"{path.name} registers an op itself"
