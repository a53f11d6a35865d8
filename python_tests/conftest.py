"""Shared fixtures. The suite runs against the in-place build (`make build`) of this checkout."""

import pytest
import torch


def pytest_sessionstart(session):
    # The suite tests the compiled kernels: without them it must fail loudly, not quietly skip or fall back.
    from mednns_fast.ops import _library

    if not _library.LOADED:
        raise pytest.UsageError(f"the C++ extension did not load ({_library.LOAD_ERROR}); run `make build`")


@pytest.fixture(autouse=True)
def _seed_and_backend():
    # Each test starts from a fixed seed and the "auto" backend, whatever the previous test did.
    import mednns_fast as mf

    torch.manual_seed(0)
    with mf.ops.use_backend("auto"):
        yield
