"""Build the model zoo: per dataset, train (or load) its supernet, sample subnets, recalibrate, evaluate, store.

Run it as ``mednns-fast zoo build --run-dir DIR`` or sharded as
``torchrun --nproc_per_node=N -m mednns_fast zoo build ...`` (gloo on CPU, NCCL on GPU: ``--device cuda`` puts
rank r on ``cuda:LOCAL_RANK``).

* Supernet: ``DIR/supernets/<dataset>.pt`` is loaded when it exists and matches the digest the zoo registered;
  otherwise it is trained by progressive shrinking (DDP across ranks; on a seeded subsample of
  `train_subset` training images when given: a small zoo), checkpointed every epoch to
  ``DIR/train/<dataset>.ckpt`` (a killed training resumes from its last epoch), saved by rank 0, registered.
* Subnets: a seeded prefix tree of configs (`config_groups`): every config is marginally a uniform sample of
  the space, and configs share stage prefixes so the fused evaluator does their shared work once.
  The tree depends only on (seed, dataset), never on the number of ranks.
* Shards: rank r evaluates groups r, r + N, ... (disjoint). Every rank writes its own records, one
  transaction per group, with insert-or-ignore on the unique (dataset, config): no gather step for rank 0 to
  lose, a rank killed mid-run loses at most its open transaction, and a rerun evaluates only the configs the
  database does not hold yet.
"""

from __future__ import annotations

import os
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..data import BuiltTask, build_task, task_names
from ..data.images import standardise
from ..nas.device import local_device, to_device
from ..nas.ofa.config_space import BASE_DEPTH, MAX_EXTRA_DEPTH, config_key, join_stages, sample_stage
from ..nas.ofa.elastic_resnet import ElasticResNet
from ..nas.ofa.subnet_eval import SubnetEvaluator
from ..nas.ofa.training import ShrinkSchedule, TrainState, train_supernet
from ..nas.ofa.warm_start import warm_start as init_from
from .checkpoint import atomic_save, load_supernet, save_supernet, supernet_meta, weights_digest
from .database import Zoo, ZooRecord
from .transfer import TransferProtocol, build_transfers

DEFAULT_BRANCHING = (4, 4, 8, 72)  # stage-1 x stage-2 x stage-3 x stage-4 choices: 9216 configs per dataset


def classification_tasks() -> list[str]:
    from ..data.suite import registry

    return [n for n, t in registry().items() if t.kind == "classification"]


def task_tensors(task: BuiltTask, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, C, H, W] float32 standardised, labels [N] int64) of one split."""
    s = task[split]
    x = torch.from_numpy(s.images).float().div_(255.0)
    x = x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2).contiguous()
    return standardise(x), torch.from_numpy(np.asarray(s.labels)).long().view(-1)


def _dataset_seed(seed: int, dataset: str) -> list[int]:
    return [seed, zlib.crc32(dataset.encode())]


def config_groups(dataset: str, seed: int = 0, branching=DEFAULT_BRANCHING, base_depth=BASE_DEPTH,
                  max_extra: int = MAX_EXTRA_DEPTH) -> list[list[dict]]:
    """The dataset's subnet configs as groups sharing a prefix (stages 1-2 within a group).

    A tree: `branching[s]` distinct uniform choices of stage s under each node of stage s-1; the leaves are the
    configs. Groups are the subtrees under each (stage 1, stage 2) node. Deterministic in (seed, dataset).
    """
    if len(branching) != len(base_depth) or any(int(b) < 1 for b in branching):
        raise ValueError(f"branching must be {len(base_depth)} positive ints, got {branching}")
    rng = np.random.default_rng(_dataset_seed(seed, dataset))

    def distinct(stage: int, count: int) -> list[dict]:
        seen, out = set(), []
        for _ in range(count * 20):
            st = sample_stage(rng, stage, base_depth, max_extra)
            n_active = base_depth[stage] + st["depth"]
            key = (st["depth"], st["width"], tuple(st["expand"][:n_active]), tuple(st["kernel"][:n_active]))
            if key not in seen:
                seen.add(key)
                out.append(st)
            if len(out) == count:
                break
        return out

    def leaves(prefix: list[dict]) -> list[dict]:
        stage = len(prefix)
        if stage == len(base_depth):
            return [join_stages(prefix)]
        return [cfg for st in distinct(stage, int(branching[stage])) for cfg in leaves(prefix + [st])]

    return [leaves([s1, s2]) for s1 in distinct(0, int(branching[0])) for s2 in distinct(1, int(branching[1]))]


# ------------------------------------------------------------------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


class distributed:
    """Context: join the torchrun process group when launched by torchrun (WORLD_SIZE > 1; NCCL on GPUs, gloo on
    CPU) and leave it at the end; a no-op in a single process. Yields (rank, world size).

    device: the pipelines' device; a CUDA one (or None on a machine with CUDA) takes NCCL, with this rank's GPU
    ``cuda:LOCAL_RANK`` made current first; "cpu" takes gloo."""

    def __init__(self, device: str | torch.device | None = None) -> None:
        self.device = device

    def __enter__(self) -> tuple[int, int]:
        self.owned = False
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and _dist() is None:
            import torch.distributed as dist

            cuda = torch.cuda.is_available() if self.device is None else torch.device(self.device).type == "cuda"
            if cuda:
                torch.cuda.set_device(local_device("cuda"))
            dist.init_process_group("nccl" if cuda else "gloo")
            self.owned = True
        d = _dist()
        return (d.get_rank(), d.get_world_size()) if d is not None else (0, 1)

    def __exit__(self, *exc) -> None:
        if self.owned and _dist() is not None:
            _dist().destroy_process_group()


def new_supernet(task: BuiltTask, schedule: ShrinkSchedule, model_kwargs: dict | None = None,
                 warm_start: ElasticResNet | None = None) -> ElasticResNet:
    """The task's untrained supernet: seeded by the schedule (identical initial weights on every rank), or
    warm-started from `warm_start`'s weights (`nas.ofa.warm_start`: all but the classifier)."""
    torch.manual_seed(schedule.seed)
    model = ElasticResNet(task.task.channels, task.task.n_classes, **(model_kwargs or {}))
    return model if warm_start is None else init_from(model, warm_start)


def supernet_splits(task: BuiltTask, schedule: ShrinkSchedule, train_subset: int | None = None):
    """((train images, labels), (val images, labels)) a supernet trains and is selected on: the training split,
    or `train_subset` seeded images of it."""
    train, val = task_tensors(task, "train"), task_tensors(task, "val")
    if train_subset:
        keep = torch.randperm(len(train[0]), generator=torch.Generator().manual_seed(schedule.seed))[:train_subset]
        train = (train[0][keep], train[1][keep])
    return train, val


def selected_weights(model: ElasticResNet, state: TrainState) -> ElasticResNet:
    """`model` on the CPU in eval mode with the weights model selection kept (the last epoch's when none was)."""
    model.cpu().load_state_dict(state.best_model if state.best_model is not None else state.model)
    return model.eval()


def ensure_supernet(zoo: Zoo, task: BuiltTask, workdir: Path, schedule: ShrinkSchedule, rank: int = 0,
                    world_size: int = 1, progress: bool = True, model_kwargs: dict | None = None,
                    train_subset: int | None = None, device: str | torch.device = "cpu",
                    amp: str = "none", warm_start: ElasticResNet | None = None) -> tuple[ElasticResNet, str, float]:
    """Load the dataset's supernet (registered and on disk) or train it on `device` (mixed precision `amp`),
    from a random or a `warm_start` initialisation (`new_supernet`); returns (model on the CPU, digest, train
    seconds). The saved supernet holds CPU tensors."""
    name = task.name
    path = workdir / "supernets" / f"{name}.pt"
    try:
        registered = zoo.supernet(name)[1]
    except KeyError:
        registered = None
    if path.is_file():  # trained before (by this zoo or another one sharing the workdir): load and check
        model = load_supernet(path, registered)
        meta = supernet_meta(path)
        digest = weights_digest(model)
        if registered is None and rank == 0:
            zoo.register_supernet(name, digest, str(path), meta)
        return model, digest, float(meta.get("train_seconds", 0.0))
    if registered is not None:
        raise FileNotFoundError(f"the zoo registers a supernet for {name} but {path} is missing; "
                                "rebuild into a new zoo or restore the file")
    dist = _dist()
    model = new_supernet(task, schedule, model_kwargs, warm_start)
    ckpt = workdir / "train" / f"{name}.ckpt"
    state = None
    if ckpt.is_file():
        state = TrainState(**torch.load(ckpt, map_location="cpu", weights_only=False))
    train, val = supernet_splits(task, schedule, train_subset)
    device = local_device(device)
    model.to(device)  # before DDP wraps it
    wrapped: torch.nn.Module = model
    if dist is not None:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)

    def save_state(st: TrainState) -> None:
        if rank == 0:
            atomic_save(asdict(st), ckpt)

    t0 = time.perf_counter()  # a resumed training counts only the epochs run in this process
    state = train_supernet(wrapped, train, val, schedule, state, save_state, progress, rank, world_size, device, amp)
    seconds = time.perf_counter() - t0
    selected_weights(model, state)
    meta = {"train_seconds": seconds, "schedule": asdict(schedule), "best_val_score": state.best_score,
            "history": state.history, "hparams": model.hparams, "train_subset": train_subset,
            "warm_start": warm_start is not None}
    if rank == 0:
        digest = save_supernet(model, path, meta)
        zoo.register_supernet(name, digest, str(path), meta)
    if dist is not None:
        dist.barrier()
    path_registered, digest = zoo.supernet(name)
    return load_supernet(path_registered, digest), digest, seconds


def warm_supernet(zoo: Zoo, task: BuiltTask, pretrained: ElasticResNet, progress: bool = False,
                  device: str | torch.device = "cpu", amp: str = "none") -> tuple[ElasticResNet, dict]:
    """The task's supernet trained again as the zoo trained it (the schedule, architecture and training subset
    its checkpoint records) but from `pretrained`'s weights (`new_supernet`); nothing is written. Returns
    (supernet on the CPU, {"train_seconds", "best_val_score", "zoo_best_val_score"}): the selected epoch's
    validation score of the probe subnets, beside the zoo's own supernet's."""
    meta = supernet_meta(zoo.supernet(task.name)[0])
    schedule = ShrinkSchedule(**meta["schedule"])
    kwargs = {k: v for k, v in meta["hparams"].items() if k not in ("in_channels", "num_classes")}
    model = new_supernet(task, schedule, kwargs, pretrained)
    train, val = supernet_splits(task, schedule, meta.get("train_subset"))
    t0 = time.perf_counter()
    state = train_supernet(model, train, val, schedule, progress=progress, device=local_device(device), amp=amp)
    seconds = time.perf_counter() - t0
    return selected_weights(model, state), {"train_seconds": seconds, "best_val_score": state.best_score,
                                            "zoo_best_val_score": meta.get("best_val_score")}


def evaluate_groups(zoo: Zoo, task: BuiltTask, model: ElasticResNet, digest: str, groups: list[list[dict]],
                    calib_size: int = 256, seed: int = 0, progress: bool = True, rank: int = 0,
                    device: str | torch.device = "cpu") -> int:
    """Evaluate the configs of `groups` the zoo lacks on `device` (float32: records comparable across devices);
    one transaction per group. Returns records added."""
    device = local_device(device)
    x_train, _ = task_tensors(task, "train")
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    calib = to_device(x_train[order[:calib_size]], device)
    splits = {name: tuple(to_device(t, device) for t in task_tensors(task, name)) for name in ("val", "test")}
    evaluator = SubnetEvaluator(model.to(device), calib, splits)
    have = zoo.keys(task.name)
    pending = [[c for c in g if config_key(c) not in have] for g in groups]
    total = sum(len(g) for g in pending)
    bar = None
    if progress and total:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"zoo {task.name} r{rank}", unit="subnet", leave=False)
    size = task[("train")].size
    added = 0
    for group in pending:
        if not group:
            continue
        results = evaluator.evaluate(group)
        records = []
        for cfg, res in zip(group, results):
            params, flops = model.cost(cfg, size)
            records.append(ZooRecord(task.name, cfg, params, flops, res["val"].accuracy, res["val"].loss,
                                     res["test"].accuracy, res["test"].loss, digest))
        added += zoo.add(records)
        if bar is not None:
            bar.update(len(group))
    if bar is not None:
        bar.close()
    return added


def build_zoo(url: str, workdir: str | os.PathLike, datasets: list[str] | None = None,
              schedule: ShrinkSchedule | None = None, branching=DEFAULT_BRANCHING, calib_size: int = 256,
              seed: int = 0, train_only: bool = False, progress: bool = True, model_kwargs: dict | None = None,
              max_groups: int | None = None, train_subset: int | None = None, device: str | torch.device = "cpu",
              amp: str = "none", transfers: TransferProtocol | None = None,
              warm_start: ElasticResNet | None = None) -> dict:
    """Build (or resume) the zoo at `url` for `datasets` (default: every built-in classification task): built-in
    task names or loaded tasks (`mednns_fast.data.load_task(path)`: your own data, recorded under its name).

    train_subset: train each supernet on this many seeded training images (default: the whole split).
    device: where supernets train and subnets are evaluated ("cpu", "cuda", "cuda:N"; under torchrun a CUDA
    device is each rank's ``cuda:LOCAL_RANK``); amp: mixed precision of the supernet training ("none", "bf16",
    "fp16"; the zoo's evaluation stays float32).
    warm_start: start every supernet the build trains from this network's weights (e.g.
    `evaluation.baselines.pooled_supernet` over other tasks: the analogue of OFA's ImageNet start) instead of a
    random initialisation; supernets already on disk are loaded as they are.
    transfers: also measure transfer labels (`zoo.transfer`) onto each of `datasets` from every other dataset of
    the zoo, once all supernets exist; summary["transfers"] = {"added", "seconds"}.
    Under torchrun each rank calls this; returns {dataset: {"train_seconds", "added", "eval_seconds"}}.
    """
    device = local_device(device)
    workdir = Path(workdir)
    schedule = schedule or ShrinkSchedule(seed=seed)
    datasets = classification_tasks() if datasets is None else list(datasets)
    known = task_names()
    bad = [d for d in datasets if isinstance(d, str) and d not in known]
    if bad:
        raise ValueError(f"unknown dataset(s) {bad}; known: {known}")
    dist = _dist()
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)
    zoo = Zoo(url)
    summary = {}
    built = {}
    for dataset in datasets:
        task = build_task(dataset) if isinstance(dataset, str) else dataset
        name = task.name
        built[name] = task
        model, digest, train_seconds = ensure_supernet(zoo, task, workdir, schedule, rank, world, progress,
                                                       model_kwargs, train_subset, device, amp, warm_start)
        summary[name] = {"train_seconds": train_seconds, "added": 0, "eval_seconds": 0.0}
        if train_only:
            continue
        groups = config_groups(name, seed, branching)[:max_groups]
        t0 = time.perf_counter()
        summary[name]["added"] = evaluate_groups(zoo, task, model, digest, groups[rank::world], calib_size, seed,
                                                 progress, rank, device)
        summary[name]["eval_seconds"] = time.perf_counter() - t0
    if transfers is not None and not train_only:
        if dist is not None:
            dist.barrier()  # every rank's own records are in: the sources' config choices see them all
        t0 = time.perf_counter()
        added = build_transfers(zoo, built, lambda d: load_supernet(*zoo.supernet(d)), transfers, rank=rank,
                                world_size=world, progress=progress, device=device)
        summary["transfers"] = {"added": added, "seconds": time.perf_counter() - t0}
    if dist is not None:
        dist.barrier()
    zoo.close()
    return summary
