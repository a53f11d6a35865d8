"""One step of each pipeline, timed on the CPU and on CUDA: the CPU-vs-GPU table of `benchmarks/gpu_check.sh`.

    python -m benchmarks.pipeline_steps                  # every pipeline, cpu and cuda (when present)
    python -m benchmarks.pipeline_steps --amp bf16 --reps 10

A step is what the pipeline's training loop repeats, built from the library's own pieces at the demo's sizes:
a sandwich step of supernet training (largest and smallest subnet, batch 64, 28 px), the zoo's fused
recalibrate-and-evaluate of 2 subnets (64 calibration and 128 evaluation images), a meta-space training step
(`train_metaspace`), a query of 4096 indexed records, a fine-tuning step of a subnet (batch 64) and an IAC
search step (architecture then weights, batch 8, 32 px). Each is run `--warmup` times, then timed `--reps`
times (median; CUDA is synchronised around each timed call). Without CUDA the table has the CPU column and
says CUDA is absent: no GPU figure is ever printed that was not measured.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from mednns_fast.nas.device import Precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def supernet_step(device: torch.device, amp: str) -> Callable[[], None]:
    from mednns_fast.nas.ofa.elastic_resnet import ElasticResNet

    torch.manual_seed(0)
    net = ElasticResNet(1, 10).to(device).train()
    x, y = torch.randn(64, 1, 28, 28, device=device), torch.randint(10, (64,), device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    precision, configs = Precision(device, amp), [net.max_config(), net.min_config()]

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        for cfg in configs:
            with precision.autocast():
                loss = F.cross_entropy(net(x, cfg), y)
            precision.backward(loss / len(configs))
        precision.step(opt)

    return step


def zoo_step(device: torch.device, amp: str) -> Callable[[], None]:
    import numpy as np

    from mednns_fast.nas.ofa.elastic_resnet import ElasticResNet
    from mednns_fast.nas.ofa.subnet_eval import SubnetEvaluator

    torch.manual_seed(0)
    net = ElasticResNet(1, 10).to(device).eval()
    rng = np.random.default_rng(0)
    configs = [net.sample_config(rng) for _ in range(2)]
    x, y = torch.randn(128, 1, 28, 28), torch.randint(10, (128,))
    evaluator = SubnetEvaluator(net, torch.randn(64, 1, 28, 28), {"val": (x, y)})
    return lambda: evaluator.evaluate(configs)


def metaspace_step(device: torch.device, amp: str) -> Callable[[], None]:
    from dataclasses import replace

    from mednns_fast.metaspace.space import PRESETS
    from mednns_fast.metaspace.training import MetaSpaceData, train_metaspace

    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(128, 64, generator=g) + i for i in range(5)]
    r = 2000
    data = MetaSpaceData([f"d{i}" for i in range(5)], feats, torch.rand(5, 5, generator=g),
                         torch.rand(r, 80, generator=g), torch.rand(r, 256, generator=g), torch.arange(r) % 5,
                         torch.rand(r, generator=g)).to(device)
    steps = 10
    config = replace(PRESETS["mednns"], steps=steps, batch_records=128)

    def step() -> None:  # `steps` steps of the real loop; the table divides by `steps`
        train_metaspace(data, config, progress=False, device=device, amp=amp)

    step.steps = steps
    return step


def query_step(device: torch.device, amp: str) -> Callable[[], None]:
    from mednns_fast.metaspace.query import CandidateIndex, CandidateRef
    from mednns_fast.metaspace.space import PRESETS, MetaSpace

    torch.manual_seed(0)
    r = 4096
    model = MetaSpace(64, 80, 256, PRESETS["mednns"]).eval()
    refs = [CandidateRef({}, f"d{i % 5}") for i in range(r)]
    index = CandidateIndex(model, torch.rand(r, 80), torch.rand(r, 256), refs).to(device)
    feats = torch.randn(64, 64, device=device)
    return lambda: index.query(feats, k=5)


def finetune_step(device: torch.device, amp: str) -> Callable[[], None]:
    from mednns_fast.nas.ofa.elastic_resnet import ElasticResNet

    torch.manual_seed(0)
    net = ElasticResNet(1, 10).subnet().to(device).train()
    x, y = torch.randn(64, 1, 28, 28, device=device), torch.randint(10, (64,), device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    precision = Precision(device, amp)

    def step() -> None:
        with precision.autocast():
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        precision.backward(loss)
        precision.step(opt)

    return step


def iac_step(device: torch.device, amp: str) -> Callable[[], None]:
    from mednns_fast.iac.search import SearchConfig, search_optimizers
    from mednns_fast.iac.segmentation import dice_ce_loss
    from mednns_fast.nas.iac.cell import IACConfig
    from mednns_fast.nas.iac.implant import implant
    from mednns_fast.nas.iac.unet import make_backbone

    torch.manual_seed(0)
    net = implant(make_backbone("unet", 1, 2, depth=2, width=8), IACConfig(nodes=1, partial_channels=4),
                  generator=torch.Generator().manual_seed(0)).to(device)
    net.freeze_backbone()
    net.train()
    w_opt, a_opt = search_optimizers(net, SearchConfig(epochs=2, batch_size=8))
    x = torch.rand(8, 1, 32, 32, device=device)
    m = (x[:, 0] > 0.5).long()
    precision = Precision(device, amp)

    def step() -> None:  # the search's step: the architecture parameters, then the cells' weights
        for opt in (a_opt, w_opt):
            with precision.autocast():
                loss = dice_ce_loss(net(x), m)
            opt.zero_grad(set_to_none=True)
            precision.backward(loss)
            precision.step(opt)

    return step


PIPELINES: dict[str, Callable[[torch.device, str], Callable[[], None]]] = {
    "supernet train (sandwich step)": supernet_step,
    "zoo eval (2 subnets)": zoo_step,
    "meta-space train (step)": metaspace_step,
    "query (4096 records)": query_step,
    "fine-tune (step)": finetune_step,
    "IAC search (step)": iac_step,
}


def time_step(make: Callable[[torch.device, str], Callable[[], None]], device: torch.device, amp: str,
              warmup: int, reps: int) -> float:
    """Median milliseconds of one step on `device`."""
    step = make(device, amp)
    per_call = getattr(step, "steps", 1)
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times) / per_call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated substrings of pipeline names")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, amp {args.amp}; "
          + (f"CUDA: {torch.cuda.get_device_name(0)}" if cuda else "CUDA absent (torch.cuda.is_available() is "
                                                                  "False): CPU column only"))
    header = f"{'pipeline':32s} {'cpu ms':>10s}" + (f" {'cuda ms':>10s} {'cpu/cuda':>9s}" if cuda else "")
    print(header)
    print("-" * len(header))
    wanted = [s for s in args.only.split(",") if s]
    for name, make in PIPELINES.items():
        if wanted and not any(w in name for w in wanted):
            continue
        ms = [time_step(make, d, args.amp, args.warmup, args.reps) for d in devices]
        line = f"{name:32s} {ms[0]:10.2f}"
        if cuda:
            line += f" {ms[1]:10.2f} {ms[0] / ms[1]:8.1f}x"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
