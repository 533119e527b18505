"""DreamFusion (Poole, Jain, Barron, Mildenhall, ICLR 2023, arXiv 2209.14988): a NeRF optimised by Score
Distillation Sampling through Stable Diffusion. The card and options; the composition root is method.py."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import FieldOptions, OccupancyOptions, check, check_grid_backbone, check_non_negative
from ..base import MethodCard, Quality

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass(frozen=True)
class DreamFusionOptions:
    """DreamFusion (Poole et al. 2022); defaults from the paper, threestudio and stable-dreamfusion."""

    guidance_scale: float = 100.0
    """Classifier-free guidance scale (paper: 100; 7.5 gives over-smoothed blobs)."""
    t_range: tuple[float, float] = (0.02, 0.98)
    """Range of the diffusion timestep, as fractions of the scheduler's training timesteps."""
    overhead_deg: float = 60.0
    """Elevation above which the prompt gets ", overhead view" instead of front/side/back."""
    albedo_warmup_steps: int = 2000
    """Steps of albedo-only shading before lambertian and textureless join; capped at a fifth of the run."""
    latent_warmup_steps: int = 0
    """First steps whose albedo render is mapped to the diffusion latents by a fixed linear map instead of the
    VAE encoder (0 = off): cheaper early steps, with a cruder colour target; the shape forms earlier.
    Shading is albedo-only during them; capped at a fifth of the run."""
    lambda_orientation: float = 1000.0
    """Weight of the orientation loss (normals facing away from the camera; threestudio ramps to 1000)."""
    lambda_opacity: float = 1e-3
    """Weight of the binary entropy of each ray's opacity (stable-dreamfusion's lambda_entropy)."""
    regularizer_ramp_steps: int = 5000
    """Steps over which both regulariser weights rise linearly from 0; capped at half the run."""
    lr: float = 1e-2
    """Adam learning rate of the hash grid and its MLP (threestudio)."""
    blob_density: float = 10.0
    """Pre-activation density added at the centre, falling linearly to 0 at blob_radius (threestudio's
    magic3d blob), so the field starts with an object; 0 = off."""
    blob_radius: float = 0.5
    """Radius of that blob in the object cube [-1,1]^3."""
    field: FieldOptions = FieldOptions(backbone="hashgrid", hash_levels=8, hash_log2_size=19,
                                       hash_max_resolution=512, mlp_width=64)
    """The hash grid: as Dream Fields here, 8 levels to 512 is plenty for 64 px renders and half the cost of
    16; MLP width 64 (instant-ngp)."""
    occupancy: OccupancyOptions = OccupancyOptions()
    """The empty-space grid."""
    precision: str = "auto"
    """Dtype of the diffusion models: "auto" (fp16 on CUDA, else fp32), "fp32", "fp16" or "bf16"."""
    attention_slicing: bool = False
    """Compute the UNet's attention in slices: less GPU memory, a little slower."""
    cpu_offload: bool = False
    """Keep the text encoder, VAE and UNet on the CPU, each moved to the GPU only while it runs."""

    def validate(self, key: str) -> None:
        check(self.guidance_scale >= 0, f"{key}.guidance_scale", self.guidance_scale, "must be >= 0")
        lo, hi = self.t_range
        check(0 <= lo <= hi < 1, f"{key}.t_range", list(self.t_range), "must be two fractions with 0 <= min <= max < 1")
        check(0 <= self.overhead_deg <= 90, f"{key}.overhead_deg", self.overhead_deg, "must lie within [0, 90]")
        check_non_negative(self, key, "albedo_warmup_steps", "latent_warmup_steps", "regularizer_ramp_steps",
                           "lambda_orientation", "lambda_opacity", "blob_density")
        check(0 < self.lr < 1, f"{key}.lr", self.lr, "must be in (0, 1)")
        check(0 < self.blob_radius <= 2, f"{key}.blob_radius", self.blob_radius, "must be in (0, 2]")
        check_grid_backbone(self, key)
        check(self.precision in PRECISIONS, f"{key}.precision", self.precision,
              'must be "auto", "fp32", "fp16" or "bf16"')


# Presets: 64 px renders as in stable-dreamfusion/threestudio (the engine upsamples to the VAE's
# 512), 10k steps as in the paper for "high", twice the render for it.
CARD = MethodCard(
    name="dreamfusion",
    title="DreamFusion",
    summary="Text to NeRF by score distillation through Stable Diffusion",
    source="Poole, Jain, Barron, Mildenhall, ICLR 2023 (arXiv 2209.14988); threestudio, stable-dreamfusion",
    input="text",
    takes_prompt=True,
    options=DreamFusionOptions,
    # threestudio's cameras (distance 1.5-2, elevation -10..45, FOV 40-70, all azimuths) with the
    # distance scaled to our cube, whose corners (1.73 from the centre) the cameras must stay outside
    # of; 64 px renders upsampled to the VAE's 512 (paper).
    defaults={"steps": 10000, "render": {"size": 64, "samples_per_ray": 64},
              "orbit": {"radius": (2.5, 3.0), "elevation_deg": (-10.0, 45.0), "azimuth_deg": (0.0, 360.0),
                        "fov_deg": (40.0, 70.0)}},
    presets={"draft": Quality(steps=1000, render_size=64, mesh_resolution=128),
             "standard": Quality(steps=5000, render_size=64, mesh_resolution=256),
             "high": Quality(steps=10000, render_size=128, mesh_resolution=256)},
    roles={"diffusion": None},
)
