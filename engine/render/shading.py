"""DreamFusion's shading of a volume render: albedo, lambertian (point light) and textureless.

Deferred, per ray rather than per sample: one finite-difference normal at each ray's expected
surface point (6 density queries per ray instead of 6 per sample, and no second-order graph: in
stable-dreamfusion, autograd normals make the backward pass second order and most of a step's time). Gradients reach the geometry through the normal's density queries and
through the depth that places the point.
"""
from __future__ import annotations

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
