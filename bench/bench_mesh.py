"""Mesh export speed at resolution 256. Prints one JSON object on stdout.

Extraction + vertex bake (export_mesh with texture_size=0, npz only) on (a) an analytic
numpy field and (b) the engine's HashGridField (random init, CPU, queried through
engine.jobs.outputs.field_callables as a job's export does), its density shaped into a ball
so the surface is non-empty while every query pays for the real field. `total_s`
includes the field queries (goal for (b): <= 3 s on 2 CPU cores); `field_s` is the part
spent inside the field callables, `field_us_per_point` its cost per density or albedo
point, `queries` the density points asked for. Each export runs --repeat times and the
fastest is reported: the machine is shared, and the field's two torch threads slow
down many times over when another process takes a core (see load_average_1min).
With --textured, also the textured export (xatlas unwrap + texture_size^2 bake) of a bumpy
analytic ball at --textured-resolution, once undecimated and once decimated to --max-faces.
Run: python bench/bench_mesh.py [--resolution 256] [--coarse-factor 4] [--repeat 3] [--exhaustive]
     [--textured [--textured-resolution 384] [--texture-size 1024] [--max-faces 250000]]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.mesh import export_mesh  # noqa: E402

EXTRACT_STAGES = ("grid", "threshold", "refine", "fill", "marching_cubes", "cleanup", "vertex_colors")


class Timed:
    """Wraps a callable and sums the seconds spent inside it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, points):
        start = time.perf_counter()
        out = self.fn(points)
        self.seconds += time.perf_counter() - start
        return out


def soft_ball(points: np.ndarray) -> np.ndarray:
    """Density 10 inside the ball of radius 0.5, with a soft edge."""
    return (10 / (1 + np.exp((np.linalg.norm(points, axis=1) - 0.5) / 0.02))).astype(np.float32)


def blobs_density(points: np.ndarray) -> np.ndarray:
    """Three overlapping balls and a torus: density 10 inside with a soft edge."""
    x, y, z = points.T
    sdf = np.minimum.reduce([
        np.sqrt(x**2 + y**2 + z**2) - 0.45,
        np.sqrt((x - 0.45) ** 2 + y**2 + (z - 0.3) ** 2) - 0.3,
        np.sqrt((x + 0.4) ** 2 + (y - 0.3) ** 2 + z**2) - 0.25,
        np.sqrt((np.sqrt(x**2 + y**2) - 0.6) ** 2 + (z + 0.3) ** 2) - 0.12,
    ])
    return (10 / (1 + np.exp(sdf / 0.02))).astype(np.float32)


def bumpy_density(points: np.ndarray) -> np.ndarray:
    """A ball of radius 0.6 with bumps 0.05 high every ~0.25: several times a smooth ball's faces."""
    x, y, z = points.T
    sdf = np.sqrt(x**2 + y**2 + z**2) - 0.6 - 0.05 * np.sin(25 * x) * np.sin(25 * y) * np.sin(25 * z)
    return (10 / (1 + np.exp(sdf / 0.01))).astype(np.float32)


def blobs_albedo(points: np.ndarray) -> np.ndarray:
    return (0.5 + 0.5 * np.sin(4 * points)).astype(np.float32)


def hashgrid_field():
    """Density and albedo callables of HashGridField (seed 0); density is
    soft_ball * (1 + 0.1 * field density)."""
    import torch

    from engine.fields import HashGridField
    from engine.jobs.outputs import field_callables

    torch.manual_seed(0)
    field_density, albedo = field_callables(HashGridField().eval(), torch.device("cpu"))
    return lambda points: soft_ball(points) * (1 + 0.1 * field_density(points)), albedo


def bench(density_fn, albedo_fn, resolution: int, coarse_factor: int, repeat: int) -> dict:
    """The fastest of `repeat` exports."""
    return min((export_once(density_fn, albedo_fn, resolution, coarse_factor) for _ in range(repeat)),
               key=lambda report: report["total_s"])


def export_once(density_fn, albedo_fn, resolution: int, coarse_factor: int) -> dict:
    density, albedo = Timed(density_fn), Timed(albedo_fn)
    with tempfile.TemporaryDirectory() as out:
        result = export_mesh(density, albedo, Path(out), resolution=resolution, formats=("npz",),
                             coarse_factor=coarse_factor)
    field_s = density.seconds + albedo.seconds
    return {
        "total_s": round(sum(result.timings[s] for s in EXTRACT_STAGES), 3),
        "field_s": round(field_s, 3),
        "field_us_per_point": round(field_s / (result.queries + result.n_vertices) * 1e6, 2),
        "queries": result.queries,
        "query_fraction": round(result.queries / resolution**3, 4),
        "faces": result.n_faces,
        "vertices": result.n_vertices,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }


def textured_once(density_fn, albedo_fn, resolution: int, texture_size: int, max_faces: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        result = export_mesh(density_fn, albedo_fn, Path(out), resolution=resolution, formats=("npz",),
                             texture_size=texture_size, max_faces=max_faces)
    return {"max_faces": max_faces, "faces": result.n_faces, "total_s": round(sum(result.timings.values()), 2),
            "timings_s": {k: round(v, 2) for k, v in result.timings.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--coarse-factor", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exhaustive", action="store_true", help="also time coarse_factor=1 on the analytic field")
    parser.add_argument("--textured", action="store_true", help="also time textured exports with and without decimation")
    parser.add_argument("--textured-resolution", type=int, default=384)
    parser.add_argument("--texture-size", type=int, default=1024)
    parser.add_argument("--max-faces", type=int, default=250_000)
    args = parser.parse_args()
    hash_density, hash_albedo = hashgrid_field()
    report = {
        "resolution": args.resolution,
        "coarse_factor": args.coarse_factor,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "analytic": bench(blobs_density, blobs_albedo, args.resolution, args.coarse_factor, args.repeat),
        "hashgrid": bench(hash_density, hash_albedo, args.resolution, args.coarse_factor, args.repeat),
    }
    if args.exhaustive:
        report["analytic_exhaustive"] = bench(blobs_density, blobs_albedo, args.resolution, 1, 1)
    if args.textured:
        report["textured"] = [textured_once(bumpy_density, blobs_albedo, args.textured_resolution, args.texture_size, m)
                              for m in (0, args.max_faces)]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
