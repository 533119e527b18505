"""Mesh export speed at resolution 256. Prints one JSON object on stdout.

Fields: a cheap analytic one (numpy) and a small torch MLP standing in for a trained
field. Field time is measured around the callables and reported apart, so
`extract_and_vertex_bake_s` is the export's own cost (goal: <= 3 s on 2 CPU cores).
Run: python bench/bench_mesh.py [--resolution 256] [--texture-size 1024]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.mesh import export_mesh  # noqa: E402

EXTRACT_STAGES = ("grid", "threshold", "marching_cubes", "cleanup", "vertex_colors")


class Timed:
    """Wraps a callable and sums the seconds spent inside it."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, points):
        start = time.perf_counter()
        out = self.fn(points)
        self.seconds += time.perf_counter() - start
        return out


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


def blobs_albedo(points: np.ndarray) -> np.ndarray:
    return (0.5 + 0.5 * np.sin(4 * points)).astype(np.float32)


def mlp_field(seed: int = 0):
    """A 3 -> frequency encoding (6 octaves) -> 64 -> 64 -> 4 MLP, as density and albedo
    callables; the density is shaped into a ball so the surface is non-empty."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    net = torch.nn.Sequential(
        torch.nn.Linear(3 + 36, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)
    ).eval()
    freqs = 2.0 ** torch.arange(6) * torch.pi

    @torch.no_grad()
    def run(points: np.ndarray):
        p = torch.from_numpy(points)
        angles = (p[:, :, None] * freqs).reshape(len(p), -1)
        return net(torch.cat([p, angles.sin(), angles.cos()], dim=1))

    def density(points):
        out = run(points)
        sdf = np.linalg.norm(points, axis=1) - 0.5 + 0.05 * out[:, 0].numpy()
        return (10 / (1 + np.exp(sdf / 0.02))).astype(np.float32)

    def albedo(points):
        return torch.sigmoid(run(points)[:, 1:]).numpy()

    return density, albedo


def bench(density_fn, albedo_fn, resolution: int, texture_size: int = 0) -> dict:
    density, albedo = Timed(density_fn), Timed(albedo_fn)
    with tempfile.TemporaryDirectory() as out:
        result = export_mesh(density, albedo, Path(out), resolution=resolution, texture_size=texture_size)
    extract = sum(result.timings[s] for s in EXTRACT_STAGES)
    report = {
        "faces": result.n_faces,
        "vertices": result.n_vertices,
        "field_s": round(density.seconds + albedo.seconds, 3),
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
    }
    if texture_size:
        report["textured_total_s"] = round(sum(result.timings.values()), 3)
    else:
        # The albedo field is only called for vertex colours here.
        report["extract_and_vertex_bake_s"] = round(extract - density.seconds - albedo.seconds, 3)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--texture-size", type=int, default=1024)
    args = parser.parse_args()
    mlp_density, mlp_albedo = mlp_field()
    report = {
        "resolution": args.resolution,
        "analytic": bench(blobs_density, blobs_albedo, args.resolution),
        "mlp": bench(mlp_density, mlp_albedo, args.resolution),
        f"analytic_textured_{args.texture_size}": bench(blobs_density, blobs_albedo, args.resolution, args.texture_size),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
