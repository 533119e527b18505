"""Density grid over the cube [-1,1]^3 and the iso-level to extract from it."""
from __future__ import annotations

from typing import Callable

import numpy as np

from engine.errors import EngineError

DensityFn = Callable[[np.ndarray], np.ndarray]

# threestudio's "auto" rule ignores densities below this (empty space).
AUTO_EPS = 1e-5


def cell_centres(resolution: int) -> np.ndarray:
    """(R,) float32: the centres of R equal cells along one axis of [-1,1]."""
    return ((np.arange(resolution) + 0.5) * (2.0 / resolution) - 1.0).astype(np.float32)


def sample_density(density_fn: DensityFn, resolution: int, chunk: int) -> np.ndarray:
    """Density at the cell centres, with a border of zeros.

    Returns (R+2, R+2, R+2) float64; grid[i+1, j+1, k+1] is the density at
    (x_i, y_j, z_k) = cell_centres(R)[[i, j, k]], axes in x, y, z order (z up).
    The zero border closes surfaces that touch the bound. float64 because PyMCubes
    works in double and would otherwise convert the whole grid.
    """
    r = resolution
    axis = cell_centres(r)
    yz = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(r * r, 2)
    values = np.empty((r, r * r), np.float64)
    # Each call gets whole x-slabs when they fit in a chunk, else part of one slab;
    # the points are built by broadcasting, with no per-point index arithmetic.
    slabs, rows = max(1, chunk // (r * r)), min(chunk, r * r)
    for i in range(0, r, slabs):
        for m in range(0, r * r, rows):
            x, part = axis[i : i + slabs], yz[m : m + rows]
            points = np.empty((len(x), len(part), 3), np.float32)
            points[..., 0] = x[:, None]
            points[..., 1:] = part
            values[i : i + slabs, m : m + rows] = density_fn(points.reshape(-1, 3)).reshape(len(x), -1)
    return np.pad(values.reshape(r, r, r), 1)


def choose_threshold(grid: np.ndarray, threshold: float | str) -> tuple[float, tuple[float, float]]:
    """The iso-level and the density range (min, max) of the grid.

    The level is `threshold` itself or, for "auto", threestudio's rule: the mean of the
    densities above AUTO_EPS (the mean density of the occupied space).
    grid: (R+2,)*3 from sample_density. Raises EngineError("empty_surface") when the
    level crosses no density in the grid.
    """
    inner = grid[1:-1, 1:-1, 1:-1]
    lo, hi = float(inner.min()), float(inner.max())
    level = _auto_level(inner, lo, hi) if threshold == "auto" else float(threshold)
    if not lo < level < hi:
        raise _empty_surface(inner, lo, hi, level)
    return level, (lo, hi)


def _auto_level(inner: np.ndarray, lo: float, hi: float) -> float:
    occupied = inner[inner > AUTO_EPS]
    level = float(occupied.mean()) if occupied.size else lo
    # A field with one level inside (0 outside, 10 inside) has mean == max, which
    # crosses nothing: take the middle of the range then.
    return level if lo < level < hi else (lo + hi) / 2


def _empty_surface(inner: np.ndarray, lo: float, hi: float, level: float) -> EngineError:
    p50, p90, p99 = np.percentile(inner, [50, 90, 99])
    message = (
        f"no surface at density threshold {level:.4g}: the density in [-1,1]^3 ranges "
        f"from {lo:.4g} to {hi:.4g} (50/90/99th percentiles {p50:.4g}/{p90:.4g}/{p99:.4g})"
    )
    if hi <= lo:
        hint = (
            f"the density is {hi:.4g} everywhere, so no threshold helps: train longer, "
            "or check that orbit.look_at is the object's centre"
        )
    else:
        suggested = _auto_level(inner, lo, hi)
        hint = (
            f'set "export": {{"threshold": {suggested:.4g}}} in job.json (any value between '
            f'{lo:.4g} and {hi:.4g}; "auto" picks {suggested:.4g})'
        )
    return EngineError("empty_surface", message, hint)
