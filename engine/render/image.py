"""Whole images from cameras: rays of every pixel, rendered in chunks."""
from __future__ import annotations

import torch

from ..cameras import camera_rays, focal_from_fov
from .volume import FieldFn, RenderOutput, render_rays

# mip-NeRF: a pixel's footprint as the std of a Gaussian, per unit focal distance.
PIXEL_RADIUS = 2 / 12**0.5


def render_pixels(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, n_samples: int, focal: float,
                  generator: torch.Generator | None = None, chunk: int | None = None) -> RenderOutput:
    """Render R rays in chunks of `chunk` (None = all at once, needed when gradients flow); per-ray output."""
    step = chunk or origins.shape[0]
    pieces = [render_rays(field, origins[i:i + step], dirs[i:i + step], n_samples, generator,
                          pixel_radius=PIXEL_RADIUS / focal) for i in range(0, origins.shape[0], step)]
    return RenderOutput(*(torch.cat([getattr(p, k) for p in pieces]) for k in ("rgb", "opacity", "depth")))


def render_view(field: FieldFn, c2w: torch.Tensor, fov_deg: float, size: int, n_samples: int,
                generator: torch.Generator | None = None, chunk: int | None = None) -> RenderOutput:
    """Render a square image; c2w (4,4) on the field's device. Returns RenderOutput shaped (H,W)."""
    focal = focal_from_fov(fov_deg, size)
    origins, dirs = camera_rays(c2w, focal, size, size)
    out = render_pixels(field, origins, dirs, n_samples, focal, generator, chunk)
    return RenderOutput(out.rgb.reshape(size, size, 3), out.opacity.reshape(size, size), out.depth.reshape(size, size))
