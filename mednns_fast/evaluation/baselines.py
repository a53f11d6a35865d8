"""Baseline initialisations the meta-space is compared with: the pooled-pretrained network (the offline stand-in
for ImageNet transfer: the supernet architecture's largest network trained on the pooled training images of
every task of a fold)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..data import load_task
from ..data.images import standardise
from ..metaspace.features import train_pooled
from ..metaspace.from_zoo import zoo_supernets
from ..nas.ofa.config_space import max_config
from ..nas.ofa.elastic_resnet import ElasticResNet
from ..zoo.database import Zoo

POOLED_EPOCHS = 2
POOLED_PER_TASK = 100  # seeded training images per task


class _MaxFeatures(nn.Module):
    """The supernet's largest network as a feature backbone (for pooled pre-training)."""

    def __init__(self, net: ElasticResNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x, max_config())


def supernet_hparams(supernets: Mapping[str, ElasticResNet], in_channels: int, num_classes: int) -> dict:
    """The zoo supernets' hyper-parameters with another input and output size."""
    hp = dict(next(iter(supernets.values())).hparams)
    hp.update(in_channels=in_channels, num_classes=num_classes)
    return hp


def pooled_supernet(supernets: Mapping[str, ElasticResNet], tasks: Mapping[str, object], names: Sequence[str],
                    epochs: int = POOLED_EPOCHS, per_task: int = POOLED_PER_TASK, seed: int = 0,
                    progress: bool = False, device: str | torch.device = "cpu", amp: str = "none") -> ElasticResNet:
    """The supernet architecture (RGB input) whose largest network is trained on the pooled training images of
    `names` (one head per task; its own classifier is untrained), on `device` in mixed precision `amp`; returned
    on the CPU. What warm-started supernets start from (`nas.ofa.warm_start`)."""
    torch.manual_seed(seed)
    net = ElasticResNet(**supernet_hparams(supernets, 3, 1))
    train_pooled(_MaxFeatures(net), net.feature_dim, tasks, names, seed=seed, epochs=epochs, per_task=per_task,
                 desc="pooled", transform=standardise, progress=progress, device=device, amp=amp)
    return net.cpu()


def pooled_network(supernets: Mapping[str, ElasticResNet], tasks: Mapping[str, object], names: Sequence[str],
                   epochs: int = POOLED_EPOCHS, per_task: int = POOLED_PER_TASK, seed: int = 0,
                   progress: bool = False, device: str | torch.device = "cpu", amp: str = "none") -> nn.Module:
    """The pooled-pretrained baseline: `pooled_supernet`'s largest network as a standalone subnet."""
    return pooled_supernet(supernets, tasks, names, epochs, per_task, seed, progress, device, amp).subnet(max_config())


def pooled_baseline(zoo_url: str, exclude: Sequence[str], epochs: int = POOLED_EPOCHS,
                    per_task: int = POOLED_PER_TASK, seed: int = 0, progress: bool = True,
                    sources: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                    amp: str = "none") -> nn.Module:
    """`pooled_network` over every dataset of the zoo at `zoo_url` except `exclude`. `sources`: the run directory
    whose `datasets.json` says where the zoo's user datasets are (`data.load_task`)."""
    zoo = Zoo(zoo_url)
    names = [n for n in zoo.datasets() if n not in set(exclude)]
    if not names:
        raise ValueError(f"the zoo at {zoo_url} holds no dataset besides {list(exclude)}")
    suite = {n: load_task(n, sources=sources) for n in names}
    return pooled_network(zoo_supernets(zoo, names), suite, names, epochs, per_task, seed, progress, device, amp)
