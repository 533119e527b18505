"""Dream Fields' backbone: integrated positional encoding and a residual MLP."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Field, FieldOutput, inside_cube


def integrated_encoding(x: torch.Tensor, radius: torch.Tensor | None, degree: int) -> torch.Tensor:
    """mip-NeRF's integrated positional encoding with an isotropic Gaussian per sample.

    x: (N,3); radius: (N,) standard deviation of the sample's footprint, or None for the
    plain encoding. Returns (N, 3 + 6*degree). Each frequency is damped by exp(-0.5 f^2 r^2):
    frequencies finer than a pixel's footprint fade out instead of aliasing.
    """
    freqs = math.pi * 2.0 ** torch.arange(degree, device=x.device, dtype=x.dtype)  # (D,)
    scaled = x[:, None, :] * freqs[None, :, None]  # (N,D,3)
    enc = torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)  # (N,2D,3)
    if radius is not None:
        damp = torch.exp(-0.5 * (freqs[None, :] * radius[:, None]) ** 2)  # (N,D)
        enc = enc * damp.repeat(1, 2)[:, :, None]
    return torch.cat([x, enc.reshape(x.shape[0], -1)], dim=-1)


class ResidualBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.fc1 = nn.LayerNorm(width), nn.Linear(width, width)
        self.norm2, self.fc2 = nn.LayerNorm(width), nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.norm2(self.fc1(F.silu(self.norm1(h))))))


class MLPField(Field):
    """Integrated PE (degree 8) -> residual MLP -> density (softplus, as Dream Fields) and albedo."""

    def __init__(self, width: int = 128, blocks: int = 2, degree: int = 8, density_bias: float = -1.0) -> None:
        super().__init__(density_bias)
        self.degree = degree
        self.inp = nn.Linear(3 + 6 * degree, width)
        self.blocks = nn.Sequential(*[ResidualBlock(width) for _ in range(blocks)])
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, 4))

    def forward(self, x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:
        h = self.out(self.blocks(self.inp(integrated_encoding(x, radius, self.degree))))
        density = F.softplus(h[:, 0] + self.density_bias) * inside_cube(x)
        return FieldOutput(density=density, albedo=torch.sigmoid(h[:, 1:]))
