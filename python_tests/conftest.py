"""Shared fixtures. The suite runs against the in-place build (`make build`) of this checkout."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_backend():
    # Each test starts from a fixed seed and the "auto" backend, whatever the previous test did.
    import mednns_fast as mf

    torch.manual_seed(0)
    with mf.ops.use_backend("auto"):
        yield
