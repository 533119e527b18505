"""DietNeRF (Jain et al. 2021): few-view reconstruction kept consistent by CLIP image embeddings.

Reconstruction (engine/methods/reconstruct.py) plus, every k steps, the semantic consistency
loss: a view rendered from a random pose should have the CLIP image embedding of a random
training photo ("a bulldozer is a bulldozer from any viewpoint"). Defaults from the paper and
the official code: k = 10, weight 0.1, CLIP ViT-B/32. Random poses are drawn from the sphere
band the training cameras span (their distances and elevations, all azimuths), as the paper
samples around the object; the render is composited over white like the targets.
"""
from __future__ import annotations

import torch

from ...cameras import sample_orbit
from ...guidance.clip_consistency import SemanticConsistency
from ...models.clip import load_clip
from ...render import composite, render_view
from ...spec import JobSpec, OrbitConfig
from .. import model_name
from ..base import StepOutput
from ..reconstruct.method import Reconstruct, make_scene


def training_band(c2w: torch.Tensor, intrinsics: torch.Tensor, height: int) -> OrbitConfig:
    """The orbit ranges the cameras (N,4,4) span around the object's centre: distance, elevation, vertical FOV."""
    eye = c2w[:, :3, 3]
    distance = eye.norm(dim=-1)
    elevation = torch.rad2deg(torch.asin((eye[:, 2] / distance).clamp(-1, 1)))
    fov = torch.rad2deg(2 * torch.atan(0.5 * height / intrinsics[:, 1]))
    return OrbitConfig(radius=(max(float(distance.min()), 1.8), max(float(distance.max()), 1.8)),
                       elevation_deg=(float(elevation.min()), float(elevation.max())), azimuth_deg=(0.0, 360.0),
                       fov_deg=(float(fov.min()), float(fov.max())))


class DietNeRF(Reconstruct):
    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        super().__init__(spec, device)
        cap, white = self.capture, torch.ones(3)
        train = self.train
        # Targets as the renders are seen: over white where the photos have alpha.
        targets = cap.images[train]
        if cap.alpha is not None:
            targets = composite(targets * cap.alpha[train, ..., None], cap.alpha[train], white)
        clip = load_clip(model_name(spec, "clip"), device, spec.allow_downloads)
        self.semantic = SemanticConsistency(clip, targets.to(device))
        self.band = training_band(cap.c2w[train], cap.intrinsics[train], cap.size[0])

    def semantic_step(self, step: int) -> bool:
        return step % self.spec.options.semantic_every == 0

    def weights(self, step: int) -> dict[str, float]:
        weights = super().weights(step)
        if self.semantic_step(step):
            weights["semantic"] = self.spec.options.lambda_semantic
        return weights

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        o = self.spec.options
        # 1-3. Refresh the empty-space grid; photometric loss on random training rays.
        field = self.empty_space.field_for_step(self.field, step, generator)
        losses, metrics = self.photometric(field, o.rays_per_step, generator)
        # 4. Every k steps: a render from a random pose should embed like a random training photo.
        if self.semantic_step(step):
            view = sample_orbit(self.band, 1, generator)
            target = int(torch.randint(len(self.train), (1,), generator=generator))
            out = render_view(field, view.c2w[0].to(self.device), float(view.fov_deg[0]), o.semantic_size,
                              self.spec.render.samples_per_ray, generator)
            image = composite(out.rgb, out.opacity, torch.ones(3, device=self.device))
            losses.update(self.semantic.loss(image[None], target))
            metrics["semantic_cosine"] = 1 - losses["semantic"].item()
        return StepOutput(losses, {**metrics, **self.empty_space.metrics()})


def build(spec: JobSpec, device: torch.device) -> DietNeRF:
    return DietNeRF(spec, device)


__all__ = ["DietNeRF", "build", "make_scene", "training_band"]
