"""Shared fixtures. The suite runs against the in-place build (`make build`) of this checkout."""

import pytest
import torch


def pytest_sessionstart(session):
    # The suite tests the compiled kernels: without them it must fail loudly, not quietly skip or fall back.
    from mednns_fast.ops import _library

    if not _library.LOADED:
        raise pytest.UsageError(f"the C++ extension did not load ({_library.LOAD_ERROR}); run `make build`")


def pytest_configure(config):
    config.addinivalue_line("markers", "pipeline: a pipeline test; `device` is cpu and cuda (skipped without a GPU)")


def pytest_generate_tests(metafunc):
    """`device`: every op test takes it. C++/reference tests run on the CPU always and on CUDA when present
    (those cases carry the `gpu` marker); Triton tests run where the kernels run: the GPU when there is one,
    else the CPU under TRITON_INTERPRET=1. Tests assert their outputs are on it."""
    if "device" not in metafunc.fixturenames:
        return
    has_gpu = torch.cuda.is_available()
    if metafunc.definition.get_closest_marker("pipeline") is not None:
        # pipeline tests (supernets, zoo, meta-space, fine-tuning, IAC): the CUDA case is always listed, skipped
        # with its reason where the machine has no GPU
        no_gpu = pytest.mark.skipif(not has_gpu, reason="no CUDA GPU on this machine (torch.cuda.is_available() "
                                    "is False)")
        metafunc.parametrize("device", [pytest.param(torch.device("cpu"), id="cpu"),
                                        pytest.param(torch.device("cuda"), id="cuda", marks=[pytest.mark.gpu, no_gpu])])
        return
    if metafunc.definition.get_closest_marker("triton") is not None:
        params = [pytest.param(torch.device("cuda"), id="cuda", marks=pytest.mark.gpu) if has_gpu
                  else pytest.param(torch.device("cpu"), id="cpu")]
    else:
        params = [pytest.param(torch.device("cpu"), id="cpu")]
        if has_gpu:
            params.append(pytest.param(torch.device("cuda"), id="cuda", marks=pytest.mark.gpu))
    metafunc.parametrize("device", params)


@pytest.fixture(autouse=True)
def _seed_and_backend():
    # Each test starts from a fixed seed and the "auto" backend, whatever the previous test did.
    import mednns_fast as mf

    torch.manual_seed(0)
    with mf.ops.use_backend("auto"):
        yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny models: on a loaded 2-core machine OpenMP threads only spin."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
