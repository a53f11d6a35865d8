"""Warm starts: a supernet initialised from a pretrained elastic network instead of at random (the analogue of
OFA's ImageNet-trained start, here a network trained on the pooled images of other tasks).

Every weight and BatchNorm buffer is copied except the classifier (a source task's classes mean nothing to the
new task: the new network keeps its own seeded head) and the stem convolution's input channels, which are
mapped grey <-> RGB by `map_input_channels` when the tasks differ.
"""

from __future__ import annotations

import torch

from .elastic_resnet import ElasticResNet

_ARCHITECTURE = ("stem_channels", "stage_channels", "stage_strides", "stem_kernel", "stem_stride", "stem_pool",
                 "base_depth", "max_extra_depth", "divisor")


def map_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first convolution's weight [out, c, k, k] for `in_channels` inputs (c and in_channels in {1, 3}): RGB ->
    grey sums over the colour channels (a grey image seen as three equal channels gives the same response);
    grey -> RGB spreads the weight over them (divided by 3, the same response on a grey image)."""
    c = weight.shape[1]
    if c == in_channels:
        return weight
    if c not in (1, 3) or in_channels not in (1, 3):
        raise ValueError(f"cannot map a convolution's {c} input channels to {in_channels} (only 1 <-> 3)")
    return weight.sum(1, keepdim=True) if in_channels == 1 else weight.expand(-1, 3, -1, -1) / 3


@torch.no_grad()
def warm_start(net: ElasticResNet, pretrained: ElasticResNet) -> ElasticResNet:
    """Copy `pretrained`'s weights into `net` in place (see the module docstring) and return `net`.

    Both must share every architecture hyper-parameter except in_channels and num_classes."""
    if not isinstance(net, ElasticResNet) or not isinstance(pretrained, ElasticResNet):
        raise TypeError(f"warm_start: expected two ElasticResNet, got {type(net).__name__} and "
                        f"{type(pretrained).__name__}")
    differ = [k for k in _ARCHITECTURE if net.hparams[k] != pretrained.hparams[k]]
    if differ:
        raise ValueError(f"warm_start: the networks differ in {differ}: "
                         f"{ {k: (net.hparams[k], pretrained.hparams[k]) for k in differ} }")
    source = pretrained.state_dict()
    for name, value in net.state_dict().items():
        if name.startswith("classifier."):
            continue
        w = source[name]
        if name == "stem_conv.weight":
            w = map_input_channels(w, value.shape[1])
        value.copy_(w)
    return net
