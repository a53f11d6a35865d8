"""Progressive-shrinking training of an ElasticResNet supernet (docs/mednns.md).

Phases, in order: ``full`` (largest network only), ``depth`` (random depth, everything else largest),
``elastic`` (every dimension random; middle channels importance-sorted first), ``sandwich`` (per batch: the
largest, the smallest and `n_random` random subnets, gradients summed). After the full phase a frozen copy
of the full network is the teacher: later phases add a knowledge-distillation term (KL between temperature-
softened teacher and student) to the cross-entropy on logits.

Model selection uses the validation split only: after each epoch of the last phase the supernet is scored by
the mean validation accuracy of a fixed set of probe subnets (largest, smallest, random), each with its BN
statistics recalibrated on training images; the best epoch's weights are kept. Data order and subnet
sampling are derived from (seed, epoch), so a run resumed from the state of any epoch continues exactly.

No I/O here: `on_epoch_end(state)` hands the complete state to the caller, which saves it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..device import Precision, on_cpu, resolve_device, to_device
from .elastic_resnet import BNStats, ElasticResNet

PHASES = ("full", "depth", "elastic", "sandwich")


@dataclass
class ShrinkSchedule:
    """Epochs per phase and optimisation settings."""

    full: int = 1
    depth: int = 1
    elastic: int = 1
    sandwich: int = 1
    n_random: int = 1  # random subnets per sandwich batch (besides largest and smallest)
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    kd_weight: float = 1.0
    kd_temperature: float = 2.0
    n_probe: int = 1  # random probe subnets for model selection (besides largest and smallest)
    calib_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in PHASES:
            if getattr(self, name) < 0:
                raise ValueError(f"ShrinkSchedule.{name} must be >= 0 epochs, got {getattr(self, name)}")
        if self.total_epochs == 0:
            raise ValueError("ShrinkSchedule has no epochs")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (BatchNorm), got {self.batch_size}")

    @property
    def total_epochs(self) -> int:
        return sum(getattr(self, p) for p in PHASES)

    def phase(self, epoch: int) -> str:
        end = 0
        for p in PHASES:
            end += getattr(self, p)
            if epoch < end:
                return p
        raise ValueError(f"epoch {epoch} is past the schedule's {self.total_epochs} epochs")

    def first_epoch(self, phase: str) -> int:
        return sum(getattr(self, p) for p in PHASES[: PHASES.index(phase)])


@dataclass
class TrainState:
    """Everything needed to resume exactly: the next epoch, weights, optimiser, teacher, best, history."""

    epoch: int
    model: dict
    optimizer: dict
    teacher: dict | None = None
    best_score: float = -1.0
    best_model: dict | None = None
    history: list[dict] = field(default_factory=list)
    schedule: dict = field(default_factory=dict)


def _phase_configs(model: ElasticResNet, phase: str, rng: np.random.Generator, n_random: int) -> list[dict]:
    if phase == "full":
        return [model.max_config()]
    if phase == "depth":
        cfg = model.max_config()
        cfg["depth"] = model.sample_config(rng)["depth"]
        return [cfg]
    if phase == "elastic":
        return [model.sample_config(rng)]
    return [model.max_config(), model.min_config(), *[model.sample_config(rng) for _ in range(n_random)]]


def _kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                    log_target=True) * t * t


@torch.no_grad()
def evaluate_config(model: ElasticResNet, config: dict, calib: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    batch_size: int = 512) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of subnet `config` on (x, y) after BN recalibration on `calib` (all on the
    model's device; the sums stay there and are read once at the end)."""
    stats = BNStats(use=model.bn_statistics(calib, config))
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    loss = torch.zeros((), dtype=torch.float64, device=x.device)  # float64: the sum a Python float would give
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size], config, stats)
        loss += F.cross_entropy(logits, y[i:i + batch_size], reduction="sum").double()
        correct += (logits.argmax(1) == y[i:i + batch_size]).sum()
    model.train(was_training)
    return int(correct) / len(x), float(loss) / len(x)


def probe_configs(model: ElasticResNet, n_random: int, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, 7919])
    return [model.max_config(), model.min_config(), *[model.sample_config(rng) for _ in range(n_random)]]


def _unwrap(model: torch.nn.Module) -> ElasticResNet:
    return model.module if hasattr(model, "module") else model  # DistributedDataParallel


def train_supernet(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    schedule: ShrinkSchedule | None = None,
    state: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    device: str | torch.device = "cpu",
    amp: str = "none",
) -> TrainState:
    """Train `model` (an ElasticResNet, or a DistributedDataParallel around one) by progressive shrinking.

    train, val: (images [N, C, H, W] float, labels [N] int64). state: resume from this state (as handed to
    on_epoch_end). Under DDP every rank passes the same data; rank r takes rows r::world_size of each batch.
    device: where it trains (the model and both splits are moved there once; a DDP model must be there
    already); amp: "none", "bf16" or "fp16" (autocast; fp16 with gradient scaling). The states handed to
    `on_epoch_end` hold CPU tensors (a checkpoint written on a GPU loads anywhere). Data order and subnet
    sampling come from CPU generators on every device. Returns the final state; its ``best_model`` holds the
    selected weights (load them for the zoo).
    """
    schedule = schedule or ShrinkSchedule()
    device = resolve_device(device)
    precision = Precision(device, amp)
    net = _unwrap(model)
    net.to(device)
    x_train, y_train = train
    x_val, y_val = val
    if x_train.dim() != 4 or len(x_train) != len(y_train):
        raise ValueError(f"train must be (images [N, C, H, W], labels [N]); got {tuple(x_train.shape)}, "
                         f"{tuple(y_train.shape)}")
    n_classes = net.num_classes
    if int(y_train.max()) >= n_classes or int(y_val.max()) >= n_classes:
        raise ValueError(f"labels must be in [0, {n_classes}) for a supernet with num_classes={n_classes}")
    x_train, y_train, x_val, y_val = (to_device(t, device) for t in (x_train, y_train, x_val, y_val))
    calib = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(schedule.seed))[
        : schedule.calib_size].to(device)]
    probes = probe_configs(net, schedule.n_probe, schedule.seed)

    def make_optimizer():
        # AdamW: stable from the first epoch on the few epochs a CPU budget allows (SGD at these epoch
        # counts diverged when the sandwich summed the gradients of several subnets).
        return torch.optim.AdamW(net.parameters(), lr=schedule.lr, weight_decay=schedule.weight_decay)

    optimizer = make_optimizer()
    teacher_net: ElasticResNet | None = None
    if state is None:
        state = TrainState(epoch=0, model={}, optimizer={}, schedule=asdict(schedule))
    else:
        net.load_state_dict(state.model)
        optimizer.load_state_dict(state.optimizer)
    if state.teacher is not None:
        teacher_net = _frozen(net, state.teacher).to(device)

    bar = _bar(schedule.total_epochs, state.epoch, progress and rank == 0)
    for epoch in range(state.epoch, schedule.total_epochs):
        phase = schedule.phase(epoch)
        if phase != "full" and teacher_net is None:  # the full network, frozen, teaches every later phase
            state.teacher = copy.deepcopy(on_cpu(net.state_dict()))
            teacher_net = _frozen(net, state.teacher).to(device)
        if phase == "elastic" and epoch == schedule.first_epoch("elastic") or (
                phase == "sandwich" and epoch == schedule.first_epoch("sandwich") and schedule.elastic == 0):
            net.sort_channels()  # before widths shrink: keep the important middle channels first
            optimizer = make_optimizer()  # momentum buffers refer to the unsorted channels
        lr = schedule.lr * 0.5 * (1 + math.cos(math.pi * epoch / schedule.total_epochs))
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(schedule.seed * 100003 + epoch))
        order = to_device(order, device)
        rng = np.random.default_rng([schedule.seed, epoch])
        # the epoch's loss sum stays on the device (float64: what summing Python floats gave), read at its end
        total_loss, steps = torch.zeros((), dtype=torch.float64, device=device), 0
        for start in range(0, len(order) - 1, schedule.batch_size):
            idx = order[start:start + schedule.batch_size][rank::world_size]
            if len(idx) < 2:
                continue
            xb, yb = x_train[idx], y_train[idx]
            configs = _phase_configs(net, phase, rng, schedule.n_random)
            teacher_logits = None
            if teacher_net is not None and schedule.kd_weight > 0:
                with torch.no_grad(), precision.autocast():
                    teacher_logits = teacher_net(xb)
            optimizer.zero_grad(set_to_none=True)
            for cfg in configs:
                with precision.autocast():
                    logits = model(xb, cfg)
                    loss = F.cross_entropy(logits, yb)
                    if teacher_logits is not None:
                        loss = loss + schedule.kd_weight * _kd_loss(logits, teacher_logits, schedule.kd_temperature)
                precision.backward(loss / len(configs))
                total_loss += loss.detach().double() / len(configs)
            precision.unscale(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            precision.step(optimizer)
            steps += 1
        scores = [evaluate_config(net, cfg, calib, x_val, y_val)[0] for cfg in probes]
        score = float(np.mean(scores))
        record = {"epoch": epoch, "phase": phase, "lr": lr, "train_loss": float(total_loss) / max(steps, 1),
                  "val_acc_probes": scores, "val_score": score}
        state.history.append(record)
        if phase == PHASES[_last_phase(schedule)] and score > state.best_score:
            state.best_score = score
            state.best_model = copy.deepcopy(on_cpu(net.state_dict()))
        state.epoch = epoch + 1
        state.model = on_cpu(net.state_dict())  # on the CPU the live tensors (as always), else CPU copies
        state.optimizer = on_cpu(optimizer.state_dict())
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(phase=phase, loss=f"{record['train_loss']:.3f}", val=f"{score:.3f}")
            bar.update(1)
        if on_epoch_end is not None:
            on_epoch_end(state)
    if hasattr(bar, "close"):
        bar.close()
    return state


def _last_phase(schedule: ShrinkSchedule) -> int:
    return max(i for i, p in enumerate(PHASES) if getattr(schedule, p) > 0)


def _frozen(net: ElasticResNet, weights: dict) -> ElasticResNet:
    teacher = ElasticResNet(**net.hparams)
    teacher.load_state_dict(weights)
    teacher.eval().requires_grad_(False)
    return teacher


def _bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="supernet", unit="epoch", leave=False)
