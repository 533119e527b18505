"""Empty-space skipping: a coarse grid of where the field could stop light (instant-ngp; nerfacc's
OccGridEstimator). Samples in empty cells never reach the field."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..fields.base import FieldOutput
from .volume import FieldFn

CUBE_DIAGONAL = 2 * math.sqrt(3)


def march_step(samples_per_ray: int) -> float:
    """The ray-marching step (object units) of render.samples_per_ray: that many samples along the cube's
    diagonal, the longest path through it (nerfacc's render_step_size, counted the way instant-ngp counts
    its 1024 steps across the cube's diagonal)."""
    return CUBE_DIAGONAL / samples_per_ray


class OccupancyGrid(nn.Module):
    """res^3 cells over the object cube [-1,1]^3: a cell is occupied while a render sample in it could stop light.

    A cell is judged by the opacity one marching step through it would have, density * step_size (nerfacc's
    occ_eval_fn, instant-ngp's density grid), not by raw density: a density that a ray crossing the whole cube
    would barely notice is empty space. Each update folds the field's density at one random point per cell into
    a decaying maximum (nerfacc's ema_decay 0.95), so a cell that empties is dropped after a few updates and
    one that fills again (the field is shared across cells, so skipped cells still change) is found at the next.
    The threshold is min(threshold, mean opacity of the visible cells) (nerfacc's OccGridEstimator): a field that
    starts as a faint fog everywhere keeps its densest half, so training has somewhere to start.
    Cells that no training camera sees are empty for good (mark_invisible; nerfacc's mark_invisible_cells):
    nothing constrains them, and floaters there would end up in the mesh.

    Buffers (saved in checkpoints: a resumed run skips exactly what the original did): `density` (res^3,) the
    decaying maximum of the density, `occupied` (res^3,) bool, `visible` (res^3,) bool.

    step_size None keeps the text methods' rule: raw density above `threshold`, no mean cap (their fields start
    as a blob that guidance grows; the opacity rule has only been measured on captures).
    """

    def __init__(self, resolution: int = 64, threshold: float = 0.01, step_size: float | None = None,
                 decay: float = 0.95) -> None:
        super().__init__()
        self.resolution, self.threshold, self.step_size, self.decay = resolution, threshold, step_size, decay
        self.register_buffer("density", torch.zeros(resolution**3))
        self.register_buffer("occupied", torch.ones(resolution**3, dtype=torch.bool))
        self.register_buffer("visible", torch.ones(resolution**3, dtype=torch.bool))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Grids of checkpoints written before visibility was tracked: every cell visible.
        state_dict.setdefault(prefix + "visible", torch.ones(self.resolution**3, dtype=torch.bool))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def cell_centres(self) -> torch.Tensor:
        """(res^3,3) the cells' centres in object space, in the grid's (x-major) order."""
        r = self.resolution
        cells = torch.arange(r**3, device=self.density.device)
        ijk = torch.stack([cells // (r * r), (cells // r) % r, cells % r], dim=-1).float()
        return -1 + 2 * (ijk + 0.5) / r

    @torch.no_grad()
    def mark_invisible(self, c2w: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int],
                       bounds: torch.Tensor | None = None) -> None:
        """Cells that no camera's view frustum reaches become empty for good.

        c2w: (N,4,4) object-space camera-to-world (looking down -Z, +Y up); intrinsics: (N,4) fx, fy, cx, cy in
        pixels of (H, W) = size images. bounds: optional (N,4) xmin, xmax, ymin, ymax of each view in normalised
        undistorted coordinates (x right, y down; lens distortion moves the image's edges), by default the
        pinhole image's. A cell counts as seen when its centre projects inside a view widened by the cell's
        half diagonal, so a partly seen cell stays."""
        h, w = size
        centres = self.cell_centres()
        radius = math.sqrt(3) / self.resolution
        if bounds is None:
            fx, fy, cx, cy = intrinsics.unbind(-1)
            bounds = torch.stack([-cx / fx, (w - cx) / fx, -cy / fy, (h - cy) / fy], dim=-1)
        seen = torch.zeros(len(centres), dtype=torch.bool, device=centres.device)
        for pose, (x0, x1, y0, y1) in zip(c2w.to(centres.device), bounds.tolist()):
            p = (centres - pose[:3, 3]) @ pose[:3, :3]  # camera space
            depth = -p[:, 2]
            margin = radius / depth.clamp(min=1e-6)
            x, y = p[:, 0] / depth.clamp(min=1e-6), -p[:, 1] / depth.clamp(min=1e-6)
            seen |= (depth > -radius) & (x > x0 - margin) & (x < x1 + margin) & (y > y0 - margin) & (y < y1 + margin)
        self.visible.copy_(seen)
        self.occupied &= seen

    @torch.no_grad()
    def update(self, field: FieldFn, generator: torch.Generator, chunk: int = 131072) -> None:
        """Query the field at one random point in every visible cell and refresh `occupied`."""
        r = self.resolution
        jitter = torch.rand(r**3, 3, generator=generator).to(self.density.device)
        points = self.cell_centres() + (jitter - 0.5) * (2 / r)
        cells = self.visible.nonzero().squeeze(1)
        fresh = torch.zeros_like(self.density)
        fresh[cells] = torch.cat([field(points[cells[i:i + chunk]]).density.float()
                                  for i in range(0, len(cells), chunk)])
        self.density.copy_(torch.maximum(self.density * self.decay, fresh) * self.visible)
        if self.step_size is None:
            self.occupied.copy_((self.density > self.threshold) & self.visible)
            return
        opacity = self.density * self.step_size
        mean = opacity[self.visible].mean() if bool(self.visible.any()) else opacity.new_zeros(())
        self.occupied.copy_((opacity > torch.clamp(mean, max=self.threshold)) & self.visible)

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

    def __init__(self, options, device: torch.device, step_size: float | None = None) -> None:
        """options: engine.options.OccupancyOptions (resolution 0 = off); step_size: the render's marching step
        (object units, march_step), what a cell's opacity is judged over (None: raw density, text methods)."""
        self.every = options.every
        self.grid = (OccupancyGrid(options.resolution, options.threshold, step_size).to(device)
                     if options.resolution else None)

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
