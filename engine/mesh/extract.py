"""Marching cubes on the density grid, and removal of small floating pieces."""
from __future__ import annotations

import mcubes
import numpy as np


def marching_cubes(grid: np.ndarray, level: float, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of a padded grid from grid.DensityGrid, in object coordinates.

    grid: (G,G,G) float32, G >= resolution+2, zero border. Returns vertices (N,3) float32
    in [-1,1]^3 (up to half a cell outside where the surface closes on the zero border)
    and faces (M,3) int64, wound counter-clockwise seen from outside (density is higher
    inside). PyMCubes visits every cube (~1 s at 256^3), so it only gets the box around
    the points above the level, grown by one point: every cube the surface crosses.
    """
    above = grid > np.float64(level)  # a Python float would be compared in float32
    box = []
    for axis in range(3):
        hit = np.flatnonzero(above.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(hit[0] - 1, 0), hit[-1] + 2))
    # PyMCubes works in double.
    index_coords, faces = mcubes.marching_cubes(np.ascontiguousarray(grid[tuple(box)], np.float64), level)
    # Padded index p sits at cell centre p-1, i.e. at -1 + (p - 0.5) * cell.
    start = np.array([s.start for s in box], np.float64)
    vertices = (-1.0 + (index_coords + start - 0.5) * (2.0 / resolution)).astype(np.float32)
    return vertices, faces.astype(np.int64)


def fill_cavities(grid: np.ndarray, level: float, close: int = 0) -> int:
    """Fill, in place, the empty space that no path of empty cells links to the outside; returns the cells filled.

    A reconstruction never sees inside a solid object, so its density there is whatever the
    optimiser left: membranes and bubbles that marching cubes turns into hidden surfaces (most
    of the faces of a fitted box). Filling the enclosed empty space above the level leaves only
    what can be seen. close: cells of a morphological closing first, so gaps up to 2*close
    cells wide in a speckled shell do not let the outside in (0 = none).
    grid: (G,G,G) with an empty border, as marching_cubes takes it.
    """
    solid = grid > np.float64(level)
    if not solid.any():
        return 0
    # Only the box around the solid (with room for the closing and one empty layer) can hold a
    # cavity: everything outside it is outside, which makes this a fraction of the whole grid.
    box = []
    for axis in range(3):
        hit = np.flatnonzero(solid.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(max(hit[0] - close - 1, 0), min(hit[-1] + close + 2, grid.shape[axis])))
    box = tuple(box)
    empty = ~solid[box]
    if close:
        # The outside of the solid grown by `close`, then grown back by `close` (a closing).
        outside = _dilate(_reachable(~_dilate(~empty, close)), close) & empty
    else:
        outside = _reachable(empty)
    cavities = empty & ~outside
    grid[box][cavities] = np.float32(level) * 2 + 1
    return int(cavities.sum())


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """(G,G,G) bool grown by r cells along each axis (a cube's dilation is separable)."""
    out = mask.copy()
    for axis in range(3):
        grown = out.copy()
        for shift in range(1, r + 1):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(shift, None), slice(None, -shift)
            grown[tuple(lo)] |= out[tuple(hi)]
            grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


def _reachable(empty: np.ndarray) -> np.ndarray:
    """(G,G,G) bool: the empty cells a path of empty cells links to the grid's border.

    Reachability spreads along whole runs of empty cells per axis in one pass (a run touched
    anywhere is reached everywhere), so a few sweeps over x, y, z reach every bend.
    """
    reach = np.zeros_like(empty)
    reach[0], reach[-1], reach[:, 0], reach[:, -1], reach[:, :, 0], reach[:, :, -1] = (
        empty[0], empty[-1], empty[:, 0], empty[:, -1], empty[:, :, 0], empty[:, :, -1])
    count = int(reach.sum())
    while True:
        for axis in range(3):
            e = np.moveaxis(empty, axis, -1)
            r = np.moveaxis(reach, axis, -1)
            lines_e, lines_r = e.reshape(-1, e.shape[-1]), r.reshape(-1, r.shape[-1])
            starts = lines_e.copy()
            starts[:, 1:] &= ~lines_e[:, :-1]
            ids = np.cumsum(starts.ravel()).reshape(lines_e.shape) * lines_e  # run number, 0 = not empty
            hit = np.zeros(int(ids.max()) + 1, bool)
            hit[ids[lines_r]] = True
            hit[0] = False
            reach = np.moveaxis(hit[ids].reshape(e.shape), -1, axis)
        new = int(reach.sum())
        if new == count:
            return reach
        count = new


def face_components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """(M,) int64 component label of each face; faces sharing a vertex share a label.

    Union-find without a loop over faces: every round hooks the larger root of each
    edge onto the smaller (np.minimum.at), then pointer jumping flattens every tree,
    so parent[v] <= v always holds and no cycle can form.
    """
    a = faces.ravel()
    b = np.roll(faces, 1, axis=1).ravel()
    parent = np.arange(n_vertices)
    while True:
        pa, pb = parent[a], parent[b]
        differ = pa != pb
        if not differ.any():
            return parent[faces[:, 0]]
        np.minimum.at(parent, np.maximum(pa, pb)[differ], np.minimum(pa, pb)[differ])
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


def remove_floaters(
    vertices: np.ndarray, faces: np.ndarray, keep_fraction: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop components with fewer faces than keep_fraction of the largest one.

    vertices (N,3), faces (M,3) int64. Returns vertices (N',3), faces (M',3) indexing
    them compactly (order kept), and the number of components removed.
    """
    labels = face_components(faces, len(vertices))
    sizes = np.bincount(labels, minlength=len(vertices))
    kept = sizes >= keep_fraction * sizes.max()
    faces = faces[kept[labels]]
    used = np.zeros(len(vertices), bool)
    used[faces] = True
    new_index = np.cumsum(used) - 1
    return vertices[used], new_index[faces], int(np.count_nonzero(sizes[~kept]))


def decimate(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse simplification (Garland-Heckbert, fast-simplification) to about max_faces.

    vertices (N,3) float32, faces (M,3) int64 -> the same, fewer; winding kept. Vertices no
    face uses any more are dropped.
    """
    import fast_simplification

    v, f = fast_simplification.simplify(vertices.astype(np.float64), faces.astype(np.int32), target_count=max_faces)
    used = np.zeros(len(v), bool)
    used[f] = True
    new_index = np.cumsum(used) - 1
    return v[used].astype(np.float32), new_index[f].astype(np.int64)
