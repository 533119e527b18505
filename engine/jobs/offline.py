"""Commands that read a job's latest checkpoint without optimising: render and re-export."""
from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from ..cameras import camera_rays, focal_from_fov, turntable
from .. import captures
from ..captures import ObjectFrame, text_object_frame
from ..errors import EngineError
from ..methods import composition_root, get_card
from ..render import composite
from ..spec import ExportConfig, load_job
from .checkpoint import load_checkpoint, read_checkpoint_meta
from .device import pick_device
from .images import save_png
from .outputs import export_result, render_scene_rays


def load_scene(job_dir: Path, device_name: str | None = None):
    """The job's spec, its Scene restored from the latest checkpoint, the device and the object frame.

    Reads nothing outside JOB_DIR but for checkpoints written before the method's representation was
    recorded (NeRF-Art then rereads its source job's job.json)."""
    spec = load_job(job_dir)
    meta = read_checkpoint_meta(job_dir)
    if meta is None:
        raise EngineError("invalid_job", f"{job_dir} has no checkpoint yet",
                          "run the job first (checkpoints are written on checkpoint_every, on cancel and at the end)")
    try:
        device = pick_device(device_name or spec.device)
    except EngineError as e:  # a job made on a GPU machine, rendered or exported on a laptop
        hint = ("give --device auto, or one of those" if device_name else
                'give this command --device auto (or one of those); job.json "device" is the run\'s')
        raise EngineError(e.kind, e.message, hint) from None
    scene = composition_root(get_card(spec.method)).make_scene(spec, meta.get("representation"))
    for module in scene.modules.values():
        module.to(device).eval()
    load_checkpoint(job_dir, scene.modules, None, device)
    # Checkpoints before capture methods had no frame: the cube around look_at.
    frame = ObjectFrame.from_dict(meta["object_frame"]) if meta.get("object_frame") else text_object_frame(spec.orbit.look_at)
    return spec, scene, device, frame


def read_cameras(path: Path, cube: ObjectFrame) -> list[dict]:
    """transforms.json (world cameras) -> per frame: c2w (object space), w, h, fx, fy, cx, cy, angle, angle_y, name,
    distortion (k1, k2, k3, k4, p1, p2), fisheye.

    path: what `engine capture` takes, a capture folder (its transforms.json, else NeRF-synthetic
    transforms_train.json) or a transforms JSON file. Read and checked by captures.read_cameras
    (capture_invalid naming the path, frame and key), without images: only that one file (not a
    NeRF-synthetic test file beside it). Values are the file's, per frame: w, h (0 where it has none),
    fx, fy = fl_x, fl_y (None: from angle, angle_y = camera_angle_x, _y), cx, cy (None: the centre);
    render_command scales them to the render size.
    """
    return _camera_dicts(captures.read_cameras(path, test_file=False), cube)


def _camera_dicts(read: captures.Cameras, cube: ObjectFrame) -> list[dict]:
    c2w = cube.c2w_to_object(read.c2w)
    return [{"c2w": c2w[i], "w": cam.width or 0, "h": cam.height or 0, "fx": cam.fl_x, "fy": cam.fl_y,
             "cx": cam.cx, "cy": cam.cy, "angle": cam.angle_x, "angle_y": cam.angle_y, "name": cam.name,
             "distortion": cam.distortion, "fisheye": cam.fisheye}
            for i, cam in enumerate(read.frames)]


def render_command(job_dir: Path, out_dir: Path, cameras: Path | None, turntable_n: int | None,
                   size: int | None, background: str, device_name: str | None = None) -> dict:
    """Render the job's field; writes PNGs and the transforms.json of what was rendered into out_dir.

    cameras: a capture folder or transforms JSON file (world cameras), or None for turntable_n views
    (default 36). size: image width in pixels (None: the cameras' own, else 4x the job's render size).
    device_name: the device to render on (None: job.json's).
    Everything is checked before out_dir is touched: out_dir must not be a file (usage), the job must
    have a checkpoint (invalid_job), the cameras must read (capture_invalid). The images are rendered
    into a hidden sibling folder that becomes out_dir (or moves into it) only when all are written,
    so a failure leaves no partial output behind. Returns {"images": N, "out": out_dir}.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EngineError("usage", f"--out {out_dir} is a file, not a folder", "give a new or existing folder")
    if (out_dir / "transforms.json").exists():
        # A capture's cameras (or an earlier render's) would be replaced by the rendered ones: nothing is lost.
        raise EngineError("usage", f"--out {out_dir} already holds a transforms.json (a capture's or an earlier "
                          "render's), which this render would replace",
                          "give a new folder for --out, or move that transforms.json away first")
    # The cameras first: a wrong path fails in a moment, before the checkpoint is loaded.
    read = captures.read_cameras(cameras, test_file=False) if cameras is not None else None
    spec, scene, device, frame = load_scene(job_dir, device_name)
    if read is not None:
        cams = _camera_dicts(read, frame)
    else:
        views = turntable(spec.orbit, turntable_n or 36)
        cams = [{"c2w": views.c2w[i], "w": 0, "h": 0, "fx": None, "fy": None, "cx": None, "cy": None,
                 "angle": math.radians(float(views.fov_deg[i])), "name": f"turntable_{i:03d}"} for i in range(len(views.c2w))]
    try:
        with staged_folder(out_dir) as staging:
            count = _render_cameras(spec, scene, device, frame, cams, size, background, staging)
    except OSError as e:  # permissions, a full disk, a path through a file: staged_folder removed its folder
        raise EngineError("usage", f"cannot write the render to --out {out_dir}: {e.strerror or e}",
                          "give a folder you can write to, on a disk with space") from None
    return {"images": count, "out": str(out_dir)}


@contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A new hidden folder beside `out` to write into. When the block ends normally its files become `out` (or move
    into an existing `out`, replacing files of the same name); when it raises, the folder is removed, with the
    parent folders made for it, and `out` is as it was."""
    made = [p for p in reversed(out.parents) if not p.exists()]  # outermost first
    # mkdir, not tempfile.mkdtemp: the folder gets the user's usual permissions, not 0700.
    staging = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.partial"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        yield staging
        if not out.exists():
            staging.rename(out)
            return
        for file in staging.iterdir():
            os.replace(file, out / file.name)
        staging.rmdir()
    except BaseException:  # KeyboardInterrupt too: nothing half-written may stay
        shutil.rmtree(staging, ignore_errors=True)
        for parent in reversed(made):
            try:
                parent.rmdir()
            except OSError:
                break  # something else was written there meanwhile: keep it
        raise


def _render_cameras(spec, scene, device, frame: ObjectFrame, cams: list[dict], size: int | None, background: str,
                    out_dir: Path) -> int:
    """Render `cams` (as _camera_dicts gives them, object space) into out_dir: a PNG each, then transforms.json of
    what was rendered (world cameras). Returns the number of images."""
    frames = []
    for cam in cams:
        w = size or cam["w"] or spec.render.size * 4
        h = (round(cam["h"] * w / cam["w"]) if cam["w"] and cam["h"] else w)
        scale = w / cam["w"] if cam["w"] else 1.0
        fx = cam["fx"] * scale if cam["fx"] else focal_from_fov(math.degrees(cam["angle"]), w)
        if cam["fy"]:
            fy = cam["fy"] * scale
        elif cam.get("angle_y") is not None and cam["w"] and cam["h"]:  # camera_angle_y, as captures read it
            fy = focal_from_fov(math.degrees(cam["angle_y"]), h)
        else:
            fy = fx
        cx = float(cam["cx"]) * scale if cam["cx"] is not None else w / 2
        cy = float(cam["cy"]) * scale if cam["cy"] is not None else h / 2
        # The camera's own lens (its coefficients act on normalised coordinates, whatever the size).
        lens = {"distortion": cam.get("distortion"), "fisheye": cam.get("fisheye", False)}
        origins, dirs = camera_rays(cam["c2w"].to(device), fx, w, h, cx, cy, focal_y=fy, **lens)
        out = render_scene_rays(scene, origins, dirs, spec.render.samples_per_ray, fx, chunk=16384)
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
        if lens["fisheye"] or any(lens["distortion"] or ()):  # rendered through that lens: say so
            frames[-1].update(camera_model=captures.camera_model(lens["fisheye"], lens["distortion"]),
                              **dict(zip(captures.DISTORTION_KEYS, lens["distortion"])))
    transforms = {"camera_model": "PINHOLE", "frames": frames}
    (out_dir / "transforms.json").write_text(json.dumps(transforms, indent=1), encoding="utf-8")
    return len(frames)


def export_command(job_dir: Path, resolution: int | None, threshold, texture_size: int | None,
                   device_name: str | None = None) -> dict:
    """Re-extract result/ from the latest checkpoint, e.g. with another threshold; None keeps the job's setting.

    Raises EngineError: invalid_job (no checkpoint, a value outside job.json's export limits),
    empty_surface (nothing at the threshold; result/ is left as it was). When `threshold` was given, the
    empty_surface hint suggests the --threshold to try rather than an edit of job.json.
    device_name: the device to extract on (None: job.json's).
    Returns artifact kind -> path relative to job_dir."""
    spec, scene, device, frame = load_scene(job_dir, device_name)
    e = spec.export
    export = ExportConfig(resolution=e.resolution if resolution is None else resolution,
                          threshold=e.threshold if threshold is None else threshold,
                          texture_size=e.texture_size if texture_size is None else texture_size, formats=e.formats,
                          max_faces=e.max_faces)
    export.validate("export")
    try:
        return export_result(scene, spec, job_dir, device, export, frame)
    except EngineError as err:
        if err.kind != "empty_surface" or threshold is None:
            raise
        raise EngineError("empty_surface", err.message, threshold_flag_hint(err, export), err.details) from None


def threshold_flag_hint(err: EngineError, export: ExportConfig) -> str:
    """An empty_surface hint for the command line: the --threshold to try (from err.details), not job.json."""
    suggested, density_range = err.details.get("suggested_threshold"), err.details.get("density_range")
    if suggested is not None:
        lo, hi = density_range
        return f"try --threshold {suggested:.4g} (any value between {lo:.4g} and {hi:.4g}; --threshold auto picks it)"
    if density_range is not None:
        return err.hint  # the density is the same everywhere: no threshold helps, and the hint says so
    return (f"try another --resolution (now {export.resolution}) or --threshold, or train longer for a solid "
            "object")
