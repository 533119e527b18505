"""The one place where named, unweighted losses become the optimised total."""
from __future__ import annotations

import torch


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * losses[k]; a loss without a weight (or a weight without a loss) is a bug."""
    missing, extra = sorted(set(losses) - set(weights)), sorted(set(weights) - set(losses))
    if missing or extra:
        raise ValueError(f"loss/weight names differ: losses without weight {missing}, weights without loss {extra}")
    return sum(weights[k] * losses[k] for k in sorted(losses))
