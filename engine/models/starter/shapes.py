"""The starter vocabulary's renders (the words are in vocabulary.py): simple shapes (signed distance functions in the object cube) in
plain colours, rendered by the engine's volume renderer from random cameras around them."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ...cameras import Views, camera_rays, focal_from_fov, orbit_views
from ...fields.base import FieldOutput
from ...render.image import render_pixels
from .vocabulary import CAMERAS, CLASSES, COLOURS, PHRASINGS, SHAPES, caption

__all__ = ["CLASSES", "COLOURS", "PHRASINGS", "SHAPES", "caption", "render_shape", "sdf", "shape_field"]


def _length(*parts: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(sum(p.square() for p in parts))


def sdf(shape: str, x: torch.Tensor) -> torch.Tensor:
    """(N,3) object-space points -> (N,) signed distance (negative inside) to `shape`, about 1.2 across, z up.
    Cones and pyramids are exact only near their surfaces, which is all a sharp density needs."""
    px, py, pz = x.unbind(-1)
    if shape == "sphere":
        return x.norm(dim=-1) - 0.6
    if shape == "cube":
        q = x.abs() - 0.45
        return q.clamp(min=0).norm(dim=-1) + q.amax(dim=-1).clamp(max=0)
    if shape == "cylinder":
        return torch.maximum(_length(px, py) - 0.45, pz.abs() - 0.55)
    if shape == "cone":  # apex at z = 0.6, base radius 0.55 at z = -0.5
        slope = math.atan2(0.55, 1.1)
        radius = 0.55 * (0.6 - pz) / 1.1
        return torch.maximum(-(pz + 0.5), (_length(px, py) - radius) * math.cos(slope))
    if shape == "torus":
        return _length(_length(px, py) - 0.45, pz) - 0.18
    if shape == "pyramid":  # square base of half side 0.55 at z = -0.45, apex at z = 0.55
        slope = math.atan2(0.55, 1.0)
        half = 0.55 * (0.55 - pz) / 1.0
        return torch.maximum(-(pz + 0.45), (torch.maximum(px.abs(), py.abs()) - half) * math.cos(slope))
    if shape == "capsule":
        return _length(px, py, (pz.abs() - 0.35).clamp(min=0)) - 0.3
    if shape == "octahedron":
        return (x.abs().sum(dim=-1) - 0.7) / math.sqrt(3)
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def instance_sdf(shape: str, x: torch.Tensor, scale: float = 1.0, spin_deg: float = 0.0) -> torch.Tensor:
    """sdf of the shape scaled by `scale` and turned by spin_deg about z (N,3) -> (N,)."""
    c, s = math.cos(math.radians(spin_deg)), math.sin(math.radians(spin_deg))
    rot = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], device=x.device)
    return sdf(shape, (x @ rot) / scale) * scale


def shape_field(shape: str, colour, scale: float = 1.0, spin_deg: float = 0.0, sharpness: float = 0.01):
    """The shape as a field callable: density 200 inside (a sharp sigmoid of the distance), the colour as albedo."""
    albedo = torch.tensor(colour, dtype=torch.float32)

    def field(x: torch.Tensor, radius=None) -> FieldOutput:
        density = 200.0 * torch.sigmoid(-instance_sdf(shape, x, scale, spin_deg) / sharpness)
        return FieldOutput(density, albedo.to(x.device).expand(len(x), 3))

    return field


class ShapeRender(NamedTuple):
    rgb: torch.Tensor
    """(H,W,3) premultiplied by alpha."""
    alpha: torch.Tensor
    """(H,W) opacity."""
    view: Views
    """The one camera it was seen from (its azimuth gives DreamFusion's view suffix)."""


def render_shape(shape: str, colour_name: str, size: int, generator: torch.Generator,
                 samples: int = 96) -> ShapeRender:
    """One random view of one instance.

    The camera: radius 3.5-4.5, elevation -10..60 degrees, any azimuth, FOV 30-40 degrees (around Dream
    Fields' orbit). Half the renders are flat albedo (what Dream Fields' CLIP sees), half lambertian-shaded
    under a light near the camera (shape cues)."""
    u = torch.rand(8, generator=generator).tolist()
    views = orbit_views(*(lo + (hi - lo) * t for (lo, hi), t in zip(
        (CAMERAS[k] for k in ("azimuth_deg", "elevation_deg", "radius", "fov_deg")), u)))
    scale, spin = 0.85 + 0.3 * u[4], 360 * u[5]
    field = shape_field(shape, COLOURS[colour_name], scale, spin)
    focal = focal_from_fov(float(views.fov_deg[0]), size)
    origins, dirs = camera_rays(views.c2w[0], focal, size, size)
    with torch.no_grad():
        out = render_pixels(field, origins, dirs, samples, focal)
    rgb, alpha = out.rgb, out.opacity
    if u[6] < 0.5:
        # Lambertian: the SDF's normal at each ray's expected surface point, a light near the camera.
        with torch.enable_grad():
            points = (origins + dirs * out.depth[:, None]).requires_grad_(True)
            distance = instance_sdf(shape, points, scale, spin)
            normals = torch.nn.functional.normalize(torch.autograd.grad(distance.sum(), points)[0], dim=-1)
        eye = views.c2w[0, :3, 3]
        light = torch.nn.functional.normalize(eye / eye.norm() + 0.4 * torch.randn(3, generator=generator), dim=0)
        ambient = 0.35 + 0.3 * u[7]
        rgb = rgb * (ambient + (1 - ambient) * (normals * light).sum(-1).clamp(min=0))[:, None]
    return ShapeRender(rgb.reshape(size, size, 3), alpha.reshape(size, size), views)
