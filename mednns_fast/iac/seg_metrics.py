"""Segmentation metrics per class and per case: Dice and IoU from a case's pooled pixel counts.

A case is the unit a segmentation result is reported on (in the paper: a patient volume). The pixels of
all images of a case are pooled before Dice is taken, so a case's Dice is its volume (slab) Dice, not a
mean of slice Dices. A class absent from both the prediction and the reference of a case has no Dice
there (NaN) and is left out of the means.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class CaseMetrics:
    """cases: [M] case ids; dice, iou: [M, n_classes] float64 (NaN: class absent from both)."""

    cases: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor

    def case_dice(self, include_background: bool = False) -> torch.Tensor:
        """[M]: each case's mean Dice over its (foreground) classes."""
        d = self.dice if include_background else self.dice[:, 1:]
        return d.nanmean(dim=1)

    def mean_dice(self, include_background: bool = False) -> float:
        """Mean over cases of `case_dice`."""
        return float(self.case_dice(include_background).nanmean())

    def class_dice(self) -> torch.Tensor:
        """[n_classes]: each class's mean Dice over cases."""
        return self.dice.nanmean(dim=0)

    def to_dict(self) -> dict:
        def clean(t: torch.Tensor) -> list:
            return [[None if v != v else round(v, 6) for v in row] for row in t.tolist()]
        return {"cases": self.cases.tolist(), "dice": clean(self.dice), "iou": clean(self.iou),
                "mean_dice": self.mean_dice()}


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, cases: torch.Tensor,
                     n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """pred, target: [N, H, W] class indices; cases: [N]. Returns (case ids [M], tp, fp, fn [M, n_classes])."""
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"confusion_counts: pred and target must both be [N, H, W], got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if cases.shape != pred.shape[:1]:
        raise ValueError(f"confusion_counts: cases must be [{pred.shape[0]}], got {tuple(cases.shape)}")
    ids, case_index = torch.unique(cases, return_inverse=True)
    M = len(ids)
    # one bincount over (case, reference class, predicted class)
    pix_case = case_index.view(-1, 1, 1).expand_as(pred).reshape(-1)
    flat = (pix_case * n_classes + target.reshape(-1).long()) * n_classes + pred.reshape(-1).long()
    conf = torch.bincount(flat, minlength=M * n_classes * n_classes).view(M, n_classes, n_classes).double()
    tp = conf.diagonal(dim1=1, dim2=2)
    fn = conf.sum(2) - tp
    fp = conf.sum(1) - tp
    return ids, tp, fp, fn


def case_metrics(pred: torch.Tensor, target: torch.Tensor, cases: torch.Tensor, n_classes: int) -> CaseMetrics:
    """Dice = 2 TP / (2 TP + FP + FN) and IoU = TP / (TP + FP + FN) per case and class."""
    ids, tp, fp, fn = confusion_counts(pred, target, cases, n_classes)
    denom = 2 * tp + fp + fn
    nan = torch.full_like(tp, float("nan"))
    dice = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), nan)
    iou = torch.where(denom > 0, tp / (tp + fp + fn).clamp(min=1), nan)
    return CaseMetrics(ids, dice, iou)
