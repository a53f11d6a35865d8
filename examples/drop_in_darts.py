"""Speed up an existing pt.darts-style DARTS search with one call: `mf.nas.swap_mixed_ops(model)`.

Run from the repository root: `python -m examples.drop_in_darts [--steps 3] [--batch 32] [--C 8] [--layers 5]`.
It builds the pt.darts-style search network of `examples/ptdarts_style.py` (the user's code, untouched), runs
first-order DARTS search steps on the built-in `brain_tissue` task (real MNI152 slices, `mf.data.build_task`), swaps its
mixed edges for fused ones and runs the same steps again from the same state. See docs/drop_in_darts.md.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

import mednns_fast as mf
from examples import ptdarts_style as ptd  # the user's DARTS code


def search_steps(model, train, val, steps: int, batch: int) -> tuple[list[float], float]:
    """pt.darts' first-order search loop: alphas on a validation batch, then weights on a training batch.
    Returns the training losses and the seconds per step."""
    w_optim = torch.optim.SGD(model.weights(), 0.025, momentum=0.9, weight_decay=3e-4)
    a_optim = torch.optim.Adam(model.alphas(), 3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    losses, start = [], time.perf_counter()
    for step in range(steps):
        sl = slice(step * batch, (step + 1) * batch)
        a_optim.zero_grad()
        model.loss(val[0][sl], val[1][sl]).backward()
        a_optim.step()
        w_optim.zero_grad()
        loss = model.loss(train[0][sl], train[1][sl])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.weights(), 5.0)
        w_optim.step()
        losses.append(loss.item())
    return losses, (time.perf_counter() - start) / steps


def as_tensors(split) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.as_tensor(split.images, dtype=torch.float32) / 255.0
    return images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2), torch.as_tensor(split.labels)


def main(steps: int = 3, batch: int = 32, C: int = 8, layers: int = 5, nodes: int = 4,
         task: str = "brain_tissue") -> dict:
    data = mf.data.build_task(task)
    train, val = as_tensors(data["train"]), as_tensors(data["val"])
    torch.manual_seed(0)
    model = ptd.SearchCNNController(train[0].shape[1], C, int(train[1].max()) + 1, layers, nodes)
    before = copy.deepcopy(model)

    report = mf.nas.swap_mixed_ops(model)  # <- the one call
    print(report)

    losses_before, t_before = search_steps(before, train, val, steps, batch)
    losses_after, t_after = search_steps(model, train, val, steps, batch)
    print(f"pt.darts edges: {t_before:.2f} s/step, losses {[round(v, 4) for v in losses_before]}")
    print(f"fused edges:    {t_after:.2f} s/step, losses {[round(v, 4) for v in losses_after]} "
          f"({t_before / t_after:.2f}x)")
    return {"report": report, "losses_before": losses_before, "losses_after": losses_after,
            "speedup": t_before / t_after}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--C", type=int, default=8)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    main(a.steps, a.batch, a.C, a.layers)
