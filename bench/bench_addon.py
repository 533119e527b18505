"""Add-on benchmark: prints one JSON object.

- import_500k: result/mesh.npz with 500k triangles and vertex colours -> a Blender object
  (load_npz + mesh, colour attribute, material), goal <= 1 s.
- timer_tick: one call of the add-on's timer callback while a (fake) engine streams
  progress, preview images and 50k-triangle preview meshes, goal <= 20 ms. Reported with
  and without the ticks that rebuild the preview mesh (one tick in many).

    /root/.cache/text3d/blender-venv/bin/python bench/bench_addon.py
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FAKE_ROOT = REPO / "tests" / "addon" / "fake_engine"
sys.path.insert(0, str(REPO))


def grid_mesh(n: int) -> dict[str, np.ndarray]:
    """An n x n quad grid as 2*n*n triangles over a bumpy surface, with smooth colours."""
    u, v = np.meshgrid(np.linspace(-1, 1, n + 1, dtype=np.float32), np.linspace(-1, 1, n + 1, dtype=np.float32))
    z = 0.2 * np.sin(4 * u) * np.cos(4 * v)
    vertices = np.stack([u, v, z], -1).reshape(-1, 3)
    i = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]
    a, b, c, d = i, i + 1, i + n + 1, i + n + 2
    faces = np.stack([np.stack([a, b, d], -1), np.stack([a, d, c], -1)], -2).reshape(-1, 3).astype(np.int32)
    colors = np.clip(vertices * 0.5 + 0.5, 0, 1).astype(np.float32)
    return {"vertices": vertices, "faces": faces, "vertex_colors": colors}


def bench_import(tmp: Path, repeats: int = 3) -> dict:
    import bpy

    from blender_text3d import importer

    path = tmp / "mesh.npz"
    data = grid_mesh(500)  # 500k triangles, 251k vertices
    np.savez(path, **data)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        obj = importer.new_object("bench", importer.load_npz(path), bpy.context.scene.collection)
        times.append(time.perf_counter() - t0)
        importer.remove_object(obj)
    return {"triangles": len(data["faces"]), "vertices": len(data["vertices"]), "seconds_min": round(min(times), 3),
            "seconds_mean": round(statistics.mean(times), 3), "goal_s": 1.0}


def bench_tick(tmp: Path) -> dict:
    from blender_text3d import api, jobs

    # ~50k triangles per preview mesh: what the engine's 64^3 preview grid gives.
    os.environ["TEXT3D_FAKE_ENGINE"] = json.dumps({"step_s": 0.005, "preview_segments": 224})
    handle = api.generate("a benchmark chair", engine_python=sys.executable, engine_root=FAKE_ROOT, jobs_dir=tmp,
                          steps=2000, render_size=32, mesh_resolution=32, device="cpu", live_preview=True)
    plain, with_mesh, events = [], [], 0
    while not handle.done:
        step_before = handle._job.preview_mesh_step
        t0 = time.perf_counter()
        jobs.timer_callback()
        elapsed_ms = (time.perf_counter() - t0) * 1000
        (with_mesh if handle._job.preview_mesh_step != step_before else plain).append(elapsed_ms)
        time.sleep(jobs.TICK_S)
    events = len((handle.job_dir / "events.jsonl").read_text().splitlines())
    every = plain + with_mesh
    return {"ticks": len(every), "events": events, "mean_ms": round(statistics.mean(every), 2),
            "p95_ms": round(float(np.percentile(every, 95)), 2), "max_ms": round(max(every), 2),
            "max_ms_without_preview_mesh": round(max(plain), 2),
            "preview_mesh_ticks": len(with_mesh), "preview_mesh_triangles": 2 * 224 * 111,
            "status": handle.status, "goal_ms": 20.0}


def main() -> None:
    import bpy  # before addon_utils, which only exists inside Blender's Python

    import addon_utils

    addon_utils.enable("blender_text3d", default_set=False)
    with tempfile.TemporaryDirectory(prefix="text3d-bench-") as tmp:
        result = {"blender": bpy.app.version_string, "import_500k": bench_import(Path(tmp)),
                  "timer_tick": bench_tick(Path(tmp))}
    addon_utils.disable("blender_text3d", default_set=False)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
