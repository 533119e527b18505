"""Sampling along rays and volume rendering (the nerfacc way: the field is a callable)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..fields.base import FieldOutput

FieldFn = Callable[..., FieldOutput]


@dataclass
class RenderOutput:
    """Per-ray results; leading shape (R,) or (H,W) for images."""

    rgb: torch.Tensor
    """(...,3) accumulated albedo, not yet composited over a background."""
    opacity: torch.Tensor
    """(...,) accumulated alpha; transmittance = 1 - opacity."""
    depth: torch.Tensor
    """(...,) expected distance along the ray of the visible surface (far bound where empty)."""
    weights: torch.Tensor | None = None
    """(R,S) volume-rendering weight of each sample; only with return_samples (zeros where a ray misses the cube)."""
    t: torch.Tensor | None = None
    """(R,S) distance along the ray to the middle of each sample's bin, increasing; only with return_samples."""
    delta: torch.Tensor | None = None
    """(R,1) length of every bin of the ray; only with return_samples."""


def ray_cube_intersect(origins: torch.Tensor, dirs: torch.Tensor, bound: float = 1.0):
    """Slab test against the cube [-bound,bound]^3.

    origins, dirs: (R,3). Returns near, far (R,) clamped to >= 0 and hit (R,) bool.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (-bound - origins) * inv, (bound - origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    return near, far, far > near


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n: int, generator: torch.Generator | None):
    """n samples per ray, one uniformly inside each of n equal bins (bin centres without a generator).

    near, far: (R,). Returns t (R,n) and delta (R,1), the bin length: with a constant density
    sigma the rendered transmittance is exactly exp(-sigma * (far - near)).
    """
    if generator is None:
        u = torch.full((near.shape[0], n), 0.5, device=near.device)
    else:
        u = torch.rand(near.shape[0], n, generator=generator).to(near.device)
    delta = ((far - near) / n)[:, None]
    t = near[:, None] + (torch.arange(n, device=near.device)[None] + u) * delta
    return t, delta


def volume_weights(density: torch.Tensor, delta: torch.Tensor):
    """Quadrature of the volume rendering integral.

    density: (R,S); delta: (R,S) or (R,1). Returns weights (R,S) = T_i * alpha_i and
    transmittance (R,S) in front of each sample, T_i = exp(-sum_{j<i} sigma_j delta_j).
    """
    tau = density * delta
    alpha = 1 - torch.exp(-tau)
    transmittance = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], dim=1), dim=1))
    return transmittance * alpha, transmittance


def render_rays(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, n_samples: int,
                generator: torch.Generator | None = None, pixel_radius: float | None = None,
                return_samples: bool = False) -> RenderOutput:
    """Render R rays through the object cube.

    origins, dirs: (R,3), dirs unit length. Only rays that hit the cube query the field.
    pixel_radius: cone radius per unit distance, passed to the field as each sample's
    footprint (integrated encodings use it). return_samples: also return each sample's weight
    and bin (for the distortion loss, engine/losses.py). Returns per-ray RenderOutput.
    """
    near, far, hit = ray_cube_intersect(origins, dirs)
    r = origins.shape[0]
    rgb = torch.zeros(r, 3, device=origins.device)
    opacity = torch.zeros(r, device=origins.device)
    depth = far.clamp(min=0).clone()
    samples = {}
    if return_samples:
        samples = {"weights": torch.zeros(r, n_samples, device=origins.device),
                   "t": torch.zeros(r, n_samples, device=origins.device),
                   "delta": torch.zeros(r, 1, device=origins.device)}
    if not hit.any():
        return RenderOutput(rgb, opacity, depth, **samples)
    o, d, near_h, far_h = origins[hit], dirs[hit], near[hit], far[hit]
    t, delta = stratified_samples(near_h, far_h, n_samples, generator)
    x = (o[:, None, :] + t[..., None] * d[:, None, :]).reshape(-1, 3)
    radius = None if pixel_radius is None else (t * pixel_radius).reshape(-1)
    out = field(x, radius)
    weights, _ = volume_weights(out.density.reshape(t.shape), delta)
    acc = weights.sum(dim=1)
    rgb = rgb.index_put((hit,), (weights[..., None] * out.albedo.reshape(*t.shape, 3)).sum(dim=1))
    opacity = opacity.index_put((hit,), acc)
    depth = depth.index_put((hit,), (weights * t).sum(dim=1) + (1 - acc) * far_h)
    if return_samples:
        middles = near_h[:, None] + (torch.arange(n_samples, device=t.device)[None] + 0.5) * delta
        samples = {"weights": samples["weights"].index_put((hit,), weights),
                   "t": samples["t"].index_put((hit,), middles),
                   "delta": samples["delta"].index_put((hit,), delta)}
    return RenderOutput(rgb, opacity, depth, **samples)


def composite(rgb: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Albedo accumulated along rays over a background: (...,3), (...,), (...,3) -> (...,3)."""
    return rgb + (1 - opacity[..., None]) * background


def march_rays(field: FieldFn, origins: torch.Tensor, dirs: torch.Tensor, step_size: float,
               generator: torch.Generator | None = None, grid=None, pixel_radius: float | None = None,
               return_samples: bool = False, early_stop: float = 1e-4) -> RenderOutput:
    """Render R rays by marching through the object cube with a fixed step, querying the field only where the
    empty-space grid is occupied (nerfacc's OccGridEstimator.sampling; instant-ngp's ray marching): the cost
    follows the object, not the cube.

    origins, dirs: (R,3), dirs unit length. step_size: object units between samples (occupancy.march_step);
    each ray starts at a random offset inside its first step (the step's middle without a generator).
    grid: an OccupancyGrid or None (every sample inside the cube is queried). pixel_radius: cone radius per unit
    distance, passed to the field as each sample's footprint. early_stop: when gradients are on, a first pass
    without them finds where each ray's transmittance falls below this, and the samples behind are dropped before
    the field is queried again with gradients (nerfacc's early_stop_eps; 0 = off). return_samples: also each
    sample's weight, position along the ray and the step (for the distortion loss; zeros where nothing was
    sampled). Returns per-ray RenderOutput (depth: the far bound where empty).
    """
    near, far, hit = ray_cube_intersect(origins, dirs)
    r, dev = origins.shape[0], origins.device
    rgb, opacity, depth = torch.zeros(r, 3, device=dev), torch.zeros(r, device=dev), far.clamp(min=0).clone()
    rays = hit.nonzero().squeeze(1)
    n = max(1, int(math.ceil(float((far[rays] - near[rays]).max()) / step_size))) if len(rays) else 1
    samples = {}
    if return_samples:
        samples = {"weights": torch.zeros(r, n, device=dev), "t": torch.zeros(r, n, device=dev),
                   "delta": torch.full((r, 1), step_size, device=dev)}
    if not len(rays):
        return RenderOutput(rgb, opacity, depth, **samples)
    o, d, near_h, far_h = origins[rays], dirs[rays], near[rays], far[rays]
    if generator is None:
        u = torch.full((len(rays), 1), 0.5, device=dev)
    else:
        u = torch.rand(len(rays), 1, generator=generator).to(dev)
    t = near_h[:, None] + (torch.arange(n, device=dev)[None] + u) * step_size  # (Rh, n)
    valid = t < far_h[:, None]
    x = o[:, None, :] + t[..., None] * d[:, None, :]
    if grid is not None:
        valid &= grid.lookup(x.reshape(-1, 3)).reshape(valid.shape)
    radius = None if pixel_radius is None else t * pixel_radius

    def query(mask):
        ray, k = mask.nonzero(as_tuple=True)
        return ray, k, field(x[ray, k], None if radius is None else radius[ray, k])

    if early_stop and torch.is_grad_enabled() and bool(valid.any()):
        with torch.no_grad():
            ray, k, out = query(valid)
            density = torch.zeros_like(t).index_put((ray, k), out.density.float())
            _, transmittance = volume_weights(density, torch.full_like(t[:, :1], step_size))
            valid &= transmittance > early_stop
    ray, k, out = query(valid)
    density = torch.zeros_like(t).index_put((ray, k), out.density.to(t.dtype))
    weights, _ = volume_weights(density, torch.full_like(t[:, :1], step_size))
    colour = torch.zeros(len(rays), 3, device=dev).index_add(0, ray, weights[ray, k, None] * out.albedo.to(t.dtype))
    acc = weights.sum(dim=1)
    rgb = rgb.index_put((rays,), colour)
    opacity = opacity.index_put((rays,), acc)
    depth = depth.index_put((rays,), (weights * t).sum(dim=1) + (1 - acc) * far_h)
    if return_samples:
        samples["weights"] = samples["weights"].index_put((rays,), weights)
        samples["t"] = samples["t"].index_put((rays,), t)
    return RenderOutput(rgb, opacity, depth, **samples)
