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
