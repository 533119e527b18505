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
import torch.nn.functional as F

from ..cameras import camera_rays, focal_from_fov, sample_orbit
from ..fields import HashGridField
from ..fields.base import FieldOutput, TruncExp, inside_cube
from ..guidance.sds import ScoreDistillation
from ..models import DEFAULT_MODELS, load_diffusion
from ..render import composite, render_view
from ..render.occupancy import OccupancyGrid, skip_empty
from ..render.shading import shade, surface_normals
from ..spec import JobSpec
from .base import StepOutput

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# stable-dreamfusion's mix once the warm-up is over: 20% albedo, 40% textureless, 40% lambertian.
ALBEDO_P, TEXTURELESS_P = 0.2, 0.4


class BlobHashGridField(HashGridField):
    """HashGridField whose density starts as a ball: blob_density * (1 - |x| / blob_radius) is added before
    the exponential (threestudio's magic3d blob), so SDS shapes an object instead of growing one from fog."""

    def __init__(self, blob_density: float, blob_radius: float, **kw) -> None:
        super().__init__(**kw)
        self.blob_density, self.blob_radius = blob_density, blob_radius

    def forward(self, x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:
        h = self.mlp(self.encoding(x))
        blob = self.blob_density * (1 - x.norm(dim=-1) / self.blob_radius)
        density = TruncExp.apply(h[:, 0] + blob + self.density_bias) * inside_cube(x)
        return FieldOutput(density=density, albedo=torch.sigmoid(h[:, 1:]))


def make_field(spec: JobSpec):
    o = spec.options
    return BlobHashGridField(o.blob_density, o.blob_radius, levels=o.hash_levels, log2_size=o.hash_log2_size,
                             max_resolution=o.hash_max_resolution, width=o.mlp_width)


def model_dtype(precision: str, device: torch.device) -> torch.dtype:
    """"auto" is fp16 on CUDA (half the memory of the diffusion models) and fp32 elsewhere."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[precision]


class DreamFusion:
    def __init__(self, spec: JobSpec, device: torch.device) -> None:
        o = spec.options
        self.spec, self.device = spec, device
        self.field = make_field(spec).to(device)
        self.modules = {"field": self.field}
        self.occupancy = None
        if o.occupancy_resolution:
            self.occupancy = OccupancyGrid(o.occupancy_resolution, o.occupancy_threshold).to(device)
            self.modules["occupancy"] = self.occupancy
        # With cpu_offload the models stay on the CPU and visit the device one at a time (by hand:
        # accelerate is not a dependency).
        offload = o.cpu_offload and device.type == "cuda"
        models = load_diffusion(spec.models.get("diffusion", DEFAULT_MODELS["diffusion"]),
                                "cpu" if offload else device, model_dtype(o.precision, device), spec.allow_downloads)
        if o.attention_slicing:
            models.unet.set_attention_slice("auto")
        self.guidance = ScoreDistillation(models, spec.prompt, spec.negative_prompt, o.guidance_scale, o.t_range,
                                          o.overhead_deg, device, offload)
        # threestudio's eps for hash grids: Adam's default 1e-8 damps the updates of rarely-hit entries.
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=o.lr, betas=(0.9, 0.99), eps=1e-15)
        # Schedules are for 10k-step runs; a short run still reaches the final settings.
        self.warmup = min(o.albedo_warmup_steps, spec.steps // 5)
        self.latent_warmup = min(o.latent_warmup_steps, spec.steps // 5)
        self.ramp = min(o.regularizer_ramp_steps, spec.steps // 2)

    def learning_rate(self, step: int) -> float:
        return self.spec.options.lr

    def weights(self, step: int) -> dict[str, float]:
        o = self.spec.options
        ramp = min(1.0, step / self.ramp) if self.ramp else 1.0
        return {"sds": 1.0, "orientation": o.lambda_orientation * ramp, "opacity": o.lambda_opacity * ramp}

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        spec, o, size = self.spec, self.spec.options, self.spec.render.size
        # 1. Refresh the empty-space grid on its schedule; a random camera, shading, light and background.
        field = self.field
        if self.occupancy is not None:
            if step % o.occupancy_every == 0:
                self.occupancy.update(self.field, generator)
            field = skip_empty(self.field, self.occupancy)
        view = sample_orbit(spec.orbit, 1, generator)
        u, jitter = torch.rand(6, generator=generator).tolist(), torch.randn(3, generator=generator)
        # Latent steps are albedo-only, as Latent-NeRF's latent renders are unshaded: shape and colour first.
        latent = step < self.latent_warmup
        mode = ("albedo" if step < self.warmup or latent or u[0] < ALBEDO_P
                else "textureless" if u[0] < ALBEDO_P + TEXTURELESS_P else "lambertian")
        ambient = 0.1 + 0.9 * u[1]
        # A point light around the camera (threestudio): its direction jittered, its distance 0.8-1.5x the camera's.
        eye = view.c2w[0, :3, 3]
        light = (F.normalize(eye / eye.norm() + 0.5 * jitter, dim=0) * eye.norm() * (0.8 + 0.7 * u[2])).to(self.device)
        background = torch.tensor(u[3:6], device=self.device)
        # 2. Render albedo, opacity and depth with gradients.
        c2w = view.c2w[0].to(self.device)
        out = render_view(field, c2w, float(view.fov_deg[0]), size, spec.render.samples_per_ray, generator)
        # 3. One normal per ray at its expected surface point; shade and composite.
        origins, dirs = camera_rays(c2w, focal_from_fov(float(view.fov_deg[0]), size), size, size)
        opacity = out.opacity.reshape(-1)
        points, normals = surface_normals(field, origins, dirs, out.depth.reshape(-1), opacity)
        rgb = shade(mode, out.rgb.reshape(-1, 3), opacity, normals, points, light, ambient)
        image = composite(rgb, opacity, background).reshape(1, size, size, 3)
        # 4. SDS under the view prompt (in the latent warm-up without the VAE encoder); regularisers on
        # the normals and the opacity.
        losses = self.guidance.loss(image, view, generator, approximate=latent)
        # Normals facing away from the camera on visible surfaces (Ref-NeRF's orientation loss).
        losses["orientation"] = (opacity.detach() * (normals * dirs).sum(-1).clamp(min=0).square()).mean()
        # Binary entropy: each ray either fully empty or fully opaque, no fog.
        a = opacity.clamp(1e-5, 1 - 1e-5)
        losses["opacity"] = -(a * torch.log2(a) + (1 - a) * torch.log2(1 - a)).mean()
        metrics = {"opacity": opacity.mean().item(),
                   "shading": float(("albedo", "lambertian", "textureless").index(mode)), "latent": float(latent)}
        if self.occupancy is not None:
            metrics["occupied"] = self.occupancy.fraction
        return StepOutput(losses, metrics)


def build(spec: JobSpec, device: torch.device) -> DreamFusion:
    return DreamFusion(spec, device)
