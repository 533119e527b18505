"""What lies outside the object cube: the room, table and street of photos without alpha.

A second, smaller hash-grid field over all of space, squeezed into a bounded box by mip-NeRF 360's
contraction (Barron et al. CVPR 2022, eq. 10) in the L-infinity norm (MERF, Reiser et al. 2023; nerfstudio's
SceneContraction(order=inf)), so that a cube maps onto a cube: points within `scale` of the centre keep
their place, everything farther is folded into the shell up to twice that. The object's field does not
have to explain the backdrop with fog, and the mesh is extracted from the object's field alone.
"""
from __future__ import annotations

import torch

from .base import Field, FieldOutput, TruncExp
from .hashgrid import HashGrid


def contract(x: torch.Tensor) -> torch.Tensor:
    """(N,3) -> (N,3) in [-2,2]^3: x where max|x_i| <= 1, else (2 - 1/m) x / m with m = max|x_i| (L-inf norm)."""
    m = x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.where(m <= 1, x, (2 - 1 / m) * x / m)


class BackgroundField(Field):
    """Unbounded positions (object units) -> density and albedo, for samples outside the object cube.

    scale: object units kept linear by the contraction (cameras sit about 4 from the centre, so the space they
    move in keeps its resolution); beyond it detail falls off with 1/distance, as a camera sees it.
    """

    def __init__(self, scale: float = 4.0, levels: int = 4, log2_size: int = 17, max_resolution: int = 64,
                 width: int = 32, density_bias: float = -1.0) -> None:
        super().__init__(density_bias)
        self.scale = scale
        self.encoding = HashGrid(levels=levels, log2_size=log2_size, max_resolution=max_resolution)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(self.encoding.out_dim, width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, 4))

    def forward(self, x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:
        h = self.mlp(self.encoding(contract(x / self.scale) / 2))
        return FieldOutput(TruncExp.apply(h[:, 0] + self.density_bias), torch.sigmoid(h[:, 1:]))
