"""DreamFusion (Poole et al. 2022): a NeRF optimised by Score Distillation Sampling through Stable Diffusion.

Follows the paper with threestudio's and stable-dreamfusion's choices where the paper used
Imagen: Stable Diffusion 2.1-base, guidance scale 100, t in [0.02, 0.98], view-dependent
prompts, random albedo / lambertian / textureless shading after an albedo-only warm-up, an
orientation loss and an entropy loss on opacity with ramped weights, a hash grid with a
density blob at the centre, Adam lr 1e-2. Where we depart: normals are one finite-difference
normal per ray at its expected surface point (engine/render/shading.py), not per sample by
autograd; the background is a random solid colour per step, not a learned one.

Optional latent warm-up (options.latent_warmup_steps, after Latent-NeRF and threestudio's
`rgb_as_latents`): the first steps skip the VAE encoder. The field keeps its 3-channel albedo
(the mesh bakes it), so instead of rendering 4 latent channels the albedo render is mapped to
latents by a fixed affine map (engine/guidance/sds.py: rgb_to_latent_map).
"""
from __future__ import annotations

import torch

from ...cameras import sample_orbit
from ...captures import text_object_frame
from ...fields import build_field
from ...guidance.sds import ScoreDistillation
from ...losses import opacity_entropy, orientation
from ...models.diffusion import load_diffusion
from ...render.occupancy import EmptySpace
from ...render.shading import SHADINGS, render_shaded, sample_lighting
from ...spec import JobSpec
from .. import model_name
from ..base import Method, Phase, Scene, StepOutput

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def make_scene(spec: JobSpec, representation: dict | None = None) -> Scene:
    """The hash grid with its starting density blob, as job.json's options describe it (for render and export)."""
    o = spec.options
    field = build_field(o.field, blob_density=o.blob_density, blob_radius=o.blob_radius)
    return Scene(modules={"field": field}, field=field)


def model_dtype(precision: str, device: torch.device) -> torch.dtype:
    """"auto" is fp16 on CUDA (half the memory of the diffusion models) and fp32 elsewhere."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[precision]


class DreamFusion(Method):
    def divergence_hint(self, step: int) -> str:
        # SDS's gradient grows with the guidance scale: at 100 (the paper's) it, as much as the lr, can blow up.
        o = self.spec.options
        return f"lower options.guidance_scale (now {o.guidance_scale:g}) or options.lr (now {o.lr:g})"

    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        o = spec.options
        self.spec, self.device = spec, device
        self.phases = (Phase("generate", spec.steps),)
        self.frame = text_object_frame(spec.orbit.look_at)
        # 1. The field (a hash grid that starts as a blob) and its empty-space grid.
        self.scene = make_scene(spec)
        self.field = self.scene.modules["field"].to(device)
        self.empty_space = EmptySpace(o.occupancy, device)
        self.modules = {"field": self.field, **self.empty_space.modules}
        # 2. Guidance: SDS through Stable Diffusion.
        # With cpu_offload the models stay on the CPU and visit the device one at a time (by hand:
        # accelerate is not a dependency).
        offload = o.cpu_offload and device.type == "cuda"
        models = load_diffusion(model_name(spec, "diffusion"),
                                "cpu" if offload else device, model_dtype(o.precision, device), spec.allow_downloads)
        if o.attention_slicing:
            models.unet.set_attention_slice("auto")
        self.guidance = ScoreDistillation(models, spec.prompt, spec.negative_prompt, o.guidance_scale, o.t_range,
                                          o.overhead_deg, device, offload)
        # 3. Adam; threestudio's eps for hash grids: Adam's default 1e-8 damps the updates of rarely-hit entries.
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=o.lr, betas=(0.9, 0.99), eps=1e-15)
        # Schedules are for 10k-step runs; a short run still reaches the final settings.
        self.schedule(spec.steps)

    def schedule(self, steps: int) -> None:
        """Warm-up and ramp lengths for a run of `steps`."""
        o = self.spec.options
        self.warmup = min(o.albedo_warmup_steps, steps // 5)
        self.latent_warmup = min(o.latent_warmup_steps, steps // 5)
        self.ramp = min(o.regularizer_ramp_steps, steps // 2)

    def fit_steps(self, total: int, done: int = 0) -> None:
        super().fit_steps(total, done)  # a time budget: the schedules follow the fitted length
        self.schedule(self.phases[0].steps)

    def learning_rate(self, step: int) -> float:
        return self.spec.options.lr

    def weights(self, step: int) -> dict[str, float]:
        o = self.spec.options
        ramp = min(1.0, step / self.ramp) if self.ramp else 1.0
        return {"sds": 1.0, "orientation": o.lambda_orientation * ramp, "opacity": o.lambda_opacity * ramp}

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        spec, size = self.spec, self.spec.render.size
        # 1. Refresh the empty-space grid on its schedule; a random camera, shading, light and background.
        field = self.empty_space.field_for_step(self.field, step, generator)
        view = sample_orbit(spec.orbit, 1, generator)
        # Latent steps are albedo-only, as Latent-NeRF's latent renders are unshaded: shape and colour first.
        latent = step < self.latent_warmup
        lighting = sample_lighting(view.c2w[0, :3, 3], step < self.warmup or latent, generator, self.device)
        # 2. Render albedo, opacity and depth with gradients; 3. one normal per ray at its expected surface
        # point; shade and composite.
        render = render_shaded(field, view.c2w[0].to(self.device), float(view.fov_deg[0]), size,
                               spec.render.samples_per_ray, lighting, generator)
        image, opacity, normals = render.image, render.opacity, render.normals
        # 4. SDS under the view prompt (in the latent warm-up without the VAE encoder); regularisers on
        # the normals and the opacity.
        losses = self.guidance.loss(image, view, generator, approximate=latent)
        losses["orientation"] = orientation(normals, render.dirs, opacity)
        losses["opacity"] = opacity_entropy(opacity)
        metrics = {"opacity": opacity.mean().item(),
                   "shading": float(SHADINGS.index(lighting.mode)), "latent": float(latent),
                   **self.empty_space.metrics()}
        return StepOutput(losses, metrics)


def build(spec: JobSpec, device: torch.device) -> DreamFusion:
    return DreamFusion(spec, device)
