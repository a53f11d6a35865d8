"""Implanting cells into a U-Net's skip connections, and the architecture parameters of the search.

`implant(unet, IACConfig(...))` puts a search cell (`IACCell`) in every skip (or the `levels` named) and
returns an `IACNetwork` that owns the architecture parameters (one set shared by all implanted cells: the
search finds one cell type, as DARTS does for its normal cell). `implant(unet, genotype)` puts the derived
cell there instead. Either way each cell's output projection starts at zero, so the implanted network
computes exactly what the backbone computed until the cells are trained.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..darts.mixed_op import MixedOp
from .cell import DerivedCell, Genotype, IACCell, IACConfig, check_levels
from .unet import UNet


class ResidualSkip(nn.Module):
    """``skip + cell(skip, up, **skip_args)``: what replaces a U-Net's `SkipIdentity`."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, skip: torch.Tensor, up: torch.Tensor, **skip_args) -> torch.Tensor:
        return skip + self.cell(skip, up, **skip_args)


class IACArchitecture(nn.Module):
    """The controller: architecture parameters alphas [E, P] and edge-normalisation betas [E], plus the
    `active` mask [E, P] of candidates not yet pruned. DARTS' init: 1e-3 * N(0, 1)."""

    def __init__(self, config: IACConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        E, P = config.n_edges, len(config.primitives)
        self.alphas = nn.Parameter(1e-3 * torch.randn(E, P, generator=generator))
        self.betas = nn.Parameter(1e-3 * torch.randn(E, generator=generator))
        self.register_buffer("active", torch.ones(E, P, dtype=torch.bool))
        # (first edge, number of edges) of every node: the groups the betas are normalised over
        self._node_slices = []
        e = 0
        for i in range(config.nodes):
            n = config.n_inputs + i
            self._node_slices.append((e, n))
            e += n

    def weights(self) -> torch.Tensor:
        """[E, P]: softmax of each edge's alphas over its active candidates; exactly 0 where pruned."""
        return torch.softmax(self.alphas.masked_fill(~self.active, -math.inf), dim=-1)

    def edge_betas(self) -> torch.Tensor:
        """[E]: the betas, softmax-normalised over each node's incoming edges."""
        return torch.cat([torch.softmax(self.betas.narrow(0, s, n), 0) for s, n in self._node_slices])


class IACNetwork(nn.Module):
    """A U-Net with cells in (some of) its skip connections.

    `arch` is the `IACArchitecture` for a search network, None for a derived one. `forward(x)` returns
    the logits [N, n_classes, H, W].
    """

    def __init__(self, unet: UNet, levels: list[int], cell: IACConfig | Genotype,
                 arch: IACArchitecture | None) -> None:
        super().__init__()
        self.unet, self.levels, self.cell_spec, self.arch = unet, levels, cell, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch is None:
            return self.unet(x)
        return self.unet(x, weights=self.arch.weights(), betas=self.arch.edge_betas())

    def cells(self) -> list[nn.Module]:
        return [self.unet.skip_transforms[level].cell for level in self.levels]

    def cell_parameters(self) -> Iterator[nn.Parameter]:
        """The implanted cells' weights (not the architecture parameters, not the backbone)."""
        for cell in self.cells():
            yield from cell.parameters()

    def arch_parameters(self) -> list[nn.Parameter]:
        return [] if self.arch is None else [self.arch.alphas, self.arch.betas]

    def freeze_backbone(self) -> None:
        """No gradients for the U-Net's own parameters, and its BatchNorms keep their statistics
        (call `train()` / `eval()` through this module so that they stay in eval mode)."""
        for p in self.unet.backbone_parameters():
            p.requires_grad_(False)
        self._frozen = True

    def unfreeze_backbone(self) -> None:
        for p in self.unet.backbone_parameters():
            p.requires_grad_(True)
        self._frozen = False

    def train(self, mode: bool = True) -> IACNetwork:
        super().train(mode)
        if mode and getattr(self, "_frozen", False):
            for name, module in self.unet.named_children():
                if name != "skip_transforms":
                    module.eval()
        return self

    def edge_ops(self) -> list[list[MixedOp]]:
        """Per edge, its MixedOp in every implanted search cell."""
        if self.arch is None:
            raise ValueError("IACNetwork.edge_ops: a derived network has no mixed edges")
        return [[cell.edges[e] for cell in self.cells()] for e in range(self.arch.config.n_edges)]

    def set_active(self, masks: Sequence[Sequence[bool]] | torch.Tensor) -> None:
        """Switch candidates off (False) on every edge: in the controller's mask (exact zero weights) and in
        every cell's MixedOps. `masks`: [E, P] (e.g. `ProgressivePruner.masks`)."""
        if self.arch is None:
            raise ValueError("IACNetwork.set_active: a derived network has no mixed edges")
        masks = torch.stack([torch.as_tensor(m, dtype=torch.bool) for m in masks])
        if masks.shape != self.arch.active.shape:
            raise ValueError(f"IACNetwork.set_active: masks must be {tuple(self.arch.active.shape)}, got "
                             f"{tuple(masks.shape)}")
        self.arch.active.copy_(masks)
        for e, ops in enumerate(self.edge_ops()):
            for op in ops:
                op.set_active(masks[e])


def implant(unet: UNet, cell: IACConfig | Genotype, levels: Sequence[int] | None = None,
            generator: torch.Generator | None = None) -> IACNetwork:
    """Put a cell in the skip connections `levels` (default: all) of `unet`, in place, and return the
    network. `cell`: an `IACConfig` (search cells sharing one `IACArchitecture`) or a `Genotype` (derived
    cells). Skip levels already holding a cell are replaced.

    generator: where the architecture parameters and the cells' initial weights come from. Two implants
    from generators in the same state get identical cells (paired searches start from the same cells);
    the global generator is neither read nor advanced then. None: the global generator (as torch's own
    module initialisation)."""
    if not isinstance(unet, UNet):
        raise TypeError(f"implant: unet must be a mednns_fast.nas.UNet, got {type(unet).__name__}")
    levels = check_levels(levels, unet.depth)
    if isinstance(cell, IACConfig):
        arch = IACArchitecture(cell, generator)
        make = lambda C: IACCell(C, cell)  # noqa: E731
    elif isinstance(cell, Genotype):
        arch = None
        make = lambda C: DerivedCell(C, cell)  # noqa: E731
    else:
        raise TypeError(f"implant: cell must be an IACConfig or a Genotype, got {type(cell).__name__}")
    if generator is None:
        for level in levels:
            unet.skip_transforms[level] = ResidualSkip(make(unet.skip_channels[level]))
    else:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):  # module init draws from the global generator
            torch.manual_seed(seed)
            for level in levels:
                unet.skip_transforms[level] = ResidualSkip(make(unet.skip_channels[level]))
    return IACNetwork(unet, levels, cell, arch)
