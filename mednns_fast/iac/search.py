"""First-order bilevel DARTS search of implanted cells (IAC), with optional JS-stability pruning (IAC-LTH),
and the training of the derived cell.

`darts_search(network, data, config)`: the backbone is frozen (no gradients, BatchNorm statistics kept);
the training data is split into two halves by case; every step first updates the architecture parameters
(alphas, betas; Adam) on a batch of one half, then the cells' weights on a batch of the other (first order:
no unrolled step). Each half has its own endless batch stream. With `config.pruner` set, a
`ProgressivePruner` watches the alphas after every epoch; its masks switch pruned candidates off in every
implanted cell (exact zero weights, so the MixedOps never compute them) and the search stops when every
edge is decided. Without it the search runs `config.epochs` epochs (the full-length search).
The first `config.warmup_epochs` epochs train the cells' weights only (PC-DARTS' warm-up): the cells'
output projections start at zero, so until they have moved the architecture gradient is exactly zero.
An architecture step whose gradient is exactly zero is skipped: Adam would otherwise turn the weight decay
(1e-3 x alphas of 1e-3) into a full-size step of the learning rate in the direction -sign(alpha).
A pruner dict with ``threshold="auto"`` is calibrated from a null run of the architecture optimiser
(`pruner.null_trajectory` / `pruner.calibrate`, same learning rate, betas, weight decay, steps per epoch
and length as this search); the values used are in `SearchResult.calibration`.
With `checkpoint` set, the whole state is saved after every epoch and a rerun resumes from it exactly.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..io import atomic_torch_save
from ..nas.device import Precision, on_cpu, resolve_device
from ..nas.iac.cell import Genotype, derive, primitive_names
from ..nas.iac.implant import IACNetwork, implant
from ..nas.iac.unet import UNet
from .batches import BatchStream
from .pruner import ProgressivePruner, PruneEvent, calibrate, null_trajectory
from .segmentation import SegData, dice_ce_loss, split_halves, train_segmenter, train_selected

_CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class SearchConfig:
    """epochs: the full-length search (the most epochs a pruned search may take; warm-up included). An
    epoch is one pass over the weight half of the data. warmup_epochs: weight-only epochs first (no
    architecture step, no pruning). w_lr: Adam on the cells' weights. alpha_lr, alpha_weight_decay:
    Adam (betas 0.5, 0.999) on alphas and betas (PC-DARTS: 6e-4, 1e-3). pruner: `ProgressivePruner`
    keyword arguments (``threshold="auto"``: calibrated, see the module doc; ``noise_quantile``,
    ``noise_multiple``, ``margin_multiple`` tune that), or None for the full-length search."""

    epochs: int = 50
    batch_size: int = 8
    w_lr: float = 3e-3
    alpha_lr: float = 6e-4
    alpha_weight_decay: float = 1e-3
    seed: int = 0
    pruner: dict | None = None
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"SearchConfig: {name} must be an int >= 1, got {v!r}")
        for name in ("w_lr", "alpha_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SearchConfig: {name} must be > 0, got {getattr(self, name)!r}")
        w = self.warmup_epochs
        if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < self.epochs:
            raise ValueError(f"SearchConfig: warmup_epochs must be an int in [0, epochs), got {w!r}")


@dataclass
class SearchResult:
    """What a search returns.

    genotype: the derived cell. epochs_run: epochs searched. wall_seconds: search time (forward/backward
    and pruner steps; checkpoint writes excluded), epoch_seconds: per epoch; cpu_seconds: the process's
    CPU time over the same spans (less sensitive to other load on a shared machine). weights: [T, E, P] edge
    distributions after each epoch; betas: [T, E] normalised betas. train_loss / arch_loss: per-epoch
    means on the two halves. decided_epoch: per edge, the epoch its last prune left `min_ops` candidates
    (None: not decided by the pruner). events: the prune events. divergences: [T][E] JS stability per
    epoch (the pruner's; None when no pruner or before a full window). done: every edge decided.
    setup_seconds: wall time before the first epoch (a calibrated pruner's null run; not in wall_seconds).
    """

    genotype: Genotype
    epochs_run: int
    wall_seconds: float
    epoch_seconds: list[float]
    cpu_seconds: float
    weights: torch.Tensor
    betas: torch.Tensor
    train_loss: list[float]
    arch_loss: list[float]
    decided_epoch: list[int | None]
    events: list[PruneEvent]
    divergences: list[list[float | None]] | None
    done: bool
    config: SearchConfig
    primitives: tuple[str, ...] = field(default=())
    calibration: dict | None = None
    earliest_decision: list[int] | None = None
    steps_per_epoch: int = 0
    setup_seconds: float = 0.0

    def decided_at_earliest(self) -> int:
        """Edges decided at the earliest epoch the pruner allows (`ProgressivePruner.earliest_decision_epoch`)."""
        if self.earliest_decision is None:
            return 0
        return sum(d is not None and d <= first for d, first in zip(self.decided_epoch, self.earliest_decision,
                                                                     strict=True))

    def summary(self) -> dict:
        """JSON-ready scalars and lists (no tensors)."""
        return {
            "genotype": self.genotype.to_dict(), "genotype_str": str(self.genotype),
            "epochs_run": self.epochs_run, "wall_seconds": self.wall_seconds, "cpu_seconds": self.cpu_seconds,
            "epoch_seconds": self.epoch_seconds,
            "decided_epoch": self.decided_epoch, "done": self.done,
            "events": [ev.to_dict() for ev in self.events], "config": asdict(self.config),
            "train_loss": self.train_loss, "arch_loss": self.arch_loss,
            "calibration": self.calibration, "earliest_decision": self.earliest_decision,
            "decided_at_earliest": self.decided_at_earliest(), "steps_per_epoch": self.steps_per_epoch,
            "setup_seconds": self.setup_seconds,
        }


def search_optimizers(network: IACNetwork, config: SearchConfig) -> tuple[torch.optim.Optimizer,
                                                                          torch.optim.Optimizer]:
    """Adam on the cells' weights; Adam (betas 0.5, 0.999, weight decay) on the architecture parameters."""
    w_opt = torch.optim.Adam(list(network.cell_parameters()), lr=config.w_lr)
    a_opt = torch.optim.Adam(network.arch_parameters(), lr=config.alpha_lr, betas=(0.5, 0.999),
                             weight_decay=config.alpha_weight_decay)
    return w_opt, a_opt


def search_step(network: IACNetwork, w_opt: torch.optim.Optimizer, a_opt: torch.optim.Optimizer,
                arch_batch: tuple[torch.Tensor, torch.Tensor] | None,
                weight_batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, float]:
    """One first-order DARTS step: the architecture parameters on `arch_batch` (images [N, C, H, W], masks
    [N, H, W]; None: a warm-up step, weights only), then the cells' weights on `weight_batch`. An
    architecture gradient that is exactly zero (the projections still at their zero init) takes no step.
    Returns (weight loss, architecture loss; nan for a warm-up step)."""
    w_loss, a_loss = _step(network, w_opt, a_opt, arch_batch, weight_batch, Precision())
    return float(w_loss), float(a_loss)


def _step(network: IACNetwork, w_opt: torch.optim.Optimizer, a_opt: torch.optim.Optimizer,
          arch_batch: tuple[torch.Tensor, torch.Tensor] | None, weight_batch: tuple[torch.Tensor, torch.Tensor],
          precision: Precision) -> tuple[torch.Tensor, torch.Tensor]:
    """`search_step` under `precision` (autocast; fp16 gradient scaling), its losses left on the device."""
    a_loss = torch.full((), math.nan, device=weight_batch[0].device)
    if arch_batch is not None:
        with precision.autocast():
            a_loss = dice_ce_loss(network(arch_batch[0]), arch_batch[1])
        a_opt.zero_grad(set_to_none=True)
        precision.backward(a_loss)
        # Only while the projections may still be at their zero init is the gradient read on the host: once a
        # step has been taken the check (a host sync per step) is skipped for good (a resumed search checks once).
        if getattr(a_opt, "arch_gradient_seen", False) or any(
                g is not None and bool(g.ne(0).any()) for g in (p.grad for p in network.arch_parameters())):
            a_opt.arch_gradient_seen = True
            precision.step(a_opt)
    with precision.autocast():
        w_loss = dice_ce_loss(network(weight_batch[0]), weight_batch[1])
    w_opt.zero_grad(set_to_none=True)  # also clears what the architecture step left on the weights
    precision.backward(w_loss)
    precision.step(w_opt)
    return w_loss.detach(), a_loss.detach()


def darts_search(network: IACNetwork, data: SegData, config: SearchConfig = SearchConfig(),
                 checkpoint: str | os.PathLike | None = None, progress: bool = True,
                 on_epoch_end: Callable[[int], None] | None = None, device: str | torch.device = "cpu",
                 amp: str = "none") -> SearchResult:
    """Search the cells implanted in `network` (from `mf.nas.implant(unet, IACConfig(...))`) on `data`
    (the training split). Resumes from `checkpoint` when that file exists, and writes it after every
    epoch. `on_epoch_end(epoch)` runs after each epoch's checkpoint (a place to log, or to stop).
    device: the network and the data are moved there once (the network stays there); amp: "none", "bf16" or
    "fp16". The step losses stay on the device until the epoch ends; the checkpoint holds CPU tensors.
    Returns a `SearchResult` (its tensors on the CPU); `network` is left in its searched state (prune masks
    applied)."""
    if not isinstance(network, IACNetwork) or network.arch is None:
        raise TypeError("darts_search: network must be an IACNetwork with search cells (implant an IACConfig)")
    if data.n_classes != network.unet.config["n_classes"]:
        raise ValueError(f"darts_search: data has {data.n_classes} classes, the network predicts "
                         f"{network.unet.config['n_classes']}")
    if len(data) < 2:
        raise ValueError(f"darts_search: needs at least 2 training images, got {len(data)}")
    device = resolve_device(device)
    precision = Precision(device, amp)
    network.to(device)
    data = data.to(device)
    arch = network.arch
    network.freeze_backbone()
    w_opt, a_opt = search_optimizers(network, config)
    w_half, a_half = split_halves(data, config.seed)
    w_stream = BatchStream(len(w_half), config.batch_size, config.seed + 1)
    a_stream = BatchStream(len(a_half), config.batch_size, config.seed + 2)
    pruner, calibration = None, None
    t_setup = time.perf_counter()
    if config.pruner is not None:
        kwargs, calibration = pruner_settings(config, arch.alphas.shape, w_stream.batches_per_pass,
                                              arch.config.primitives)
        pruner = ProgressivePruner(arch.alphas, names=primitive_names(arch.config), **kwargs)
    setup_seconds = time.perf_counter() - t_setup  # the null run of a calibrated pruner (counted end to end)
    history: dict[str, list] = {"weights": [], "betas": [], "train_loss": [], "arch_loss": [], "epoch_seconds": [],
                               "epoch_cpu_seconds": []}
    start = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("version") != _CHECKPOINT_VERSION or state["config"] != asdict(config):
            raise ValueError(f"darts_search: checkpoint {path} was written by a different search "
                             f"(config {state.get('config')}); remove it or pass the same config")
        network.load_state_dict(state["network"])
        w_opt.load_state_dict(state["w_opt"])
        a_opt.load_state_dict(state["a_opt"])
        w_stream.load_state_dict(state["w_stream"])
        a_stream.load_state_dict(state["a_stream"])
        if pruner is not None:
            pruner.load_state_dict(state["pruner"])
            network.set_active(pruner.masks)
        history = state["history"]
        start = state["epoch"] + 1
    steps = w_stream.batches_per_pass
    bar = tqdm(range(start, config.epochs), desc="search" if pruner is None else "search+prune",
               disable=not progress, leave=False, initial=start, total=config.epochs)
    for epoch in bar:
        if pruner is not None and pruner.done:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        network.train()
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # float64: the sums Python floats gave
        warming = epoch < config.warmup_epochs
        for _ in range(steps):
            a_idx, w_idx = a_stream.next().to(device), w_stream.next().to(device)
            w_loss, a_loss = _step(network, w_opt, a_opt,
                                   None if warming else (a_half.images[a_idx], a_half.masks[a_idx]),
                                   (w_half.images[w_idx], w_half.masks[w_idx]), precision)
            sums += torch.stack([w_loss.double(), a_loss.double()])
        sums = sums.tolist()  # the epoch's one read of its losses
        if pruner is not None and pruner.step(epoch):
            network.set_active(pruner.masks)
        history["epoch_seconds"].append(time.perf_counter() - t0)
        history["epoch_cpu_seconds"].append(time.process_time() - c0)
        history["weights"].append(arch.weights().detach().clone().cpu())
        history["betas"].append(arch.edge_betas().detach().clone().cpu())
        history["train_loss"].append(sums[0] / steps)
        history["arch_loss"].append(None if warming else sums[1] / steps)  # None: a warm-up epoch
        bar.set_postfix(loss=f"{sums[0] / steps:.3f}",
                        decided=f"{sum(pruner.decided(e) for e in range(pruner.num_edges))}" if pruner else "-")
        if path is not None:
            atomic_torch_save({
                "version": _CHECKPOINT_VERSION, "config": asdict(config), "epoch": epoch,
                "network": on_cpu(network.state_dict()), "w_opt": on_cpu(w_opt.state_dict()),
                "a_opt": on_cpu(a_opt.state_dict()),
                "w_stream": w_stream.state_dict(), "a_stream": a_stream.state_dict(),
                "pruner": pruner.state_dict() if pruner is not None else None, "history": history,
            }, path)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    result = _result(network, pruner, history, config, calibration, steps)
    result.setup_seconds = setup_seconds
    return result


def pruner_settings(config: SearchConfig, shape: tuple[int, int], steps_per_epoch: int,
                    primitives: Sequence[str] = ()) -> tuple[dict, dict | None]:
    """The `ProgressivePruner` keyword arguments of a search (warm-up from the search; `keep`: the indices of
    `none` in `primitives`, unless the pruner dict names its own; ``threshold="auto"`` calibrated on a null run
    of `shape` [E, K] alphas, seeded by the search's seed) and the calibration record (None when not
    calibrated)."""
    kwargs = dict(config.pruner or {})
    kwargs.setdefault("keep", [k for k, p in enumerate(primitives) if p == "none"])
    quantile = kwargs.pop("noise_quantile", 0.99)
    multiple = kwargs.pop("noise_multiple", 3.0)
    margin_multiple = kwargs.pop("margin_multiple", 2.0)
    kwargs.setdefault("warmup", config.warmup_epochs)
    if kwargs.get("threshold") != "auto":
        return kwargs, None
    window = kwargs.get("window", 10)
    # The noise level does not depend on the search's length: a search too short for the window still gets a
    # null run long enough to estimate it (its pruner then simply has no time to fire).
    null_epochs = max(config.epochs - config.warmup_epochs, window + 20)
    null = null_trajectory(int(shape[0]), int(shape[1]), null_epochs, steps_per_epoch,
                           config.alpha_lr, (0.5, 0.999), config.alpha_weight_decay, seed=10_007 + config.seed)
    cal = calibrate(null, window, kwargs.get("prune_fraction", 0.5), kwargs.get("min_ops", 1),
                    quantile, multiple, margin_multiple, kwargs["keep"])
    kwargs["threshold"], kwargs["margin"] = cal["threshold"], cal["margin"]
    return kwargs, {**cal, "quantile": quantile, "multiple": multiple, "margin_multiple": margin_multiple,
                    "steps_per_epoch": steps_per_epoch}


def replay_pruner(weights: torch.Tensor, config: SearchConfig, steps_per_epoch: int,
                  primitives: Sequence[str]) -> ProgressivePruner:
    """The pruner `config.pruner` describes, calibrated as `darts_search` calibrates it, stepped over the
    recorded distributions of a full-length (unpruned) search (`weights`: [T, E, K], `SearchResult.weights`):
    when IAC-LTH would have decided each edge, had pruning not changed the remaining alphas. Until its first
    prune an LTH search follows the full search from the same cells exactly, so the first decision is the
    live one. A pruned search's trajectory is refused: it records the weights after each prune (0 for a
    dropped candidate), not the distribution the pruner decided on. primitives: the K candidates' names
    (`none` is kept out of the ranking, as in the search)."""
    if config.pruner is None:
        raise ValueError("replay_pruner: config.pruner is None (a full-length search has no pruner to replay)")
    if not isinstance(weights, torch.Tensor) or weights.dim() != 3 or weights.shape[0] < 1:
        raise ValueError(f"replay_pruner: weights must be a [T, E, K] tensor with T >= 1, got "
                         f"{getattr(weights, 'shape', type(weights).__name__)}")
    if not bool((weights > 0).all()):
        raise ValueError("replay_pruner: weights has entries <= 0: pass an unpruned search's distributions "
                         "(softmax weights, every one > 0)")
    T, E, K = weights.shape
    if len(primitives) != K:
        raise ValueError(f"replay_pruner: {len(primitives)} primitives for {K} candidates per edge")
    kwargs, _ = pruner_settings(config, (E, K), steps_per_epoch, primitives)
    logits = torch.zeros(E, K, dtype=torch.float64)
    pruner = ProgressivePruner(logits, **kwargs)
    recorded = weights.to(torch.float64).log()  # softmax is shift-invariant: the logits up to a constant per edge
    for t in range(T):
        logits.copy_(recorded[t])
        pruner.step(t)
        if pruner.done:
            break
    return pruner


def _result(network: IACNetwork, pruner: ProgressivePruner | None, history: dict,
            config: SearchConfig, calibration: dict | None = None, steps_per_epoch: int = 0) -> SearchResult:
    arch = network.arch
    genotype = derive(arch.weights(), arch.edge_betas(), arch.config)
    E = arch.config.n_edges
    decided: list[int | None] = [None] * E
    events, divergences, done = [], None, False
    if pruner is not None:
        events = list(pruner.events)
        decided = pruner.decision_epochs()
        divergences = [[d if math.isfinite(d) else None for d in row] for row in pruner.divergences]
        done = pruner.done
    seconds = [float(s) for s in history["epoch_seconds"]]
    return SearchResult(
        genotype=genotype, epochs_run=len(seconds), wall_seconds=sum(seconds), epoch_seconds=seconds,
        cpu_seconds=float(sum(history["epoch_cpu_seconds"])),
        weights=torch.stack(history["weights"]) if history["weights"] else torch.empty(0, E, 0),
        betas=torch.stack(history["betas"]) if history["betas"] else torch.empty(0, E),
        train_loss=list(history["train_loss"]), arch_loss=list(history["arch_loss"]),
        decided_epoch=decided, events=events, divergences=divergences, done=done, config=config,
        primitives=arch.config.primitives, calibration=calibration, steps_per_epoch=steps_per_epoch,
        earliest_decision=None if pruner is None else [pruner.earliest_decision_epoch(e) for e in range(E)])


def train_derived(backbone: UNet, genotype: Genotype, data: SegData, epochs: int, finetune_epochs: int = 0,
                  batch_size: int = 16, lr: float = 3e-3, finetune_lr: float = 3e-4, seed: int = 0,
                  levels: list[int] | None = None, progress: bool = True, val: SegData | None = None,
                  patience: int = 5, device: str | torch.device = "cpu", amp: str = "none") -> IACNetwork:
    """A copy of `backbone` with the derived cell implanted (initial weights from `seed`), the cells trained
    `epochs` epochs with the backbone frozen, then (optionally) everything fine-tuned `finetune_epochs`
    epochs at `finetune_lr`. With `val`: the cells are trained to convergence instead, at most `epochs`
    passes, stopped after `patience` passes without a better validation Dice, the best pass kept
    (`train_selected`; its record is `network.training_record`). `backbone` itself is not changed.
    device / amp: where (the returned network stays there) and in which precision it trains."""
    device = resolve_device(device)
    data, val = data.to(device), None if val is None else val.to(device)
    network = implant(copy.deepcopy(backbone), genotype, levels, generator=torch.Generator().manual_seed(seed))
    network.to(device)
    network.freeze_backbone()
    if val is None:
        train_segmenter(network, network.cell_parameters(), data, epochs, batch_size, lr, seed, "cells", progress,
                        amp)
        network.training_record = {"epochs": epochs, "steps": epochs * BatchStream(len(data), batch_size, 0)
                                   .batches_per_pass}
    else:
        # the untrained cell (zero projection: the backbone's function) competes too
        network.training_record = train_selected(network, network.cell_parameters(), data, val, epochs, patience,
                                                 batch_size, lr, seed, "cells", progress, select_initial=True,
                                                 amp=amp)
    if finetune_epochs:
        network.unfreeze_backbone()
        train_segmenter(network, network.parameters(), data, finetune_epochs, batch_size, finetune_lr, seed + 1,
                        "finetune", progress, amp)
    return network
