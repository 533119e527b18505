"""What a job writes besides events and checkpoints: previews, preview meshes, the final mesh and metrics.

Shared by the run loop (engine/jobs/run.py) and the offline commands (engine/jobs/offline.py);
everything reads the method's Scene (engine/methods/base.py), never a method's attributes.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from ..cameras import camera_rays, focal_from_fov, orbit_views
from ..captures import ObjectFrame, text_object_frame
from ..errors import EngineError
from ..mesh import export_mesh
from ..methods.base import Scene
from ..render import composite
from ..render.image import render_pixels
from ..render.volume import RenderOutput
from .images import save_png

log = logging.getLogger("engine.outputs")


def render_scene_rays(scene: Scene, origins: torch.Tensor, dirs: torch.Tensor, samples_per_ray: int, focal: float,
                      chunk: int = 16384) -> RenderOutput:
    """(R,3) origins and unit directions -> per-ray rgb (R,3), opacity (R,), depth (R,), without gradients:
    the scene's own renderer when it has one, else volume rendering of its field (focal in pixels sets
    each sample's footprint)."""
    with torch.no_grad():
        if scene.render is None:
            return render_pixels(scene.field, origins, dirs, samples_per_ray, focal, chunk=chunk)
        pieces = [scene.render(origins[i:i + chunk], dirs[i:i + chunk], focal) for i in range(0, len(origins), chunk)]
        return RenderOutput(torch.cat([p.rgb for p in pieces]), torch.cat([p.opacity for p in pieces]),
                            torch.cat([p.depth for p in pieces]))


def preview_camera(spec):
    """The fixed view of previews: 30 degrees right of the front, at the orbit's middle."""
    mid = [(lo + hi) / 2 for lo, hi in (spec.orbit.elevation_deg, spec.orbit.radius, spec.orbit.fov_deg)]
    return orbit_views(30.0, *mid)


def write_preview(scene: Scene, spec, job_dir: Path, step: int, device) -> str:
    """Render the preview view over white into previews/step_NNNNNN.png; returns the relative path."""
    view, size = preview_camera(spec), spec.render.size
    focal = focal_from_fov(float(view.fov_deg[0]), size)
    origins, dirs = camera_rays(view.c2w[0].to(device), focal, size, size)
    out = render_scene_rays(scene, origins, dirs, spec.render.samples_per_ray, focal, chunk=8192)
    image = composite(out.rgb.reshape(size, size, 3), out.opacity.reshape(size, size), torch.ones(3, device=device))
    rel = f"previews/step_{step:06d}.png"
    save_png(image, job_dir / rel)
    return rel


def opaque_density(spec) -> float:
    """The density one render sample sees as half opaque, 1 - exp(-sigma * delta) = 1/2, with the
    sample spacing delta = 2 / samples_per_ray of a ray through the cube's centre: export's "auto" level."""
    return math.log(2) * spec.render.samples_per_ray / 2


def field_callables(field, device, chunk: int = 65536):
    """numpy -> numpy density and albedo functions of a field callable, for the mesh exporter.

    points (N,3) float32 object space -> density (N,) and albedo (N,3) in [0,1], queried in chunks."""

    def query(points: np.ndarray):
        outs = []
        with torch.no_grad():
            for i in range(0, len(points), chunk):
                outs.append(field(torch.from_numpy(np.ascontiguousarray(points[i:i + chunk], dtype=np.float32)).to(device)))
        return outs

    def density_fn(points):
        return np.concatenate([o.density.float().cpu().numpy() for o in query(points)])

    def albedo_fn(points):
        return np.concatenate([o.albedo.float().cpu().numpy() for o in query(points)])

    return density_fn, albedo_fn


def write_json(path: Path, data: dict) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def write_preview_mesh(scene: Scene, spec, job_dir: Path, step: int, device, frame: ObjectFrame) -> str | None:
    """A coarse mesh for the add-on's live preview; None while the scene has no surface yet."""
    density_fn, albedo_fn = field_callables(scene.field, device)
    name = f"mesh_step_{step:06d}"
    try:
        export_mesh(density_fn, albedo_fn, job_dir / "previews", resolution=min(64, spec.export.resolution),
                    threshold=spec.export.threshold, texture_size=0, formats=("npz",),
                    offset=frame.offset, scale=frame.scale, name=name, opaque_density=opaque_density(spec))
    except EngineError as e:
        log.info("no preview mesh at step %d: %s", step, e.message)
        return None
    return f"previews/{name}.npz"


def export_result(scene: Scene, spec, job_dir: Path, device, export=None, frame: ObjectFrame | None = None
                  ) -> dict[str, str]:
    """Extract and bake the final mesh into result/; returns artifact kind -> relative path.

    export: an ExportConfig (default: the job's); frame: the run's ObjectFrame (default: the cube around
    orbit.look_at). Raises EngineError("empty_surface") when nothing reaches the threshold."""
    export = export or spec.export
    frame = frame or text_object_frame(spec.orbit.look_at)
    density_fn, albedo_fn = field_callables(scene.field, device)
    result = export_mesh(density_fn, albedo_fn, job_dir / "result", resolution=export.resolution,
                         threshold=export.threshold, texture_size=export.texture_size, formats=export.formats,
                         offset=frame.offset, scale=frame.scale, opaque_density=opaque_density(spec),
                         max_faces=export.max_faces)
    log.info("mesh: %d vertices, %d faces, threshold %.4g, %s", result.n_vertices, result.n_faces,
             result.threshold, {k: round(v, 2) for k, v in result.timings.items()})
    kinds = {"npz": "mesh", "glb": "glb"}
    return {kinds[fmt]: str(Path(path).relative_to(job_dir)) for fmt, path in result.paths.items() if fmt in kinds}
