"""Commands that read a job's latest checkpoint without optimising: render and re-export."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..cameras import camera_rays, focal_from_fov, turntable
from ..captures import ObjectFrame
from ..errors import EngineError
from ..methods import METHODS
from ..render import composite
from ..render.image import render_pixels
from ..spec import ExportConfig, load_job
from .checkpoint import load_checkpoint, read_checkpoint_meta
from .images import save_png
from .run import export_result, object_frame, pick_device


def load_field(job_dir: Path, device_name: str | None = None):
    """The job's spec, its field restored from the latest checkpoint, the device and the object frame."""
    spec = load_job(job_dir)
    meta = read_checkpoint_meta(job_dir)
    if meta is None:
        raise EngineError("invalid_job", f"{job_dir} has no checkpoint yet",
                          "run the job first (checkpoints are written on checkpoint_every, on cancel and at the end)")
    device = pick_device(device_name or spec.device)
    field = METHODS[spec.method].make_field(spec).to(device)
    load_checkpoint(job_dir, {"field": field}, None, device)
    field.eval()
    # Checkpoints before capture methods had no frame: the cube around look_at.
    frame = ObjectFrame.from_dict(meta["object_frame"]) if meta.get("object_frame") else object_frame(spec)
    return spec, field, device, frame


def read_cameras(path: Path, cube: ObjectFrame) -> list[dict]:
    """transforms.json (world cameras) -> per frame: c2w (object space), width, height, fx, fy, cx, cy, name.

    Intrinsics as `camera_angle_x` or `fl_x, fl_y, cx, cy, w, h`, per file or per frame.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    frames = data.get("frames")
    if not frames:
        raise EngineError("invalid_job", f"{path}: no frames", "give a transforms.json with a non-empty 'frames' list")
    cams = []
    for i, frame in enumerate(frames):
        get = lambda k, default=None: frame.get(k, data.get(k, default))  # noqa: E731 - per-frame overrides
        m = torch.tensor(frame.get("transform_matrix"), dtype=torch.float32)
        if m.shape != (4, 4) or not torch.isfinite(m).all():
            raise EngineError("invalid_job", f"{path}: frames[{i}].transform_matrix is not a finite 4x4 matrix",
                              "fix the camera matrix")
        m = cube.c2w_to_object(m)
        w, h = int(get("w", 0) or 0), int(get("h", 0) or 0)
        if get("fl_x") is not None:
            fx = float(get("fl_x"))
            fy = float(get("fl_y", fx))
        elif get("camera_angle_x") is not None:
            fx = fy = None  # from the angle once the width is known
        else:
            raise EngineError("invalid_job", f"{path}: frames[{i}] has no intrinsics",
                              "give camera_angle_x or fl_x/fl_y/cx/cy/w/h")
        cams.append({"c2w": m, "w": w, "h": h, "fx": fx, "fy": fy, "cx": get("cx"), "cy": get("cy"),
                     "angle": get("camera_angle_x"), "name": Path(str(frame.get("file_path", f"frame_{i:03d}"))).stem})
    return cams


def render_command(job_dir: Path, out_dir: Path, cameras: Path | None, turntable_n: int | None,
                   size: int | None, background: str) -> dict:
    """Render the job's field; writes PNGs and the transforms.json of what was rendered."""
    spec, field, device, frame = load_field(job_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cameras is not None:
        cams = read_cameras(cameras, frame)
    else:
        views = turntable(spec.orbit, turntable_n or 36)
        cams = [{"c2w": views.c2w[i], "w": 0, "h": 0, "fx": None, "fy": None, "cx": None, "cy": None,
                 "angle": math.radians(float(views.fov_deg[i])), "name": f"turntable_{i:03d}"} for i in range(len(views.c2w))]
    frames = []
    for cam in cams:
        w = size or cam["w"] or spec.render.size * 4
        h = (round(cam["h"] * w / cam["w"]) if cam["w"] and cam["h"] else w)
        scale = w / cam["w"] if cam["w"] else 1.0
        fx = cam["fx"] * scale if cam["fx"] else focal_from_fov(math.degrees(cam["angle"]), w)
        fy = cam["fy"] * scale if cam["fy"] else fx
        cx = float(cam["cx"]) * scale if cam["cx"] is not None else w / 2
        cy = float(cam["cy"]) * scale if cam["cy"] is not None else h / 2
        origins, dirs = camera_rays(cam["c2w"].to(device), fx, w, h, cx, cy, focal_y=fy)
        with torch.no_grad():
            out = render_pixels(field, origins, dirs, spec.render.samples_per_ray, fx, chunk=16384)
        rgb, alpha = out.rgb.reshape(h, w, 3), out.opacity.reshape(h, w)
        if background == "transparent":
            image = torch.cat([rgb / alpha.clamp(min=1e-6)[..., None], alpha[..., None]], dim=-1)
        else:
            image = composite(rgb, alpha, torch.full((3,), 1.0 if background == "white" else 0.0, device=device))
        file_name = f"{cam['name']}.png"
        save_png(image, out_dir / file_name)
        world = frame.c2w_to_world(cam["c2w"])
        frames.append({"file_path": file_name, "transform_matrix": world.tolist(), "fl_x": fx, "fl_y": fy,
                       "cx": cx, "cy": cy, "w": w, "h": h})
    transforms = {"camera_model": "PINHOLE", "frames": frames}
    (out_dir / "transforms.json").write_text(json.dumps(transforms, indent=1), encoding="utf-8")
    return {"images": len(frames), "out": str(out_dir)}


def export_command(job_dir: Path, resolution: int | None, threshold, texture_size: int | None) -> dict:
    """Re-extract result/ from the latest checkpoint, e.g. with another threshold."""
    spec, field, device, frame = load_field(job_dir)
    e = spec.export
    export = ExportConfig(resolution=resolution or e.resolution, threshold=e.threshold if threshold is None else threshold,
                          texture_size=e.texture_size if texture_size is None else texture_size, formats=e.formats,
                          max_faces=e.max_faces)
    export.validate("export")
    return export_result(field, spec, job_dir, device, export, frame)
