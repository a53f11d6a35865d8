"""Meta-space losses: performance (MSE), pairwise rank, FID alignment, and TANS's hard-negative contrastive loss.

All take plain tensors (no zoo, no I/O) so each can be checked on hand-computed cases. See docs/metaspace.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_vector(name: str, x: torch.Tensor, n: int | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if n is not None and x.shape[0] != n:
        raise ValueError(f"{name}: expected {n} entries, got {x.shape[0]}")


def performance_loss(predicted: torch.Tensor, accuracy: torch.Tensor) -> torch.Tensor:
    """Mean squared error between predicted and true accuracies, both [R] fractions."""
    _check_vector("predicted", predicted)
    _check_vector("accuracy", accuracy, predicted.shape[0])
    return F.mse_loss(predicted, accuracy.to(predicted.dtype))


def pairwise_rank_loss(scores: torch.Tensor, accuracy: torch.Tensor, groups: torch.Tensor,
                       margin: float = 0.0) -> torch.Tensor:
    """Mean over ordered pairs (i, j) of the same group with accuracy_i > accuracy_j of
    relu(margin - (scores_i - scores_j)): a better model on a dataset must score higher.

    scores, accuracy, groups: [R] (groups: the dataset index of each record). Zero when no pair exists.
    """
    _check_vector("scores", scores)
    _check_vector("accuracy", accuracy, scores.shape[0])
    _check_vector("groups", groups, scores.shape[0])
    better = (accuracy[:, None] > accuracy[None, :]) & (groups[:, None] == groups[None, :])
    gap = scores[:, None] - scores[None, :]
    if scores.device.type != "cpu":  # no host read on an accelerator: a masked mean (0 without pairs)
        terms = torch.relu(margin - gap).masked_fill(~better, 0.0)
        return terms.sum() / better.sum().clamp(min=1).to(terms.dtype)
    if not bool(better.any()):
        return scores.sum() * 0.0
    return torch.relu(margin - gap[better]).mean()


def normalised_fid(fid: torch.Tensor) -> torch.Tensor:
    """FID matrix [N, N] divided by its largest off-diagonal entry (so targets lie in [0, 1])."""
    if fid.ndim != 2 or fid.shape[0] != fid.shape[1]:
        raise ValueError(f"fid: expected a square matrix, got {tuple(fid.shape)}")
    off = fid.masked_fill(torch.eye(fid.shape[0], dtype=torch.bool, device=fid.device), 0.0)
    top = off.max()
    return off / top if float(top) > 0 else off


def fid_targets(fid: torch.Tensor, mode: str = "max", low: float = 0.3, high: float = 1.6) -> torch.Tensor:
    """Target distances [N, N] between dataset embeddings (which lie on the unit sphere) from an FID matrix.

    "max": FID / its largest off-diagonal entry, in [0, 1]: every pair stays within cosine >= 0.5, a narrow
    cone. "spread": log(FID) mapped linearly onto [low, high] (the closest pair at `low`, the farthest at
    `high`; a chord of sqrt(2) is orthogonal), so that near and far datasets separate. Diagonal 0."""
    if mode == "max":
        return normalised_fid(fid)
    if mode != "spread":
        raise ValueError(f"fid_targets: mode must be 'max' or 'spread', got {mode!r}")
    if fid.ndim != 2 or fid.shape[0] != fid.shape[1]:
        raise ValueError(f"fid: expected a square matrix, got {tuple(fid.shape)}")
    eye = torch.eye(fid.shape[0], dtype=torch.bool, device=fid.device)
    logf = fid.clamp_min(1e-6).log()
    off = logf[~eye]
    if off.numel() == 0:
        return torch.zeros_like(fid)
    lo, hi = off.min(), off.max()
    scaled = (logf - lo) / (hi - lo) if float(hi - lo) > 0 else torch.full_like(logf, 0.5)
    return (low + (high - low) * scaled).masked_fill(eye, 0.0)


def per_dataset_rank(accuracy: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """[R] percentile rank of each accuracy within its group (0 = worst, 1 = best of its dataset; ties share the
    mean rank; a group of one gets 0.5). accuracy, groups: [R]."""
    _check_vector("accuracy", accuracy)
    _check_vector("groups", groups, accuracy.shape[0])
    out = torch.empty_like(accuracy, dtype=torch.float32)
    for g in groups.unique().tolist():
        idx = (groups == g).nonzero().squeeze(1)
        a = accuracy[idx].double()
        below = (a[None, :] < a[:, None]).sum(1).double()
        equal = (a[None, :] == a[:, None]).sum(1).double()
        n = len(idx)
        out[idx] = ((below + (equal - 1) / 2) / (n - 1)).float() if n > 1 else 0.5
    return out


def fid_loss(embeddings: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over pairs a < b of (||e_a - e_b|| - target_ab)^2.

    embeddings: [N, D] dataset embeddings; target: [N, N] (e.g. `normalised_fid(fid_matrix(...))`).
    Zero exactly when the embedding distances equal the target.
    """
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings: expected [N, D], got {tuple(embeddings.shape)}")
    n = embeddings.shape[0]
    if target.shape != (n, n):
        raise ValueError(f"target: expected [{n}, {n}], got {tuple(target.shape)}")
    i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
    if i.numel() == 0:
        return embeddings.sum() * 0.0
    # Differences, not torch.cdist: its gradient at a zero distance is NaN-free only this way with the clamp.
    dist = ((embeddings[i] - embeddings[j]).pow(2).sum(-1).clamp_min(1e-12)).sqrt()
    return (dist - target[i, j].to(dist.dtype)).pow(2).mean()


def contrastive_loss(dataset_emb: torch.Tensor, model_emb: torch.Tensor, positive: torch.Tensor,
                     margin: float = 0.2) -> torch.Tensor:
    """TANS hard-negative contrastive loss on cosine similarities of L2-normalised embeddings.

    dataset_emb: [N, D]; model_emb: [M, D]; positive: [M] the dataset index each model is positive for
    (its source dataset). For each dataset q: relu(margin - cos(q, its hardest positive model) + cos(q,
    its hardest negative model)); for each model m symmetrically against datasets. Mean of both terms.
    """
    if dataset_emb.ndim != 2 or model_emb.ndim != 2 or dataset_emb.shape[1] != model_emb.shape[1]:
        raise ValueError(f"dataset_emb [N, D] and model_emb [M, D] must share D, got "
                         f"{tuple(dataset_emb.shape)} and {tuple(model_emb.shape)}")
    _check_vector("positive", positive, model_emb.shape[0])
    sim = dataset_emb @ model_emb.T  # [N, M]
    is_pos = positive[None, :] == torch.arange(dataset_emb.shape[0], device=sim.device)[:, None]
    big = torch.finfo(sim.dtype).max / 4
    hardest_pos = sim.masked_fill(~is_pos, big).min(1).values
    hardest_neg = sim.masked_fill(is_pos, -big).max(1).values
    rows = is_pos.any(1) & (~is_pos).any(1)
    per_dataset = torch.relu(margin - hardest_pos + hardest_neg)[rows]
    model_pos = sim.gather(0, positive[None, :]).squeeze(0)
    model_neg = sim.masked_fill(is_pos, -big).max(0).values
    cols = (~is_pos).any(0)
    per_model = torch.relu(margin - model_pos + model_neg)[cols]
    terms = [t.mean() for t in (per_dataset, per_model) if t.numel()]
    return torch.stack(terms).mean() if terms else sim.sum() * 0.0
