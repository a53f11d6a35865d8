"""Outside FID implementations users trust, for the tests and benchmarks (benchmarks/bench_fid.py imports
this file too).

pytorch-fid's `fid_score` module imports torchvision at the top, which cannot be installed beside the
CPU torch here, so only its `calculate_frechet_distance` is loaded: its definition is read from the
installed source and executed with numpy and scipy.linalg. pytorch-fid must be installed
(`pip install --no-deps pytorch-fid`); a missing package is an error, never a skip.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg


def load_pytorch_fid() -> Callable[..., float]:
    """pytorch-fid's calculate_frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6) (numpy in, float out)."""
    spec = importlib.util.find_spec("pytorch_fid")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pytorch-fid is not installed; install it with "
                           "`pip install --no-deps pytorch-fid` (its torchvision dependency is not needed "
                           "for calculate_frechet_distance)")
    source = Path(next(iter(spec.submodule_search_locations)), "fid_score.py").read_text()
    tree = ast.parse(source)
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "calculate_frechet_distance"]
    if len(defs) != 1:
        raise RuntimeError("pytorch_fid/fid_score.py no longer defines calculate_frechet_distance")
    namespace = {"np": np, "linalg": scipy.linalg}
    exec(compile(ast.Module(body=defs, type_ignores=[]), "pytorch_fid/fid_score.py", "exec"), namespace)
    return namespace["calculate_frechet_distance"]


def eigvals_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The torchmetrics-style formula (numpy, float64): tr sqrt(S1 S2) as the sum of the square roots of the
    complex eigenvalues of the non-symmetric product S1 @ S2, real part."""
    import torch

    s1, s2 = torch.as_tensor(sigma1, dtype=torch.float64), torch.as_tensor(sigma2, dtype=torch.float64)
    diff = torch.as_tensor(mu1, dtype=torch.float64) - torch.as_tensor(mu2, dtype=torch.float64)
    tr_covmean = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return float(diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean)


def textbook_fid(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 sqrtm(S1 S2)) with scipy's sqrtm in float64 (for well-conditioned
    inputs)."""
    covmean = scipy.linalg.sqrtm(np.asarray(sigma1, np.float64) @ np.asarray(sigma2, np.float64)).real
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gram_fid(x, y) -> float:
    """The exact FID of two feature sets x [n1, d], y [n2, d] from the numpy SVD of the n1 x n2 matrix of
    centred rows (unbiased covariances): valid for singular covariances, where sqrtm is not."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    nx, ny = len(x) - 1, len(y) - 1
    trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt(nx * ny)
    diff = x.mean(0) - y.mean(0)
    return float(diff @ diff + (xc**2).sum() / nx + (yc**2).sum() / ny - 2 * trace_sqrt)


def symmetric_fid(mu1, sigma1, mu2, sigma2) -> float:
    """The float64 numpy reference for full-rank, well-conditioned covariances: tr sqrt(S1 S2) as the
    eigenvalues of the symmetric R1 S2 R1 with R1 = S1^(1/2) from numpy's eigh (LAPACK through numpy,
    independent of torch). Seconds at d=2048, where scipy's sqrtm takes tens."""
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    w, u = np.linalg.eigh(s1)
    r1 = (u * np.sqrt(np.clip(w, 0, None))) @ u.T
    lam = np.linalg.eigvalsh(r1 @ s2 @ r1)
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(lam, 0, None)).sum())
