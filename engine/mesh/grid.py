"""Density grid over the cube [-1,1]^3, sampled coarse to fine, and the iso-level to extract.

Querying every point of a 256^3 lattice costs 16.7M field queries (~45 s for a hash-grid
field on a CPU), but the surface only passes through a thin shell of it. DensityGrid
therefore samples coarse to fine, as Occupancy Networks' MISE: it queries every
step-th point, then on ever finer lattices follows the surface cell by cell from the
coarse cells it crosses, and interpolates the rest.
"""
from __future__ import annotations

import logging

from typing import Callable

import numpy as np

from engine.errors import EngineError

DensityFn = Callable[[np.ndarray], np.ndarray]

# Densities below this count as empty space for the fog fallback of "auto".
AUTO_EPS = 1e-5
# Percentile of the non-empty densities that "auto" takes in a field that never gets opaque.
FOG_PERCENTILE = 99.5
# Callers that know nothing of the renderer: an opaque surface at 64 samples across the cube.
DEFAULT_OPAQUE_DENSITY = 22.0

log = logging.getLogger("engine.mesh")
# The coarse lattice keeps at least this many cells per axis: surfaces it misses
# entirely are lost, so small resolutions get a smaller coarse factor.
MIN_COARSE_CELLS = 32


def cell_centres(resolution: int) -> np.ndarray:
    """(R,) float32: the centres of R equal cells along one axis of [-1,1]."""
    return ((np.arange(resolution) + 0.5) * (2.0 / resolution) - 1.0).astype(np.float32)


def sample_lattice(density_fn: DensityFn, axis: np.ndarray, chunk: int) -> np.ndarray:
    """(n,n,n) float32 density at the points axis[[i, j, k]] for axis (n,) float32."""
    n = len(axis)
    yz = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(n * n, 2)
    values = np.empty((n, n * n), np.float32)
    # Each call gets whole x-slabs when they fit in a chunk, else part of one slab;
    # the points are built by broadcasting, with no per-point index arithmetic.
    slabs, rows = max(1, chunk // (n * n)), min(chunk, n * n)
    for i in range(0, n, slabs):
        for m in range(0, n * n, rows):
            x, part = axis[i : i + slabs], yz[m : m + rows]
            points = np.empty((len(x), len(part), 3), np.float32)
            points[..., 0] = x[:, None]
            points[..., 1:] = part
            values[i : i + slabs, m : m + rows] = density_fn(points.reshape(-1, 3)).reshape(len(x), -1)
    return values.reshape(n, n, n)


# The 8 corners of cell (i,j,k) of a lattice are the points (i,j,k) + CORNERS.
CORNERS = np.array([(i, j, k) for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def crossing_cells(above: np.ndarray) -> np.ndarray:
    """(n-1,)*3 bool: the cells of a lattice above (n,)*3 bool whose corners differ."""
    some = every = above
    for axis in range(3):
        low = (slice(None),) * axis + (slice(None, -1),)
        high = (slice(None),) * axis + (slice(1, None),)
        some, every = some[low] | some[high], every[low] & every[high]
    return some & ~every


def _distinct(flat: np.ndarray) -> np.ndarray:
    """The distinct values of flat (K,) int64, sorted (np.unique hashes, ~50x slower here)."""
    flat = np.sort(flat)
    return flat[np.concatenate([flat[:1] == flat[:1], flat[1:] != flat[:-1]])]


class DensityGrid:
    """The density on the padded lattice of cell centres, sampled coarse to fine.

    values: (M,M,M) float32, M >= R+2. values[p,q,r] for 1 <= p,q,r <= R is the density
    at cell_centres(R)[[p-1, q-1, r-1]] (axes x, y, z; z up); every other entry is a
    border of zeros that closes surfaces touching the bound. M-1 is a multiple of the
    coarse step, so every lattice values[::s, ::s, ::s] (s = step, step/2, ..., 1)
    starts and ends on the border.
    known: (M,M,M) bool, True where values holds a queried density or the border,
    else the trilinear interpolation of a coarser lattice. queries: points queried.

    1. __init__ queries the coarse lattice, every step-th point (step = coarse_factor,
       halved while the lattice would have fewer than MIN_COARSE_CELLS cells per axis).
    2. refine(level) goes from each lattice to the one of half its step:
       a. the new points get the trilinear interpolation of the coarser lattice. In a
          cell whose corners all lie on one side of the level it stays on that side,
          so marching cubes finds no crossing there;
       b. track: starting from the fine cells inside the coarse cells whose corners
          differ, query the unknown corners of every cell whose corner values (queried
          or interpolated) differ, then of the cells around the new points that now
          differ, until no such corner is left.
    Tracking ends with every crossed cell fully queried, and a cell the surface crosses
    shares a face with crossed corners with the next one, so each piece of surface is
    followed to its end. The mesh is then the exhaustive grid's, except for pieces
    that separate no two neighbouring coarse points (an isolated blob or sheet between
    them, mostly a floater that cleanup drops anyway). A part thinner than the coarse
    step that joins a piece found (a fin, a leg) is followed, however thin.
    """

    def __init__(self, density_fn: DensityFn, resolution: int, coarse_factor: int, chunk: int) -> None:
        if coarse_factor < 1 or coarse_factor & (coarse_factor - 1):
            raise ValueError(f"coarse_factor must be a power of two, got {coarse_factor}")
        step = coarse_factor
        while step > 1 and resolution // step < MIN_COARSE_CELLS:
            step //= 2
        self.density_fn, self.resolution, self.step, self.chunk = density_fn, resolution, step, chunk
        self.axis = cell_centres(resolution)
        size = -(-(resolution + 1) // step) * step + 1
        self.values = np.zeros((size,) * 3, np.float32)
        self.known = np.ones((size,) * 3, bool)
        self.known[1 : resolution + 1, 1 : resolution + 1, 1 : resolution + 1] = False
        self.known[::step, ::step, ::step] = True
        self.values[self._coarse] = sample_lattice(density_fn, self.axis[step - 1 :: step], chunk)
        self.queries = (resolution // step) ** 3

    @property
    def _coarse(self) -> tuple[slice, ...]:
        """The coarse points inside the bound: padded indices step, 2*step, ... <= R."""
        return (slice(self.step, self.resolution + 1, self.step),) * 3

    def coarse_values(self) -> np.ndarray:
        """(n,n,n) float32: the queried coarse densities, n = R // step."""
        return self.values[self._coarse]

    def refine(self, level: float) -> None:
        """Fill values down to step 1 (steps 2a-2b); density > level is inside, as for
        PyMCubes."""
        level = np.float64(level)  # a Python float would be compared in float32
        step = self.step
        while step > 1:
            cells = np.argwhere(crossing_cells(self.values[::step, ::step, ::step] > level))
            step //= 2
            self._interpolate(step)
            # The fine cells inside those coarse cells, as flat indices into values.
            self._track(step, level, (self._flat(2 * step * cells)[:, None] + self._corners(step)).ravel())

    def _flat(self, index: np.ndarray) -> np.ndarray:
        """(K,) int64 flat indices into values of index (K,3) int64."""
        size = len(self.values)
        return (index[:, 0] * size + index[:, 1]) * size + index[:, 2]

    def _corners(self, step: int) -> np.ndarray:
        """(8,) int64: flat offsets from a cell of the lattice of this step to its corners."""
        return self._flat(step * CORNERS)

    def _interpolate(self, step: int) -> None:
        """Step 2a: the points of the lattice of this step between those of twice the
        step get the trilinear interpolation, as midpoints along z, then y, then x (the
        last pass, on the most points, then reads and writes whole rows)."""
        fine = self.values[::step, ::step, ::step]
        for axis in (2, 1, 0):
            # Axes after this one are filled already; those before only at even points.
            def at(index: slice) -> tuple[slice, ...]:
                return (slice(None, None, 2),) * axis + (index,) + (slice(None),) * (2 - axis)

            new = fine[at(slice(1, None, 2))]
            np.add(fine[at(slice(None, -1, 2))], fine[at(slice(2, None, 2))], out=new)
            new *= 0.5
        # Restore the zero border, which is known but was interpolated over.
        for axis in range(3):
            self.values[(slice(None),) * axis + (slice(self.resolution + 1, None),)] = 0.0

    def _track(self, step: int, level: float, cells: np.ndarray) -> None:
        """Step 2b on the lattice of this step, from cells (K,) int64: flat indices into
        values of their lowest corners."""
        values, known, corners = self.values.ravel(), self.known.ravel(), self._corners(step)
        while True:
            points = cells[:, None] + corners  # (K,8)
            above = values[points] > level
            points = _distinct(points[above.any(axis=1) & ~above.all(axis=1)].ravel())
            points = points[~known[points]]
            if not len(points):
                return
            self._query(points)
            # Only the cells around the new points can have changed. A new point is
            # inside the bound, so all 8 of its cells exist.
            cells = _distinct((points[:, None] - corners).ravel())

    def _query(self, points: np.ndarray) -> None:
        """Query the points (K,) int64, flat indices into values, inside the bound."""
        xyz = self.axis[np.stack(np.unravel_index(points, self.values.shape), axis=1) - 1]  # (K,3) float32
        self.values.ravel()[points] = np.concatenate(
            [self.density_fn(xyz[start : start + self.chunk]) for start in range(0, len(xyz), self.chunk)]
        )
        self.known.ravel()[points] = True
        self.queries += len(points)


def choose_threshold(samples: np.ndarray, threshold: float | str,
                     opaque_density: float = DEFAULT_OPAQUE_DENSITY) -> tuple[float, tuple[float, float]]:
    """The iso-level and the density range (min, max) of the samples (any shape).

    The level is `threshold` itself or, for "auto", `opaque_density`: the density at which
    the renderer sees an opaque surface (one render sample absorbs half the light). The
    mean-density rule of threestudio puts the surface inside any fog the field holds and
    returns a sponge that fills the cube; this level does not depend on fog. A field that
    never gets that dense is all fog: the level is then its 99.5th percentile of non-empty
    densities, with a warning. Raises EngineError("empty_surface") when the level crosses
    no sample.
    """
    lo, hi = float(samples.min()), float(samples.max())
    level = _auto_level(samples, lo, hi, opaque_density, warn=True) if threshold == "auto" else float(threshold)
    if not lo < level < hi:
        raise _empty_surface(samples, lo, hi, level, opaque_density)
    return level, (lo, hi)


def _auto_level(samples: np.ndarray, lo: float, hi: float, opaque_density: float, warn: bool = False) -> float:
    if lo < opaque_density < hi:
        return opaque_density
    if opaque_density >= hi:
        occupied = samples[samples > AUTO_EPS]
        level = float(np.percentile(occupied, FOG_PERCENTILE)) if occupied.size else lo
        if warn:
            log.warning("the field never becomes opaque (densest %.4g, opaque at %.4g): it is mostly fog, so the "
                        "surface is taken at its %gth percentile density %.4g; train longer for a solid object",
                        hi, opaque_density, FOG_PERCENTILE, level)
    else:
        level = (lo + hi) / 2  # opaque everywhere: the cube itself is the only surface
    # A hard-edged field (0 outside, 10 inside) has no value strictly between: take the middle.
    return level if lo < level < hi else (lo + hi) / 2


def _empty_surface(samples: np.ndarray, lo: float, hi: float, level: float, opaque_density: float) -> EngineError:
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    message = (
        f"no surface at density threshold {level:.4g}: the density in [-1,1]^3 ranges "
        f"from {lo:.4g} to {hi:.4g} (50/90/99th percentiles {p50:.4g}/{p90:.4g}/{p99:.4g})"
    )
    details = {"density_range": (float(lo), float(hi))}
    if hi <= lo:
        hint = (
            f"the density is {hi:.4g} everywhere, so no threshold helps: train longer, "
            "or check that orbit.look_at is the object's centre"
        )
    else:
        suggested = _auto_level(samples, lo, hi, opaque_density)
        hint = (
            f'set "export": {{"threshold": {suggested:.4g}}} in job.json (any value between '
            f'{lo:.4g} and {hi:.4g}; "auto" picks {suggested:.4g})'
        )
        details["suggested_threshold"] = float(suggested)
    return EngineError("empty_surface", message, hint, details)
