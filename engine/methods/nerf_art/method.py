"""NeRF-Art (Wang et al. 2022): restyle a reconstructed capture with a text prompt.

Two phases on one field. First the capture is reconstructed (engine/methods/reconstruct.py),
or the field of a finished reconstruct/dietnerf job is loaded (`inputs.source_job`). Then the
style steps fine-tune it so renders from the capture's poses move in CLIP space from the
source ("a photo") towards the style prompt: the relative directional loss, the global and
local (patch) contrastive losses against negative styles (tau 0.07), a VGG perceptual loss
against the source render at the same pose (keeps the structure), and the paper's weight
regularisation, which is mip-NeRF 360's distortion loss (against clouds near the camera). Weights
from the paper: 1, 0.2, 0.1, 2 and 0.1.

Memory (as the paper): the style image is rendered whole without gradients, dL/dimage is
computed once, then rays are re-rendered in chunks with gradients and the cached gradient is
back-propagated chunk by chunk (engine/render/chunked.py), so memory does not grow with the
image. Those losses reach the run loop detached (already back-propagated); the distortion
loss, on a random subset of rays, goes the usual way.
Where we depart: a hash-grid field (the official code fine-tunes NeuS/NeRF MLPs) with a
higher learning rate than its 5e-4; the source field is a frozen copy kept in checkpoints.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from ...fields import build_field
from ...guidance.clip_style import StyleGuidance
from ...guidance.negative_styles import NEGATIVE_STYLES, negative_styles_for
from ...guidance.perceptual import PerceptualLoss
from ...losses import distortion
from ...models.clip import load_clip
from ...models.perceptual import load_perceptual
from ...options import FieldOptions
from ...render import composite, render_rays
from ...render.chunked import backprop_in_chunks
from ...render.image import PIXEL_RADIUS
from ...spec import JobSpec
from .. import model_name
from ..base import Phase, Scene, StepOutput
from ..reconstruct.method import Reconstruct
from ..source_job import field_options, frozen_source

log = logging.getLogger("engine.nerf_art")

# Rays per style step that carry the distortion loss (a random subset of the image's).
DISTORTION_RAYS = 1024


def make_scene(spec: JobSpec, representation: dict | None = None) -> Scene:
    """The styled field, for render and export. Its settings come from the checkpoint's representation (so a
    finished job needs nothing outside its folder); checkpoints written before that was recorded fall back
    to the source job's job.json."""
    options = FieldOptions(**representation["field"]) if representation else field_options(spec)
    field = build_field(options)
    return Scene(modules={"field": field}, field=field)


class NerfArt(Reconstruct):
    def divergence_hint(self, step: int) -> str:
        o = self.spec.options
        return f"lower options.style_lr (now {o.style_lr:g})" if self.styling(step) else super().divergence_hint(step)

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        o = spec.options
        self.field_options = field_options(spec)
        super().__init__(spec, device)
        # 1. The source field: reconstructed here first, or a finished job's (then in its object frame).
        reconstruct_steps = frozen_source(self, device)
        self.phases = (Phase("reconstruct", reconstruct_steps), Phase("style", spec.steps))
        # 2. Guidance: CLIP for the style losses, VGG for the structure.
        clip = load_clip(model_name(spec, "clip"), device, spec.allow_downloads)
        negatives = negative_styles_for(spec.prompt, list(o.negative_styles) or list(NEGATIVE_STYLES))
        self.style = StyleGuidance(clip, o.source_text, spec.prompt, negatives, o.tau, o.n_patches, o.patch_fraction)
        self.perceptual = PerceptualLoss(load_perceptual(model_name(spec, "perceptual"), device, spec.allow_downloads))
        self.source_renders: dict[int, torch.Tensor] = {}

    def make_scene(self, spec: JobSpec) -> Scene:
        return make_scene(spec, self.representation())

    def representation(self) -> dict:
        return {"field": dataclasses.asdict(self.field_options)}

    def styling(self, step: int) -> bool:
        return self.phase(step).name == "style"

    def learning_rate(self, step: int) -> float:
        return self.spec.options.style_lr if self.styling(step) else super().learning_rate(step)

    def weights(self, step: int) -> dict[str, float]:
        if not self.styling(step):
            return super().weights(step)
        o = self.spec.options
        return {"directional": o.lambda_directional, "global_contrastive": o.lambda_global,
                "local_contrastive": o.lambda_local, "perceptual": o.lambda_perceptual,
                "distortion": o.style_lambda_distortion}

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        if not self.styling(step):
            return super().step(step, generator)
        spec, o = self.spec, self.spec.options
        if step == self.phases[0].steps and spec.inputs.source_job is None:
            # The reconstruction is done: it becomes the frozen source; Adam starts afresh for the style.
            self.source.load_state_dict(self.field.state_dict())
            self.optimizer.state.clear()
        # 1. Refresh the empty-space grid; a training pose, its rays at the style size.
        field = self.empty_space.field_for_step(self.field, step, generator)
        index = int(self.train[torch.randint(len(self.train), (1,), generator=generator)])
        origins, dirs, (h, w), focal = self.frame_camera(index)
        white = torch.ones(3, device=self.device)

        def render(field_fn, o_, d_):
            out = render_rays(field_fn, o_, d_, spec.render.samples_per_ray, None, pixel_radius=PIXEL_RADIUS / focal)
            return composite(out.rgb, out.opacity, white)

        # 2. The source render at this pose (deterministic: cached per frame).
        if index not in self.source_renders:
            with torch.no_grad():
                self.source_renders[index] = torch.cat([render(self.source, origins[i:i + 16384], dirs[i:i + 16384])
                                                        for i in range(0, len(origins), 16384)]).reshape(h, w, 3)
        source = self.source_renders[index]
        weights = self.weights(step)

        def image_loss(image: torch.Tensor):
            losses = self.style.loss(image.reshape(1, h, w, 3), source[None], generator)
            losses.update(self.perceptual.loss(image.reshape(1, h, w, 3), source[None]))
            total = sum(weights[k] * v for k, v in losses.items())
            return total, {k: v.detach() for k, v in losses.items()}

        # 3. Style and perceptual losses on the whole image, back-propagated ray chunk by ray chunk.
        chunk = o.chunk_rays or len(origins)
        _, losses, image = backprop_in_chunks(lambda o_, d_: render(field, o_, d_), origins, dirs, image_loss, chunk)
        losses = {k: torch.as_tensor(v, device=self.device) for k, v in losses.items()}
        # 4. The distortion loss on a random subset of rays, with gradients, for the run loop.
        subset = torch.randperm(len(origins), generator=generator)[:DISTORTION_RAYS].to(self.device)
        out = render_rays(field, origins[subset], dirs[subset], spec.render.samples_per_ray, None,
                          pixel_radius=PIXEL_RADIUS / focal, return_samples=True)
        losses["distortion"] = distortion(out.weights, out.t).mean()
        return StepOutput(losses, {"style_frame": float(index), **self.empty_space.metrics()})


def build(spec: JobSpec, device: torch.device) -> NerfArt:
    return NerfArt(spec, device)
