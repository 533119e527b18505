"""Albedo bake: vertex colours, and a UV texture (xatlas unwrap + per-texel queries)."""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import xatlas

AlbedoFn = Callable[[np.ndarray], np.ndarray]

log = logging.getLogger(__name__)

# xatlas gets slow beyond this many faces (measured in docs/BENCHMARKS.md): decimate before unwrapping.
SLOW_UNWRAP_FACES = 300_000
# xatlas slows down sharply as charts grow: capping a chart at this share of the
# surface unwrapped 86k faces in 6 s instead of 48 s and 346k in 92 s instead of
# 704 s (2-core CPU), at a similar texel use.
MAX_CHART_SHARE = 1 / 200
# Seams: filled texels are grown this many texels into empty ones, so bilinear
# filtering and mipmaps at chart borders read the chart's own colour.
SEAM_PADDING = 8
# Texel candidates per rasterisation block, to bound memory at large texture sizes.
RASTER_BLOCK = 1 << 22


def query(fn: AlbedoFn, points: np.ndarray, chunk: int) -> np.ndarray:
    """fn over points (N,3) float32 in chunks of at most `chunk`; returns (N,3) float32."""
    out = np.empty((len(points), 3), np.float32)
    for start in range(0, len(points), chunk):
        out[start : start + chunk] = fn(points[start : start + chunk])
    return out


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """Exact sRGB decoding (IEC 61966-2-1), clipped to [0,1]; any shape, float32."""
    c = np.clip(srgb, 0.0, 1.0).astype(np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def vertex_colors(albedo_fn: AlbedoFn, vertices: np.ndarray, chunk: int) -> np.ndarray:
    """(N,3) float32 linear albedo at the vertices (N,3) in object coordinates."""
    return srgb_to_linear(query(albedo_fn, vertices, chunk))


def unwrap(vertices: np.ndarray, faces: np.ndarray, texture_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts packed for a texture_size^2 image with 2-texel gaps between charts,
    each chart at most MAX_CHART_SHARE of the surface.

    vertices (N,3), faces (M,3). Returns vmapping (N',) int64 (atlas vertex -> input
    vertex), indices (M,3) int64 (atlas faces, same order as `faces`), uvs (N',2)
    float32 in [0,1], origin bottom-left as in Blender.
    """
    if len(faces) > SLOW_UNWRAP_FACES:
        log.warning("unwrapping %d faces with xatlas will be slow (minutes)", len(faces))
    atlas = xatlas.Atlas()
    atlas.add_mesh(vertices.astype(np.float32), faces.astype(np.uint32))
    corners = vertices[faces].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1).sum()
    charts = xatlas.ChartOptions()
    charts.max_chart_area = MAX_CHART_SHARE * area
    pack = xatlas.PackOptions()
    pack.resolution = texture_size
    pack.padding = 2
    atlas.generate(charts, pack)
    vmapping, indices, uvs = atlas[0]
    return vmapping.astype(np.int64), indices.astype(np.int64), uvs


def rasterise(corner_uvs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Texels of a size^2 image whose centres lie in some UV triangle.

    corner_uvs (M,3,2) in [0,1], origin bottom-left. Returns texel (T,) int64 flat
    indices row*size+col (row 0 = top, so row = (1-v)*size), face (T,) int64 and
    barycentrics (T,3) float32, one entry per texel.
    Each triangle's bounding-box texels are enumerated with np.repeat, then kept by
    a barycentric test; blocks of triangles bound the memory.
    """
    xy = np.stack([corner_uvs[..., 0], 1.0 - corner_uvs[..., 1]], axis=-1) * size
    # Texel (r, c) has its centre at (c + 0.5, r + 0.5).
    lo = np.clip(np.ceil(xy.min(axis=1) - 0.5), 0, size - 1).astype(np.int64)
    hi = np.clip(np.floor(xy.max(axis=1) - 0.5), 0, size - 1).astype(np.int64)
    e1, e2 = xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    width, height = np.maximum(hi - lo + 1, 0).T
    # Triangles with no area in UV space cover no texel.
    counts = np.where(np.abs(det) > 1e-12, width * height, 0)

    texels, faces, barys = [], [], []
    block_of = (np.cumsum(counts) - counts) // RASTER_BLOCK
    for block in np.unique(block_of):
        f_block = np.flatnonzero((block_of == block) & (counts > 0))
        n = counts[f_block]
        face = np.repeat(f_block, n)
        offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        row, col = np.divmod(offset, width[face])
        row += lo[face, 1]
        col += lo[face, 0]
        d = np.stack([col + 0.5, row + 0.5], axis=1) - xy[face, 0]
        b1 = (d[:, 0] * e2[face, 1] - d[:, 1] * e2[face, 0]) / det[face]
        b2 = (e1[face, 0] * d[:, 1] - e1[face, 1] * d[:, 0]) / det[face]
        bary = np.stack([1.0 - b1 - b2, b1, b2], axis=1)
        # A small tolerance so texels on shared edges are not lost between triangles.
        inside = bary.min(axis=1) >= -1e-4
        texels.append(row[inside] * size + col[inside])
        faces.append(face[inside])
        barys.append(bary[inside].astype(np.float32))
    texel, first = np.unique(np.concatenate(texels), return_index=True)
    return texel, np.concatenate(faces)[first], np.concatenate(barys)[first]


def dilate(texture: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Grow filled texels into empty 8-neighbours SEAM_PADDING times (seam padding).

    texture (H,W,3) uint8, filled (H,W) bool. Returns the padded (H,W,3) uint8; each
    new texel is the mean of its filled neighbours.
    """
    colour = texture.astype(np.float32)
    filled = filled.copy()
    h, w = filled.shape
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    for _ in range(SEAM_PADDING):
        c = np.pad(colour, ((1, 1), (1, 1), (0, 0)))
        f = np.pad(filled, 1).astype(np.float32)
        total = sum(c[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in shifts)
        count = sum(f[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in shifts)
        grow = ~filled & (count > 0)
        if not grow.any():
            break
        colour[grow] = total[grow] / count[grow, None]
        filled |= grow
    return np.round(colour).astype(np.uint8)


def bake_texture(
    albedo_fn: AlbedoFn,
    vertices: np.ndarray,
    faces: np.ndarray,
    corner_uvs: np.ndarray,
    size: int,
    chunk: int,
) -> np.ndarray:
    """Albedo texture (size, size, 3) uint8 sRGB, row 0 = top.

    vertices (N,3) object coordinates, faces (M,3), corner_uvs (M,3,2): each covered
    texel queries albedo_fn at the 3D point its UV position maps to; seams padded.
    """
    texel, face, bary = rasterise(corner_uvs, size)
    points = np.einsum("tk,tkc->tc", bary, vertices[faces[face]]).astype(np.float32)
    srgb = np.clip(query(albedo_fn, points, chunk), 0.0, 1.0)
    texture = np.zeros((size * size, 3), np.uint8)
    texture[texel] = np.round(srgb * 255)
    filled = np.zeros(size * size, bool)
    filled[texel] = True
    return dilate(texture.reshape(size, size, 3), filled.reshape(size, size))
