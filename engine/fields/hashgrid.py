"""Multiresolution hash encoding (Mueller et al. 2022, instant-ngp) in plain PyTorch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import Field, FieldOutput, TruncExp, inside_cube

# The spatial hash primes of instant-ngp, as wrapping int32 (only the low bits survive the
# mask); the first is 1 so coarse levels stay coherent along x.
_PRIMES = (1, 2654435761 - 2**32, 805459861)


class _CornerGather(torch.autograd.Function):
    """sum_k weights[n,k] * table[idx[n,k]]: (N,8) int32 indices, (N,8) weights -> (N,F).

    The forward is embedding_bag; the backward scatters with index_add_, several times
    faster on the CPU than embedding_bag's own backward, which sorts the indices.
    """

    @staticmethod
    def forward(ctx, table, idx, weights):
        ctx.save_for_backward(table, idx, weights)
        return F.embedding_bag(idx, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    def backward(ctx, grad):
        table, idx, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            contrib = (weights[:, :, None] * grad[:, None, :]).reshape(-1, table.shape[1])
            # int64 indices: index_add_ takes a much slower path with int32 ones.
            grad_table = torch.zeros_like(table).index_add_(0, idx.reshape(-1).long(), contrib)
        if ctx.needs_input_grad[2]:
            # The feature width, not -1: a step whose samples the empty-space grid all skipped has N = 0.
            grad_weights = (table[idx.reshape(-1)].reshape(*idx.shape, table.shape[1]) * grad[:, None, :]).sum(-1)
        return grad_table, None, grad_weights


class HashGrid(nn.Module):
    """(N,3) positions in [-1,1]^3 -> (N, levels*features) trilinearly interpolated features.

    Coarse levels whose (res+1)^3 corners fit in the table are indexed densely (no
    collisions); finer ones are hashed into a table of 2^log2_size entries.
    """

    def __init__(self, levels: int = 16, features: int = 2, log2_size: int = 19,
                 base_resolution: int = 16, max_resolution: int = 1024) -> None:
        super().__init__()
        scale = math.exp(math.log(max_resolution / base_resolution) / max(levels - 1, 1))
        self.resolutions = [int(math.floor(base_resolution * scale**level)) for level in range(levels)]
        self.dense = [(res + 1) ** 3 <= 2**log2_size for res in self.resolutions]
        self.sizes = [min((res + 1) ** 3, 2**log2_size) for res in self.resolutions]
        self.features = features
        # One table per level, so each level's backward zero-fills only its own gradient.
        # Tiny uniform init as instant-ngp: the field starts smooth and the MLP decides.
        self.tables = nn.ParameterList([nn.Parameter(torch.empty(size, features).uniform_(-1e-4, 1e-4))
                                        for size in self.sizes])

    @property
    def out_dim(self) -> int:
        return len(self.resolutions) * self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = ((x + 1) / 2).clamp(0, 1)
        out = []
        for res, size, dense, table in zip(self.resolutions, self.sizes, self.dense, self.tables):
            pos = u * res
            p0 = pos.floor().clamp(max=res - 1)
            frac = pos - p0
            p0 = p0.int()
            # Per axis the two candidate corners; their combinations give the cube's 8 corners.
            c = torch.stack([p0, p0 + 1], dim=1)  # (N,2,3)
            if dense:
                cx, cy, cz = c[..., 0], c[..., 1] * (res + 1), c[..., 2] * (res + 1) ** 2
                idx = cx[:, :, None, None] + cy[:, None, :, None] + cz[:, None, None, :]
            else:
                cx, cy, cz = c[..., 0] * _PRIMES[0], c[..., 1] * _PRIMES[1], c[..., 2] * _PRIMES[2]
                idx = (cx[:, :, None, None] ^ cy[:, None, :, None] ^ cz[:, None, None, :]) & (size - 1)
            w = torch.stack([1 - frac, frac], dim=1)  # (N,2,3)
            weights = w[:, :, None, None, 0] * w[:, None, :, None, 1] * w[:, None, None, :, 2]
            out.append(_CornerGather.apply(table, idx.reshape(-1, 8), weights.reshape(-1, 8)))
        return torch.cat(out, dim=-1)


class HashGridField(Field):
    """Hash grid + small MLP -> density (truncated exp) and albedo (sigmoid).

    blob_density > 0 adds blob_density * (1 - |x| / blob_radius) to the density before the exponential
    (threestudio's magic3d blob), so the field starts as a ball that guidance shapes instead of growing
    an object out of fog (DreamFusion); 0 = none.
    """

    def __init__(self, levels: int = 16, log2_size: int = 19, max_resolution: int = 1024,
                 width: int = 64, density_bias: float = -1.0, blob_density: float = 0.0,
                 blob_radius: float = 0.5) -> None:
        super().__init__(density_bias)
        self.encoding = HashGrid(levels=levels, log2_size=log2_size, max_resolution=max_resolution)
        self.mlp = nn.Sequential(nn.Linear(self.encoding.out_dim, width), nn.ReLU(),
                                 nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
        self.blob_density, self.blob_radius = blob_density, blob_radius

    def forward(self, x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:
        h = self.mlp(self.encoding(x))
        pre = h[:, 0]
        if self.blob_density:
            pre = pre + self.blob_density * (1 - x.norm(dim=-1) / self.blob_radius)
        density = TruncExp.apply(pre + self.density_bias) * inside_cube(x)
        return FieldOutput(density=density, albedo=torch.sigmoid(h[:, 1:]))
