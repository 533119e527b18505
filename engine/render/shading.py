"""DreamFusion's shading of a volume render: albedo, lambertian (point light) and textureless.

Deferred, per ray rather than per sample: one finite-difference normal at each ray's expected
surface point (6 density queries per ray instead of 6 per sample, and no second-order graph: in
stable-dreamfusion, autograd normals make the backward pass second order and most of a step's time). Gradients reach the geometry through the normal's density queries and
through the depth that places the point.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..fields.base import density_normals
from .volume import FieldFn

SHADINGS = ("albedo", "lambertian", "textureless")
"""The shading modes of shade(); a progress event reports the step's as its index here."""


def surface_normals(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, depth: torch.Tensor,
                    opacity: torch.Tensor, min_opacity: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit normals at the expected surface point x = o + depth * d of rays with opacity > min_opacity.

    origins, dirs: (R,3); depth, opacity: (R,). Returns points (R,3) and normals (R,3), zero on
    rays that see (almost) nothing, where the expected depth is not a surface.
    """
    points = origins + depth[:, None] * dirs
    normals = torch.zeros_like(points)
    seen = (opacity > min_opacity).nonzero().squeeze(1)
    if len(seen):
        normals = normals.index_put((seen,), density_normals(field, points[seen]))
    return points, normals


def lambert(normals: torch.Tensor, points: torch.Tensor, light: torch.Tensor, ambient: float) -> torch.Tensor:
    """(R,3) normals and points, (3,) point light -> (R,) ambient + (1 - ambient) * max(0, n.l)."""
    to_light = F.normalize(light[None] - points, dim=-1)
    return ambient + (1 - ambient) * (normals * to_light).sum(-1).clamp(min=0)


def shade(mode: str, rgb: torch.Tensor, opacity: torch.Tensor, normals: torch.Tensor, points: torch.Tensor,
          light: torch.Tensor, ambient: float) -> torch.Tensor:
    """Shaded colour of R rays, still to be composited over a background like the albedo render.

    rgb: (R,3) accumulated albedo (premultiplied by opacity); opacity (R,). "albedo" returns rgb;
    "lambertian" scales it by lambert(); "textureless" does so with a white albedo (= opacity).
    """
    if mode == "albedo":
        return rgb
    albedo = rgb if mode == "lambertian" else opacity[:, None].expand_as(rgb)
    return albedo * lambert(normals, points, light, ambient)[:, None]


# stable-dreamfusion's mix once the warm-up is over: 20% albedo, 40% textureless, 40% lambertian.
ALBEDO_P, TEXTURELESS_P = 0.2, 0.4


@dataclass(frozen=True)
class Lighting:
    """One SDS step's shading (DreamFusion, section 3 and appendix; threestudio's light sampling)."""

    mode: str
    """One of SHADINGS."""
    ambient: float
    """Ambient share of lambert() in [0.1, 1]."""
    light: torch.Tensor
    """(3,) point-light position: around the camera's direction, 0.8-1.5 times its distance."""
    background: torch.Tensor
    """(3,) solid background colour in [0,1]."""


def sample_lighting(eye: torch.Tensor, albedo_only: bool, generator: torch.Generator,
                    device: torch.device | str, albedo_p: float = ALBEDO_P) -> Lighting:
    """A random shading mode (albedo only while `albedo_only`, else albedo with probability albedo_p and the rest
    shared equally by textureless and lambertian: DreamFusion's 0.2 / 0.4 / 0.4 by default), ambient, point
    light around the camera at `eye` (3,) and background colour; every draw comes from `generator`, in a fixed
    order."""
    u, jitter = torch.rand(6, generator=generator).tolist(), torch.randn(3, generator=generator)
    textureless_p = TEXTURELESS_P if albedo_p == ALBEDO_P else (1 - albedo_p) / 2
    mode = ("albedo" if albedo_only or u[0] < albedo_p
            else "textureless" if u[0] < albedo_p + textureless_p else "lambertian")
    eye = eye.cpu()
    light = F.normalize(eye / eye.norm() + 0.5 * jitter, dim=0) * eye.norm() * (0.8 + 0.7 * u[2])
    return Lighting(mode, 0.1 + 0.9 * u[1], light.to(device), torch.tensor(u[3:6], device=device))


@dataclass
class ShadedRender:
    """A shaded, composited square render with what the regularisers need."""

    image: torch.Tensor
    """(1,S,S,3) in [0,1], over the lighting's background."""
    opacity: torch.Tensor
    """(S*S,) per ray."""
    normals: torch.Tensor
    """(S*S,3) one normal per ray at its expected surface (zero where it sees nothing)."""
    dirs: torch.Tensor
    """(S*S,3) unit ray directions."""


def render_shaded(field: FieldFn, c2w: torch.Tensor, fov_deg: float, size: int, n_samples: int,
                  lighting: Lighting, generator: torch.Generator) -> ShadedRender:
    """Render albedo, opacity and depth with gradients from c2w (4,4) (on the field's device), one normal per ray
    at its expected surface point, shade by `lighting` and composite (DreamFusion's render for SDS)."""
    from ..cameras import camera_rays, focal_from_fov
    from .image import render_view
    from .volume import composite

    out = render_view(field, c2w, fov_deg, size, n_samples, generator)
    origins, dirs = camera_rays(c2w, focal_from_fov(fov_deg, size), size, size)
    opacity = out.opacity.reshape(-1)
    points, normals = surface_normals(field, origins, dirs, out.depth.reshape(-1), opacity)
    rgb = shade(lighting.mode, out.rgb.reshape(-1, 3), opacity, normals, points, lighting.light, lighting.ambient)
    image = composite(rgb, opacity, lighting.background).reshape(1, size, size, 3)
    return ShadedRender(image, opacity, normals, dirs)
