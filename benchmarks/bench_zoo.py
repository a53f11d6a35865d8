"""Zoo throughput: subnets per second through extraction + BN recalibration + evaluation, in one run.

Run: `python -m pytest benchmarks/bench_zoo.py -q`. Every entry evaluates subnets of the same supernet
(the zoo's default dimensions) on a real built-in task (brain_tissue: 256 calibration images from train, the
whole val and test splits) and reports time per subnet; the summary prints speed-ups over the baseline.

* ``ofa_reference`` (baseline): what OFA does per subnet: ``deepcopy`` of the supernet, reset its BN
  statistics, one training-mode pass over the calibration images (cumulative averaging), extraction of the
  subnet by copying the sliced weights into a new module, then evaluation of val and test.
* ``fused_per_subnet``: the zoo's evaluator on one subnet at a time: no copies, recalibration fused with the
  evaluation pass, BN folded into the sliced convolutions (no sharing between subnets).
* ``fused_prefix_tree``: the zoo's hot loop: a group of subnets sharing stage prefixes (as the zoo samples
  them), each shared block computed once.

`torch.compile` does not apply: every subnet is a different graph, and compiling one costs more than
evaluating hundreds.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import mark_baseline, set_units

import mednns_fast as mf
from mednns_fast.nas.ofa.subnet_eval import SubnetEvaluator
from mednns_fast.zoo.builder import config_groups, task_tensors

ZOO_NET = dict(stem_channels=8, stage_channels=(8, 16, 32, 64))
N_REFERENCE = 6  # subnets per round for the slow entries
TREE = (1, 1, 2, 36)  # one group of 72 subnets


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    task = mf.data.build_task("brain_tissue")
    torch.manual_seed(0)
    net = mf.nas.ElasticResNet(task.task.channels, task.task.n_classes, **ZOO_NET).eval()
    for m in net.modules():  # trained-looking BN: a zero-initialised gamma would silence residual branches
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    x_train, _ = task_tensors(task, "train")
    calib = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(0))[:256]]
    splits = {"val": task_tensors(task, "val"), "test": task_tensors(task, "test")}
    group = config_groups("brain_tissue", 0, TREE)[0]
    return net, calib, splits, group


@torch.no_grad()
def ofa_reference(net, calib, splits, configs):
    out = []
    for cfg in configs:
        model = copy.deepcopy(net)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
                m.momentum = None
        model.train()
        model(calib, cfg)
        sub = model.subnet(cfg).eval()
        res = {}
        for name, (x, y) in splits.items():
            logits = sub(x)
            res[name] = (int((logits.argmax(1) == y).sum()) / len(y), float(F.cross_entropy(logits, y)))
        out.append(res)
    return out


@pytest.mark.parametrize("impl", ["ofa_reference", "fused_per_subnet", "fused_prefix_tree"])
def test_zoo_subnet_throughput(benchmark, setup, impl):
    net, calib, splits, group = setup
    benchmark.group = "zoo: subnets through extract + BN recalibration + val/test evaluation (brain_tissue)"
    evaluator = SubnetEvaluator(net, calib, splits)
    if impl == "ofa_reference":
        mark_baseline(benchmark)
        configs = group[:N_REFERENCE]
        set_units(benchmark, len(configs))
        res = benchmark.pedantic(ofa_reference, args=(net, calib, splits, configs), rounds=2, iterations=1)
        fused = evaluator.evaluate(configs)
        for r, f in zip(res, fused):  # same numbers as the zoo's path
            assert r["val"][0] == pytest.approx(f["val"].accuracy, abs=1e-9)
            assert r["test"][1] == pytest.approx(f["test"].loss, rel=1e-3, abs=1e-4)
    elif impl == "fused_per_subnet":
        configs = group[:N_REFERENCE]
        set_units(benchmark, len(configs))
        benchmark.pedantic(lambda: [evaluator.evaluate_one(c) for c in configs], rounds=2, iterations=1)
    else:
        set_units(benchmark, len(group))
        benchmark.pedantic(evaluator.evaluate, args=(group,), rounds=2, iterations=1)
