"""Rays through a scene larger than the object cube: the object's field inside the cube, a background field
(engine/fields/background.py) in front of it and behind it, composited front to back.

Along a ray the three parts never overlap: [near_plane, near) before the cube, [near, far) inside it (rendered
by the caller, e.g. march_rays), [far, inf) behind it; a ray that misses the cube is split at its closest
approach to the centre. Behind the cube, samples are spaced linearly in disparity (1/t) out to infinity, as
mip-NeRF 360 spaces them in its contracted space, so a far wall gets as many samples as a near one.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .volume import FieldFn, RenderOutput, ray_cube_intersect, volume_weights

NEAR_PLANE = 0.05
"""Object units in front of a camera that nothing is rendered in (cameras sit >= 2 from the centre)."""


@dataclass
class Segment:
    """One stretch of each ray rendered on its own: accumulated colour (R,3) and opacity (R,)."""

    rgb: torch.Tensor
    opacity: torch.Tensor


def _render(field: FieldFn, origins, dirs, t: torch.Tensor, delta: torch.Tensor) -> Segment:
    x = (origins[:, None, :] + t[..., None] * dirs[:, None, :]).reshape(-1, 3)
    out = field(x)
    weights, _ = volume_weights(out.density.reshape(t.shape), delta)
    return Segment((weights[..., None] * out.albedo.reshape(*t.shape, 3)).sum(1), weights.sum(1))


def render_background(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, n_samples: int,
                      generator: torch.Generator | None = None) -> tuple[Segment, Segment]:
    """The background field along R rays, in front of the object cube and behind it.

    origins, dirs: (R,3) object space, dirs unit length. n_samples: per ray, a quarter in front of the cube
    (linear in t) and the rest behind it (linear in disparity to infinity; the last sample's bin is infinite,
    so an opaque-enough background ends every ray). Stratified with a generator, bin middles without.
    Returns (front, back) Segments.
    """
    near, far, hit = ray_cube_intersect(origins, dirs)
    closest = (-(origins * dirs).sum(-1)).clamp(min=NEAR_PLANE)
    near = torch.where(hit, near, closest).clamp(min=NEAR_PLANE)
    far = torch.where(hit, far, closest).clamp(min=NEAR_PLANE)
    n_front = max(1, n_samples // 4)
    n_back = max(1, n_samples - n_front)
    r = origins.shape[0]

    def offsets(n):
        if generator is None:
            return torch.full((r, n), 0.5, device=origins.device)
        return torch.rand(r, n, generator=generator).to(origins.device)

    bins = torch.arange(n_front, device=origins.device)[None]
    front_delta = ((near - NEAR_PLANE) / n_front)[:, None]
    front_t = NEAR_PLANE + (bins + offsets(n_front)) * front_delta
    front = _render(field, origins, dirs, front_t, front_delta)
    back_t, back_delta = disparity_samples(far, offsets(n_back))
    back = _render(field, origins, dirs, back_t, back_delta)
    return front, back


def disparity_samples(far: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples from `far` (R,) to infinity, one per bin of equal disparity: offsets (R,n) in [0,1) place each
    inside its bin. Returns t (R,n), finite and increasing, and the bins' lengths (R,n), the last one 1e10."""
    n = offsets.shape[1]
    k = torch.arange(n, device=far.device)[None]
    # Disparity s in (0, 1] from 1/far down to 0: t = far / s; bin edges at s = 1 - k / n.
    edges = far[:, None] / (1 - k / n)
    # In float32 an offset within 1e-7 of 1 in the last bin rounds s to 0 (t = inf, then NaN in the contraction).
    s = (1 - (k + offsets) / n).clamp(min=1e-4 / n)
    next_edge = torch.cat([edges[:, 1:], torch.full_like(edges[:, :1], 1e10)], dim=1)
    return far[:, None] / s, next_edge - edges


def composite_scene(front: Segment, inside: RenderOutput, back: Segment) -> RenderOutput:
    """Front to back: C = C_front + T_front (C_cube + T_cube C_back). Returns the whole ray's RenderOutput:
    rgb (R,3) premultiplied, opacity (R,) of everything along it, depth (R,) the cube's."""
    t_front, t_cube = 1 - front.opacity, 1 - inside.opacity
    rgb = front.rgb + t_front[:, None] * (inside.rgb + t_cube[:, None] * back.rgb)
    opacity = 1 - t_front * t_cube * (1 - back.opacity)
    return RenderOutput(rgb, opacity, inside.depth)
