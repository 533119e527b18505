"""Empty-space skipping: a coarse grid of where the field has density (instant-ngp; nerfacc's
OccGridEstimator). Samples in empty cells never reach the field."""
from __future__ import annotations

import torch
from torch import nn

from ..fields.base import FieldOutput
from .volume import FieldFn


class OccupancyGrid(nn.Module):
    """res^3 cells over the object cube [-1,1]^3; a cell is occupied while its density is above `threshold`.

    Each update folds the field's density at one random point per cell into a decaying
    maximum, so a cell that empties is dropped after a few updates and one that fills again
    (the field is shared across cells, so skipped cells still change) is found at the next.
    Both buffers are saved in checkpoints: a resumed run skips exactly what the original did.
    """

    def __init__(self, resolution: int = 64, threshold: float = 0.01, decay: float = 0.95) -> None:
        super().__init__()
        self.resolution, self.threshold, self.decay = resolution, threshold, decay
        self.register_buffer("density", torch.zeros(resolution**3))
        self.register_buffer("occupied", torch.ones(resolution**3, dtype=torch.bool))

    @torch.no_grad()
    def update(self, field: FieldFn, generator: torch.Generator, chunk: int = 131072) -> None:
        r = self.resolution
        cells = torch.arange(r**3)
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        points = (-1 + 2 * (ijk + torch.rand(r**3, 3, generator=generator)) / r).to(self.density.device)
        fresh = torch.cat([field(points[i:i + chunk]).density.float() for i in range(0, len(points), chunk)])
        self.density.copy_(torch.maximum(self.density * self.decay, fresh))
        self.occupied.copy_(self.density > self.threshold)

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """(N,3) object-space points -> (N,) True where the cell is occupied (False outside the cube)."""
        r = self.resolution
        ijk = ((x + 1) / 2 * r).floor().long()
        inside = ((ijk >= 0) & (ijk < r)).all(dim=-1)
        ijk = ijk.clamp(0, r - 1)
        return self.occupied[(ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]] & inside

    @property
    def fraction(self) -> float:
        """Share of occupied cells."""
        return self.occupied.float().mean().item()


def skip_empty(field: FieldFn, grid: OccupancyGrid) -> FieldFn:
    """The field as a callable that returns zero density (and albedo) in empty cells without querying them."""

    def query(x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:
        keep = grid.lookup(x).nonzero().squeeze(1)
        if len(keep) == len(x):
            return field(x, radius)
        out = field(x[keep], None if radius is None else radius[keep])
        density = x.new_zeros(len(x)).index_put((keep,), out.density)
        albedo = x.new_zeros(len(x), 3).index_put((keep,), out.albedo)
        return FieldOutput(density, albedo)

    return query


class EmptySpace:
    """The empty-space grid as a method uses it, from its options.occupancy: built (or off), refreshed on its
    schedule before a step renders, saved in checkpoints, reported as the `occupied` metric."""

    def __init__(self, options, device: torch.device) -> None:
        """options: engine.options.OccupancyOptions (resolution 0 = off)."""
        self.every = options.every
        self.grid = OccupancyGrid(options.resolution, options.threshold).to(device) if options.resolution else None

    @property
    def modules(self) -> dict[str, OccupancyGrid]:
        """What checkpoints hold: {"occupancy": grid}, or {} when off."""
        return {} if self.grid is None else {"occupancy": self.grid}

    def field_for_step(self, field: FieldFn, step: int, generator: torch.Generator) -> FieldFn:
        """`field` behind the grid, the grid refreshed first when the step falls on its schedule (drawing its
        points from `generator`, so the step's other random choices follow in a fixed order)."""
        if self.grid is None:
            return field
        if step % self.every == 0:
            self.grid.update(field, generator)
        return skip_empty(field, self.grid)

    def metrics(self) -> dict[str, float]:
        """{"occupied": share of occupied cells}, or {} when off."""
        return {} if self.grid is None else {"occupied": self.grid.fraction}
