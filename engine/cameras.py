"""Orbit cameras and their rays, in Blender's convention.

World: right-handed, Z up. Cameras: camera-to-world 4x4, looking down their -Z with +Y
up (Blender and NeRF transforms.json agree). Everything here is in object space: the
object cube [-1,1]^3 is centred on the origin; the job's `orbit.look_at` is added only
when results leave the engine (the mesh's offset, transforms.json of renders).

Azimuth 0 puts the camera on -Y looking at +Y: Blender's front view (numpad 1), which
sees +X on the image's right and +Z up. Azimuth 90 puts it on +X (Blender's right view).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .lens import camera_directions
from .spec import OrbitConfig


@dataclass(frozen=True)
class Views:
    """A batch of B cameras."""

    c2w: torch.Tensor
    """(B,4,4) camera-to-world."""
    fov_deg: torch.Tensor
    """(B,) field of view of the square image."""
    azimuth_deg: torch.Tensor
    """(B,)"""
    elevation_deg: torch.Tensor
    """(B,)"""
    radius: torch.Tensor
    """(B,)"""


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """(B,3) eye positions -> (B,4,4) camera-to-world looking at target (default origin), +Z world up."""
    target = torch.zeros_like(eye) if target is None else target.expand_as(eye)
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=eye.dtype).expand_as(eye)
    right = torch.linalg.cross(forward, up, dim=-1)
    # Looking straight up or down: any right vector orthogonal to forward will do.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-6
    right = torch.where(degenerate, torch.tensor([1.0, 0.0, 0.0], dtype=eye.dtype).expand_as(eye), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    cam_up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype)
    c2w[:, :3, 0] = right
    c2w[:, :3, 1] = cam_up
    c2w[:, :3, 2] = -forward
    c2w[:, :3, 3] = eye
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_position(azimuth_deg: torch.Tensor, elevation_deg: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """(B,) spherical coordinates -> (B,3) positions; azimuth 0 = -Y (front), 90 = +X (right)."""
    az, el = torch.deg2rad(azimuth_deg), torch.deg2rad(elevation_deg)
    return torch.stack([radius * torch.cos(el) * torch.sin(az),
                        -radius * torch.cos(el) * torch.cos(az),
                        radius * torch.sin(el)], dim=-1)


def orbit_views(azimuth_deg, elevation_deg, radius, fov_deg) -> Views:
    """Views from per-camera spherical coordinates (each a float or (B,) tensor)."""
    az, el, r, fov = (torch.as_tensor(v, dtype=torch.float32).reshape(-1) for v in (azimuth_deg, elevation_deg, radius, fov_deg))
    b = max(len(az), len(el), len(r), len(fov))
    az, el, r, fov = (v.expand(b).clone() for v in (az, el, r, fov))
    return Views(look_at(orbit_position(az, el, r)), fov, az, el, r)


def sample_orbit(orbit: OrbitConfig, n: int, generator: torch.Generator) -> Views:
    """n random views with every coordinate uniform in its configured range."""
    u = torch.rand(n, 4, generator=generator)

    def lerp(lo_hi, t):
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * t

    return orbit_views(lerp(orbit.azimuth_deg, u[:, 0]), lerp(orbit.elevation_deg, u[:, 1]),
                       lerp(orbit.radius, u[:, 2]), lerp(orbit.fov_deg, u[:, 3]))


def turntable(orbit: OrbitConfig, n: int) -> Views:
    """n views evenly spaced over 360 degrees at the orbit's middle elevation, radius and FOV."""
    mid = [(lo + hi) / 2 for lo, hi in (orbit.elevation_deg, orbit.radius, orbit.fov_deg)]
    return orbit_views(torch.arange(n, dtype=torch.float32) * (360.0 / n), *mid)


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a square image of `size` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)


def camera_rays(c2w: torch.Tensor, focal: float, width: int, height: int, cx: float | None = None,
                cy: float | None = None, focal_y: float | None = None, distortion=None,
                fisheye: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel centres, row 0 at the top of the image.

    c2w: (4,4); focal (and focal_y, default focal) in pixels; cx, cy the principal point in
    pixels from the top left (default the centre); distortion: None or the lens's 6
    coefficients k1, k2, k3, k4, p1, p2 (a sequence or (6,) tensor, as transforms.json
    writes them); fisheye: OPENCV_FISHEYE rather than the radial-tangential model (see
    engine.lens). Returns origins (H*W,3) and unit directions (H*W,3), row-major from the
    top left pixel. A pinhole camera (no coefficients, or all 0, and not fisheye) takes the
    pinhole formula directly.
    """
    focal_y = focal if focal_y is None else focal_y
    cx = width / 2 if cx is None else cx
    cy = height / 2 if cy is None else cy
    j = torch.arange(width, dtype=torch.float32, device=c2w.device) + 0.5
    i = torch.arange(height, dtype=torch.float32, device=c2w.device) + 0.5
    ii, jj = torch.meshgrid(i, j, indexing="ij")
    if fisheye or (distortion is not None and any(float(k) != 0.0 for k in distortion)):
        n = ii.numel()
        intrinsics = torch.tensor([focal, focal_y, cx, cy], dtype=torch.float32, device=c2w.device).expand(n, 4)
        coeffs = torch.as_tensor(distortion if distortion is not None else [0.0] * 6, dtype=torch.float32,
                                 device=c2w.device).reshape(6).expand(n, 6)
        mask = torch.full((n,), bool(fisheye), dtype=torch.bool, device=c2w.device)
        dirs = camera_directions(jj.reshape(-1), ii.reshape(-1), intrinsics, coeffs, mask)
    else:
        # Camera space: +X right, +Y up, looking down -Z; image rows grow downwards.
        dirs = torch.stack([(jj - cx) / focal, -(ii - cy) / focal_y, -torch.ones_like(ii)], dim=-1).reshape(-1, 3)
    dirs = dirs @ c2w[:3, :3].T
    dirs = torch.nn.functional.normalize(dirs, dim=-1)
    origins = c2w[:3, 3].expand_as(dirs)
    return origins, dirs
