"""Mesh export: density grid -> marching cubes -> floater removal -> albedo bake -> npz / glb.

The engine passes the field as plain numpy callables, so this package knows nothing
about fields or torch.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import EngineError
from engine.mesh.bake import AlbedoFn, bake_texture, unwrap, vertex_colors
from engine.mesh.extract import decimate, fill_cavities, marching_cubes, remove_floaters
from engine.mesh.grid import DEFAULT_OPAQUE_DENSITY, DensityFn, DensityGrid, choose_threshold
from engine.mesh.io import png_bytes, vertex_normals, write_glb, write_npz

log = logging.getLogger("engine.mesh")

FORMATS = ("npz", "glb")


@dataclass(frozen=True)
class ExportResult:
    """What export_mesh wrote and how long each stage took."""

    paths: dict[str, Path]
    """Written file per format: "npz", "glb", and "png" (the texture) when textured."""
    n_vertices: int
    """Vertices in mesh.npz."""
    n_faces: int
    """Triangles in mesh.npz."""
    threshold: float
    """The density iso-level actually used."""
    density_range: tuple[float, float]
    """(min, max) density over the coarse lattice, which the threshold is chosen from."""
    timings: dict[str, float]
    """Seconds per stage, in order: grid (the coarse lattice), threshold, refine (the
    finer lattices), fill (enclosed empty space), marching_cubes, cleanup, [decimate], vertex_colors,
    [unwrap, texture], write."""
    components_removed: int
    """Floating pieces dropped."""
    queries: int
    """Points density_fn was asked for: resolution^3 with coarse_factor=1, a few percent
    of it for a typical object otherwise."""


def export_mesh(
    density_fn: DensityFn,
    albedo_fn: AlbedoFn,
    out_dir: Path,
    resolution: int = 256,
    threshold: float | str = "auto",
    texture_size: int = 0,
    formats: tuple[str, ...] = FORMATS,
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scale: float = 1.0,
    chunk: int = 262144,
    keep_fraction: float = 0.05,
    name: str = "mesh",
    coarse_factor: int = 4,
    opaque_density: float = DEFAULT_OPAQUE_DENSITY,
    max_faces: int = 0,
) -> ExportResult:
    """Extract the field's surface in [-1,1]^3 and write it into out_dir.

    density_fn: (N,3) float32 object-space points -> (N,) float32 density >= 0.
    albedo_fn: (N,3) float32 -> (N,3) float32 sRGB albedo in [0,1].
    Both are called with at most `chunk` points. resolution: grid cells per axis.
    threshold: density iso-level or "auto" (opaque_density, the density the renderer sees as
    opaque; see grid.choose_threshold). texture_size: 0 for vertex colours only,
    else also a texture_size^2 UV texture. offset (metres, kept in float64), scale: where the object
    cube sits in the world (orbit.look_at and 1, or a capture's ObjectFrame). Written vertices are
    float32 object * scale, relative to the offset, which is written beside them (mesh.npz's
    `offset`, mesh.glb's node translation): world = vertices + offset in float64. Adding it here in
    float32 would snap a georeferenced mesh (y = 5.4e6 m) to a 0.5 m grid. keep_fraction: components with
    fewer faces than this fraction of the largest are dropped. coarse_factor: a power
    of two; the density is queried on every coarse_factor-th lattice point (at least
    grid.MIN_COARSE_CELLS per axis), then only near the surface (grid.DensityGrid);
    1 queries all resolution^3 points. max_faces: a larger mesh is decimated (quadric edge
    collapse) to about this many triangles before it is coloured and unwrapped; 0 = never.
    Raises EngineError("empty_surface") when the threshold crosses no coarse density; files
    are written whole or not at all.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown mesh formats {unknown}; known: {list(FORMATS)}")
    timings: dict[str, float] = {}
    last = time.perf_counter()

    def done(stage: str) -> None:
        nonlocal last
        now = time.perf_counter()
        timings[stage], last = now - last, now

    # 1. Sample the density on the coarse lattice.
    grid = DensityGrid(density_fn, resolution, coarse_factor, chunk)
    done("grid")

    # 2. Choose the iso-level from it; an empty surface stops here, before any fine
    #    query and before any file exists.
    level, density_range = choose_threshold(grid.coarse_values(), threshold, opaque_density)
    done("threshold")

    # 3. Query the finer lattices near the surface, then marching cubes.
    grid.refine(level)
    queries = grid.queries
    done("refine")
    # Close gaps of up to ~1/32 of the cube in the object's shell before filling what it encloses.
    filled = fill_cavities(grid.values, level, close=max(1, resolution // 64))
    if filled:
        log.info("filled %d enclosed empty cells (hidden inside the object)", filled)
    done("fill")
    vertices, faces = marching_cubes(grid.values, level, resolution)
    del grid
    done("marching_cubes")
    if not len(faces):
        # The coarse lattice crossed the level, the fine one nowhere (a fog whose few denser cells the
        # enclosed-space fill swallowed, or a surface thinner than a coarse cell): stop before any file exists.
        raise EngineError("empty_surface", f"no surface at density threshold {level:.4g} at resolution {resolution}",
                          "export at another resolution, give export.threshold, or train longer for a solid object")

    # 4. Drop floaters.
    vertices, faces, removed = remove_floaters(vertices, faces, keep_fraction)
    done("cleanup")

    # 4b. Decimate: xatlas and Blender both slow down past a few hundred thousand faces, and the
    #     texture bake keeps the colour detail the dropped vertices would have carried.
    if max_faces and len(faces) > max_faces:
        before = len(faces)
        vertices, faces = decimate(vertices, faces, max_faces)
        log.info("decimated %d -> %d faces", before, len(faces))
        done("decimate")

    # 5. Vertex colours (linear, as Blender's colour attributes and glTF's COLOR_0 are).
    colors = vertex_colors(albedo_fn, vertices, chunk)
    done("vertex_colors")

    # 6. UV texture: unwrap, then query the albedo per texel. xatlas keeps the face
    #    order, so atlas face f is faces[f] with its vertices split at seams.
    if texture_size:
        vmapping, atlas_faces, atlas_uvs = unwrap(vertices, faces, texture_size)
        corner_uvs = atlas_uvs[atlas_faces]  # (M,3,2)
        done("unwrap")
        texture = bake_texture(albedo_fn, vertices, faces, corner_uvs, texture_size, chunk)
        done("texture")

    # 7. Write every file under a temporary name, then rename them all.
    #    The vertices stay relative to the offset (metres, float32 about the object's size); the
    #    offset goes beside them in float64.
    offset = tuple(float(o) for o in offset)
    local = vertices * np.float32(scale)
    normals = vertex_normals(vertices, faces)
    files = {}  # format -> (file name, writer(binary file))
    if texture_size:
        png = png_bytes(texture)
        files["png"] = ("texture.png", lambda f: f.write(png))
        textured = {"uvs": corner_uvs.reshape(-1, 2), "texture": texture}
        glb = lambda f: write_glb(f, local[vmapping], atlas_faces, normals[vmapping], texcoords=atlas_uvs, png=png,
                                  translation=offset)
    else:
        textured = {}
        glb = lambda f: write_glb(f, local, faces, normals, colors=colors, translation=offset)
    if "npz" in formats:
        files["npz"] = (f"{name}.npz", lambda f: write_npz(f, local, faces, colors, offset=offset, **textured))
    if "glb" in formats:
        files["glb"] = (f"{name}.glb", glb)
    paths = _write_all(Path(out_dir), files)
    done("write")

    return ExportResult(
        paths=paths,
        n_vertices=len(vertices),
        n_faces=len(faces),
        threshold=level,
        density_range=density_range,
        timings=timings,
        components_removed=removed,
        queries=queries,
    )


def _write_all(out_dir: Path, files: dict) -> dict[str, Path]:
    """files: format -> (file name, writer(binary file)). Writes each into a temporary
    file in out_dir, then renames them all, so a failure leaves no partial file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        for filename, writer in files.values():
            temps.append(out_dir / f".{filename}.{os.getpid()}.part")
            with open(temps[-1], "wb") as file:
                writer(file)
        for (filename, _), temp in zip(files.values(), temps):
            os.replace(temp, out_dir / filename)
    except BaseException:
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise
    return {fmt: out_dir / filename for fmt, (filename, _) in files.items()}
