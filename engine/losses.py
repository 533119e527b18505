"""Losses that several methods use, each named after its paper, and the one place where named,
unweighted losses become the optimised total.

Methods return their losses unweighted under these names (StepOutput.losses); their weights
come from Method.weights(step) under the same names, and weighted_total checks both agree.
"""
from __future__ import annotations

import torch


def weighted_total(losses: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """sum_k weights[k] * losses[k]; a loss without a weight (or a weight without a loss) is a bug.

    Raises ValueError naming the mismatched names."""
    missing, extra = sorted(set(losses) - set(weights)), sorted(set(weights) - set(losses))
    if missing or extra:
        raise ValueError(f"loss/weight names differ: losses without weight {missing}, weights without loss {extra}")
    return sum(weights[k] * losses[k] for k in sorted(losses))


def opacity_entropy(opacity: torch.Tensor) -> torch.Tensor:
    """Mean binary entropy (bits) of each ray's opacity (...,) in [0,1]: low when every ray is either empty or
    opaque, so fog and half-transparent floaters cost (stable-dreamfusion's entropy loss, threestudio's
    loss_opaque). Clamped to [1e-5, 1 - 1e-5] so the gradient stays finite."""
    a = opacity.clamp(1e-5, 1 - 1e-5)
    return -(a * torch.log2(a) + (1 - a) * torch.log2(1 - a)).mean()


def distortion(weights: torch.Tensor, t: torch.Tensor, delta: torch.Tensor | None = None) -> torch.Tensor:
    """mip-NeRF 360's distortion loss per ray (Barron et al. CVPR 2022, eq. 15): how spread out each ray's
    weights are; small when the weight is one thin surface, 0 when empty. NeRF-Art uses it as its weight
    regularisation against cloudy artefacts.

    weights: (R,S); t: (R,S) bin middles, increasing along each ray; delta: optional (R,S) or (R,1)
    bin lengths. Returns (R,) sum_{i,j} w_i w_j |t_i - t_j|, plus 1/3 sum_i w_i^2 delta_i (the spread
    inside each bin) when delta is given.

    O(S) per ray: with t sorted, the double sum is 2 sum_i w_i (t_i sum_{j<i} w_j - sum_{j<i} w_j t_j),
    two exclusive cumulative sums.
    """
    wt = weights * t

    def before(x):  # sum_{j<i} x_j
        return torch.cumsum(torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1), dim=1)

    spread = 2 * (weights * (t * before(weights) - before(wt))).sum(dim=1)
    if delta is not None:
        spread = spread + (weights.square() * delta).sum(dim=1) / 3
    return spread


def orientation(normals: torch.Tensor, dirs: torch.Tensor, opacity: torch.Tensor) -> torch.Tensor:
    """Ref-NeRF's orientation loss (Verbin et al. CVPR 2022, eq. 10) on one normal per ray: visible normals
    (R,3) that face away from the camera along dirs (R,3) cost, weighted by the ray's opacity (R,),
    which is not back-propagated through."""
    return (opacity.detach() * (normals * dirs).sum(-1).clamp(min=0).square()).mean()


def pearson_correlation(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of two (N,) samples, in [-1, 1]: Vox-E's structure-keeping term (Sella et al. ICCV
    2023, edit_pretrained_relu_field.py) takes 1 minus it between the edited and the source densities. eps keeps
    a constant sample (zero variance) finite: it then correlates 0 with anything."""
    a, b = a - a.mean(), b - b.mean()
    return (a * b).sum() / (a.square().sum().sqrt() * b.square().sum().sqrt() + eps)
