"""What every field returns, and what is computed from any field."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class FieldOutput:
    density: torch.Tensor
    """(N,) volume density >= 0, zero outside the object cube."""
    albedo: torch.Tensor
    """(N,3) diffuse colour in [0,1], display (sRGB) encoded: guidance sees it as an image."""


LEGACY_DENSITY_BIAS = -1.0
"""The density bias of every checkpoint written before fields saved theirs."""


class Field(nn.Module):
    """Position -> density and albedo, with no view dependence.

    Positions are in object space; the field is bounded to the cube [-1,1]^3. `radius` is
    an optional (N,) footprint of each sample (cone radius), used by integrated encodings.
    density_bias: added to the density before its activation (how full the field starts); a buffer,
    so checkpoints carry it: trained weights mean something only with the bias they were trained with.
    """

    def __init__(self, density_bias: float = LEGACY_DENSITY_BIAS) -> None:
        super().__init__()
        self.register_buffer("density_bias", torch.tensor(float(density_bias)))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "density_bias", torch.tensor(LEGACY_DENSITY_BIAS))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:  # pragma: no cover
        raise NotImplementedError


class TruncExp(torch.autograd.Function):
    """exp() whose backward clamps its input, so a large density cannot blow up the gradient (instant-ngp)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


def inside_cube(x: torch.Tensor) -> torch.Tensor:
    """(N,3) -> (N,) bool, True inside [-1,1]^3."""
    return (x.abs() <= 1).all(dim=-1)


def density_normals(field: Field, x: torch.Tensor, eps: float = 1e-2) -> torch.Tensor:
    """(N,3) positions -> (N,3) unit normals, minus the normalised density gradient.

    Central finite differences (six extra density queries in one batched call) rather than
    autograd: no second-order graph in the backward pass (with autograd normals, stable-dreamfusion
    spends most of a step in double backward).
    """
    offsets = torch.cat([torch.eye(3, device=x.device), -torch.eye(3, device=x.device)]) * eps  # (6,3)
    d = field((x[:, None, :] + offsets[None]).reshape(-1, 3)).density.reshape(-1, 6)
    grad = (d[:, :3] - d[:, 3:]) / (2 * eps)
    return -torch.nn.functional.normalize(grad, dim=-1, eps=1e-12)
