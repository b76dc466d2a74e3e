"""Per-class recall, balanced accuracy and balanced robustness (TAET Sec. 3: mean per-class recall).

"Balanced robustness" is balanced accuracy computed on predictions for adversarial inputs.
"""

from __future__ import annotations

import torch


def confusion_counts(preds: torch.Tensor, targets: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct per class, total per class) as float64 tensors on the CPU."""
    preds = torch.as_tensor(preds).reshape(-1).long().cpu()
    targets = torch.as_tensor(targets).reshape(-1).long().cpu()
    if preds.shape != targets.shape:
        raise ValueError(f"preds and targets differ in length: {preds.numel()} vs {targets.numel()}")
    total = torch.bincount(targets, minlength=num_classes).double()
    correct = torch.bincount(targets[preds == targets], minlength=num_classes).double()
    return correct, total


def per_class_recall(preds, targets, num_classes: int) -> torch.Tensor:
    """Recall of each class; NaN for a class with no sample (it is left out of balanced means)."""
    correct, total = confusion_counts(preds, targets, num_classes)
    out = torch.full((num_classes,), float("nan"), dtype=torch.float64)
    has = total > 0
    out[has] = correct[has] / total[has]
    return out


def balanced_accuracy(preds, targets, num_classes: int) -> float:
    """Mean per-class recall over the classes present in `targets` (= sklearn balanced_accuracy_score)."""
    r = per_class_recall(preds, targets, num_classes)
    return float(r[~torch.isnan(r)].mean())


# Same computation on adversarial predictions; the paper's name for it.
balanced_robustness = balanced_accuracy


def accuracy(preds, targets) -> float:
    preds = torch.as_tensor(preds).reshape(-1).cpu()
    targets = torch.as_tensor(targets).reshape(-1).cpu()
    return float((preds == targets).double().mean())
