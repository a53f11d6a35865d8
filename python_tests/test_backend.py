"""One dispatch mechanism for every op family: per-op backend choice, visible fallbacks, one spec per op."""

import pytest
import torch

import mednns_fast as mf
from mednns_fast.ops import _spec, reference

DEVICE = torch.device("cpu")


def test_every_registered_op_has_one_spec():
    from mednns_fast.ops import _library

    backward_ops = {f"{name}_backward" for name in _spec.SPECS}
    for op in _library.registered_ops():
        assert op in _spec.SPECS or op in backward_ops, f"C++ op {op} has no OpSpec"
    for name, spec in _spec.SPECS.items():
        assert callable(spec.reference), name
        assert spec.composite or spec.fake is not None, f"{name}: a kernel op needs a fake kernel"


def test_global_triton_falls_back_per_op():
    # No Triton kernel runs on CPU tensors here: every op falls back and says so, none fails.
    x = torch.randn(6, 3, dtype=torch.float64, device=DEVICE)
    with mf.ops.use_backend("triton"):
        for name in _spec.SPECS:
            used, why = mf.ops.backend_for(name, DEVICE)
            assert used in ("cpp", "reference") and "'triton' requested" in why, (name, used, why)
        with pytest.warns(RuntimeWarning, match="frechet_distance|fid_covariance_defects"):
            d = mf.ops.frechet_distance(x.mean(0), x.T.cov(), x.mean(0) + 1, x.T.cov())
    torch.testing.assert_close(d, torch.tensor(3.0, dtype=torch.float64))


def test_backend_per_op():
    p = torch.softmax(torch.randn(4, 5, device=DEVICE), -1)
    q = torch.softmax(torch.randn(4, 5, device=DEVICE), -1)
    calls = []
    with mf.ops.use_backend("reference", op="js_pairwise"):
        assert mf.ops.get_backend("js_pairwise") == "reference" and mf.ops.get_backend() == "auto"
        assert mf.ops.backend_for("js_pairwise", DEVICE) == ("reference", "requested")
        assert mf.ops.backend_for("js_divergence", DEVICE) == ("cpp", "auto")
        spec = _spec.SPECS["js_pairwise"]
        original = spec.reference
        spec.reference = lambda *a: calls.append(1) or original(*a)
        try:
            out = mf.ops.js_pairwise(p, q)
        finally:
            spec.reference = original
    assert calls == [1]  # the reference ran, through the spec
    assert out.device == DEVICE
    torch.testing.assert_close(out, reference.js_pairwise(p, q))
    assert mf.ops.get_backend("js_pairwise") == "auto"  # restored on exit
    with pytest.raises(ValueError, match="unknown op"):
        mf.ops.set_backend("cpp", op="no_such_op")


def test_ops_do_not_import_triton():
    import subprocess
    import sys

    script = ("import sys, mednns_fast as mf; mf.ops.mixed_sum; "
              "assert 'mednns_fast.triton' not in sys.modules, 'ops imported the Triton package'; "
              "from mednns_fast.ops import _library; assert not hasattr(_library, 'TRITON_AVAILABLE'); print('ok')")
    env = {k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
