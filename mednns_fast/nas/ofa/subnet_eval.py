"""Evaluating many subnets of one ElasticResNet on the same images: the model zoo's hot loop (docs/mednns.md).

Three kinds of work are done once instead of once per subnet:

* **Shared prefixes.** Subnets are the paths of a prefix tree whose nodes are active blocks (slot, channel
  counts, kernel). A depth-first walk computes each node once from its parent's activations, so subnets that
  share their first stages (or first blocks) share that work; memory is one activation per tree level.
* **Recalibration fused with evaluation.** Each node carries two batches: the calibration images and the
  evaluation images (all splits, concatenated). A BatchNorm takes the calibration batch's statistics
  (training-mode normalisation for the calibration rows, exactly what a fresh copy of the subnet recalibrating
  in one pass would compute) and the evaluation rows are normalised with the recalibrated running statistics
  (mean, unbiased variance). No deep copy, no second pass, no supernet buffer is written.
* **Folded BN.** For the evaluation rows the recalibrated BN is folded into the sliced convolution weights
  (``W * scale``, bias ``shift``), so BN costs nothing per activation; ReLU runs in place.

Also exact: a stride-1 k x k convolution on an H x W map (H, W < k) never reads the kernel taps farther than
H-1 (W-1) from the centre except over zero padding, so the centre (2H-1) x (2W-1) taps alone give the same
output (`trim_kernel`); late stages on 28x28 inputs run at 2x2 pixels, where a 7x7 kernel becomes 3x3.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config_space import BlockSpec
from .elastic_resnet import ElasticBatchNorm2d, ElasticResNet


@dataclass
class SplitResult:
    accuracy: float
    loss: float  # mean cross-entropy


def trim_kernel(weight: torch.Tensor, height: int, width: int, stride: int) -> torch.Tensor:
    """The centre taps of a stride-1 kernel that can touch an height x width input (others see only padding)."""
    k = weight.shape[-1]
    if stride != 1:
        return weight
    kh, kw = min(k, 2 * height - 1), min(k, 2 * width - 1)
    if (kh, kw) == (k, k):
        return weight
    return weight[..., (k - kh) // 2:(k + kh) // 2, (k - kw) // 2:(k + kw) // 2]


class SubnetEvaluator:
    """Recalibrate and evaluate many subnets of `supernet` on fixed images.

    calib: [Nc, C, H, W] training images for BN recalibration. splits: {name: (images [N, C, H, W], labels [N])},
    e.g. {"val": ..., "test": ...}. `evaluate(configs)` returns, per config, {split name: SplitResult}.
    Everything runs on the supernet's device (the images are moved there once); each call of `evaluate` reads
    its results from the device once, after its last subnet.
    """

    def __init__(self, supernet: ElasticResNet, calib: torch.Tensor,
                 splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
        if calib.dim() != 4 or len(calib) < 2:
            raise ValueError(f"calib must be [N >= 2, C, H, W], got {tuple(calib.shape)}")
        if not splits:
            raise ValueError("splits must name at least one (images, labels) split")
        self.net = supernet
        device = next(supernet.parameters()).device
        self.calib = calib.to(device)
        self.names = list(splits)
        self.x_eval = torch.cat([x.to(device) for x, _ in splits.values()])
        self.labels = [y.to(device).long() for _, y in splits.values()]
        bounds = [0]
        for _, y in splits.values():
            bounds.append(bounds[-1] + len(y))
        self.bounds = bounds

    # one conv + recalibrated BN; the calibration rows and the evaluation rows
    def _conv_bn(self, xc, xe, weight: torch.Tensor, bn: ElasticBatchNorm2d, stride: int, relu: bool):
        weight = trim_kernel(weight, xc.shape[2], xc.shape[3], stride)
        pad = (weight.shape[-2] // 2, weight.shape[-1] // 2)
        yc = F.conv2d(xc, weight, None, stride, pad)
        c = yc.shape[1]
        var, mean = torch.var_mean(yc, dim=(0, 2, 3), unbiased=False)
        n = yc.numel() // c
        gamma, beta = bn.weight[:c], bn.bias[:c]
        scale_c = gamma * torch.rsqrt(var + bn.eps)
        yc = torch.addcmul((beta - mean * scale_c)[:, None, None], yc, scale_c[:, None, None])
        scale_e = gamma * torch.rsqrt(var * (n / (n - 1)) + bn.eps)
        ye = F.conv2d(xe, weight * scale_e[:, None, None, None], beta - mean * scale_e, stride, pad)
        if relu:
            yc.relu_()
            ye.relu_()
        return yc, ye

    def _stem(self):
        net = self.net
        w = net.stem_conv.active_weight(self.calib.shape[1], net.stem_channels)
        c, e = self._conv_bn(self.calib, self.x_eval, w, net.stem_bn, net.stem_stride, True)
        if net.stem_pool:
            c, e = F.max_pool2d(c, 3, 2, 1), F.max_pool2d(e, 3, 2, 1)
        return c, e

    def _block(self, spec: BlockSpec, xc, xe):
        blk = self.net.blocks[spec.slot]
        cin, mid, out = spec.in_channels, spec.mid_channels, spec.out_channels
        hc, he = self._conv_bn(xc, xe, blk.conv1.active_weight(cin, mid), blk.bn1, 1, True)
        hc, he = self._conv_bn(hc, he, blk.conv2.active_weight(mid, mid, spec.kernel), blk.bn2, spec.stride, True)
        hc, he = self._conv_bn(hc, he, blk.conv3.active_weight(mid, out), blk.bn3, 1, False)
        if spec.projection:
            sc, se = self._conv_bn(xc, xe, blk.shortcut_conv.active_weight(cin, out), blk.shortcut_bn,
                                   spec.stride, False)
        else:
            sc, se = xc, xe
        return hc.add_(sc).relu_(), he.add_(se).relu_()

    def _head(self, xe: torch.Tensor) -> torch.Tensor:
        """[splits, 2] (correct count, mean cross-entropy) per split, float64, left on the device."""
        pooled = xe.mean((2, 3))
        c = pooled.shape[1]
        logits = F.linear(pooled, self.net.classifier.weight[:, :c], self.net.classifier.bias)
        rows = []
        for lo, hi, y in zip(self.bounds, self.bounds[1:], self.labels):
            part = logits[lo:hi]
            rows.append(torch.stack([(part.argmax(1) == y).sum().double(), F.cross_entropy(part, y).double()]))
        return torch.stack(rows)

    def _results(self, head: list) -> dict[str, SplitResult]:
        return {name: SplitResult(int(correct) / len(y), loss)
                for name, y, (correct, loss) in zip(self.names, self.labels, head)}

    @torch.no_grad()
    def evaluate(self, configs: Sequence[dict]) -> list[dict[str, SplitResult]]:
        """Per config (in order): {split: SplitResult}, each subnet recalibrated on the calibration images."""
        trie: dict = {}
        for i, cfg in enumerate(configs):
            node = trie
            for spec in self.net.block_specs(cfg):
                node = node.setdefault(spec, {})
            node.setdefault(None, []).append(i)  # None: the subnets that end here
        results: list = [None] * len(configs)
        self._walk(trie, *self._stem(), results)
        if not results:
            return []
        # one read from the device for the whole call: [configs, splits, 2]
        values = torch.stack(results).tolist()
        return [self._results(v) for v in values]

    def _walk(self, node: dict, xc, xe, results: list) -> None:
        for spec, child in node.items():
            if spec is None:
                head = self._head(xe)
                for i in child:
                    results[i] = head
            else:
                self._walk(child, *self._block(spec, xc, xe), results)

    @torch.no_grad()
    def evaluate_one(self, config: dict) -> dict[str, SplitResult]:
        """One subnet, no sharing (the per-subnet path the benchmark compares against)."""
        return self.evaluate([config])[0]
