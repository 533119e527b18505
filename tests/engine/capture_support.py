"""Captures rendered by the engine from an analytic object, with known cameras and colours."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import torch

from engine.cameras import camera_rays, focal_from_fov, orbit_views
from engine.captures import DISTORTION_KEYS, ObjectFrame, camera_model
from engine.fields.base import FieldOutput
from engine.jobs.images import save_png
from engine.render.image import render_pixels

BOX_HALF = 0.5


def box_field(x: torch.Tensor, radius=None) -> FieldOutput:
    """An opaque box [-0.5,0.5]^3: red where x < 0, blue where x > 0, the top quarter yellow."""
    inside = (x.abs() <= BOX_HALF).all(dim=-1)
    density = inside.float() * 80.0
    albedo = torch.where((x[:, :1] < 0), torch.tensor([0.85, 0.15, 0.1]), torch.tensor([0.1, 0.25, 0.9]))
    albedo = torch.where(x[:, 2:] > 0.25, torch.tensor([0.95, 0.85, 0.1]), albedo)
    return FieldOutput(density, albedo)


def coloured_box(colour):
    """box_field's opaque box [-0.5,0.5]^3 in one colour (3 floats in [0,1])."""
    albedo = torch.tensor(colour, dtype=torch.float32)

    def field(x: torch.Tensor, radius=None) -> FieldOutput:
        inside = (x.abs() <= BOX_HALF).all(dim=-1)
        return FieldOutput(inside.float() * 80.0, albedo.expand(len(x), 3))

    return field


def backdrop_colour(origins: torch.Tensor, dirs: torch.Tensor, room: float = 8.0) -> torch.Tensor:
    """(R,3) colour where each ray meets the walls of a room, a sphere of radius `room` around the object: a
    checker of 12 x 6 tiles in two warm colours over a blue-grey gradient (a cluttered backdrop, not a plain one)."""
    b = (origins * dirs).sum(-1)
    t = -b + torch.sqrt(b * b - (origins * origins).sum(-1) + room * room)
    p = origins + t[:, None] * dirs
    azimuth = torch.atan2(p[:, 1], p[:, 0])
    elevation = torch.asin((p[:, 2] / room).clamp(-1, 1))
    tile = ((azimuth / math.pi * 6).floor() + (elevation / math.pi * 6).floor()) % 2
    warm = torch.where(tile[:, None] > 0, torch.tensor([0.8, 0.55, 0.3]), torch.tensor([0.35, 0.6, 0.3]))
    shade = (0.6 + 0.4 * torch.sin(3 * azimuth))[:, None]
    return warm * shade + (1 - shade) * torch.tensor([0.3, 0.35, 0.5])


def orbit(n: int, elevations=(15.0, 40.0), radius: float = 4.0, fov: float = 40.0):
    """n views all around, alternating between two elevations."""
    az = torch.arange(n, dtype=torch.float32) * (360.0 / n) + 7.0
    el = torch.tensor([elevations[i % 2] for i in range(n)], dtype=torch.float32)
    return orbit_views(az, el, radius, fov)


def render_capture(folder: Path, n: int = 8, size: int = 32, frame: ObjectFrame = ObjectFrame(),
                   bounds: bool = True, fov: float = 40.0, layout: str = "nerfstudio", test_every: int = 0,
                   field=box_field, distortion=None, fisheye: bool = False, radius: float = 4.0,
                   backdrop: bool = False) -> Path:
    """Render `field` (the box) from n orbit cameras into a capture folder; the world is frame applied to object space.

    distortion (k1, k2, k3, k4, p1, p2) and fisheye: the cameras' lens (engine.lens), rendered through
    per pixel and written into the transforms file (camera_model and the coefficients); the default
    is a pinhole camera. radius: the cameras' distance from the box's centre (object units).
    backdrop: opaque RGB photos (no alpha) of the object in front of backdrop_colour's textured room.

    layout "nerfstudio": transforms.json with fl_x/fl_y/cx/cy/w/h, RGBA PNGs under images/.
    layout "synthetic": NeRF-synthetic transforms_train.json / transforms_test.json with camera_angle_x
    and file paths without extension (every test_every-th view goes to the test file).
    """
    folder.mkdir(parents=True, exist_ok=True)
    views = orbit(n, radius=radius, fov=fov)
    focal = focal_from_fov(fov, size)
    train, test = [], []
    for i in range(n):
        origins, dirs = camera_rays(views.c2w[i], focal, size, size, distortion=distortion, fisheye=fisheye)
        with torch.no_grad():
            out = render_pixels(field, origins, dirs, 256, focal)
        rgb = out.rgb / out.opacity.clamp(min=1e-6)[:, None]
        image = torch.cat([rgb, out.opacity[:, None]], dim=-1).reshape(size, size, 4)
        if backdrop:
            image = (out.rgb + (1 - out.opacity[:, None]) * backdrop_colour(origins, dirs)).reshape(size, size, 3)
        world = frame.c2w_to_world(views.c2w[i]).tolist()
        is_test = layout == "synthetic" and test_every and i % test_every == 0
        sub = "test" if is_test else ("train" if layout == "synthetic" else "images")
        save_png(image, folder / sub / f"r_{i}.png")
        if layout == "synthetic":
            (test if is_test else train).append({"file_path": f"./{sub}/r_{i}", "transform_matrix": world})
        else:
            train.append({"file_path": f"images/r_{i}.png", "transform_matrix": world})
    lens = {}
    if distortion is not None or fisheye:
        coeffs = [float(k) for k in (distortion if distortion is not None else [0.0] * 6)]
        lens = {"camera_model": camera_model(fisheye, coeffs), **dict(zip(DISTORTION_KEYS, coeffs))}
    if layout == "synthetic":
        angle = {"camera_angle_x": math.radians(fov), **lens}
        (folder / "transforms_train.json").write_text(json.dumps({**angle, "frames": train}))
        (folder / "transforms_test.json").write_text(json.dumps({**angle, "frames": test}))
        return folder
    data = {"camera_model": "PINHOLE", "fl_x": focal, "fl_y": focal, "cx": size / 2, "cy": size / 2,
            "w": size, "h": size, **lens, "frames": train}
    if bounds:
        lo = [o - BOX_HALF * frame.scale for o in frame.offset]
        hi = [o + BOX_HALF * frame.scale for o in frame.offset]
        data["text3d_bounds"] = [lo, hi]
    (folder / "transforms.json").write_text(json.dumps(data, indent=1))
    return folder


def edited_copy(capture: Path, tmp_path: Path, change) -> Path:
    """A copy of the capture folder (in tmp_path/"copy") with change(transforms dict, folder) applied; returns the
    folder."""
    folder = tmp_path / "copy"
    shutil.copytree(capture, folder)
    data = json.loads((folder / "transforms.json").read_text())
    change(data, folder)
    (folder / "transforms.json").write_text(json.dumps(data))
    return folder
