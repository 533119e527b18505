"""Per-method defaults and option dataclasses (job.json `options`), free of torch.

They live apart from the method files (which import torch) so that a job is validated
before anything heavy is imported. Each method file reads its options from here.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import invalid_job


def _check(ok: bool, key: str, value, why: str) -> None:
    if not ok:
        raise invalid_job(key, value, why)


def _check_field(o, key: str) -> None:
    """The hash grid and MLP settings every method's options share (mlp_width None = the method's default)."""
    _check(1 <= o.hash_levels <= 32, f"{key}.hash_levels", o.hash_levels, "must be between 1 and 32")
    _check(10 <= o.hash_log2_size <= 24, f"{key}.hash_log2_size", o.hash_log2_size, "must be between 10 and 24")
    _check(16 <= o.hash_max_resolution <= 8192, f"{key}.hash_max_resolution", o.hash_max_resolution,
           "must be between 16 and 8192")
    _check(o.mlp_width is None or 8 <= o.mlp_width <= 1024, f"{key}.mlp_width", o.mlp_width,
           "must be between 8 and 1024")


def _check_occupancy(o, key: str) -> None:
    """The empty-space grid settings every method's options share."""
    _check(o.occupancy_resolution == 0 or 8 <= o.occupancy_resolution <= 256, f"{key}.occupancy_resolution",
           o.occupancy_resolution, "must be 0 (off) or between 8 and 256")
    _check(o.occupancy_threshold >= 0, f"{key}.occupancy_threshold", o.occupancy_threshold, "must be >= 0")
    _check(o.occupancy_every >= 1, f"{key}.occupancy_every", o.occupancy_every, "must be >= 1")


@dataclass(frozen=True)
class DreamFieldsOptions:
    """Dream Fields (Jain et al. 2022); defaults from the paper and google-research/dreamfields."""

    field: str = "hashgrid"
    """"hashgrid" (multiresolution hash grid, fast) or "mlp" (the paper's residual MLP with integrated PE)."""
    lr: float | None = None
    """Peak Adam learning rate; null = 1e-4 for "mlp" (paper), 5e-3 for "hashgrid"."""
    lr_warmup_steps: int = 1500
    """Steps of exponential warm-up from lr/10 to lr (paper: 1500); capped at a fifth of the run."""
    n_augments: int = 8
    """Random crops of each render given to CLIP (paper: 8)."""
    crop_fraction: float = 80 / 88
    """Side of each crop over the render side (paper: 80/88 at low quality)."""
    transmittance_target: tuple[float, float] = (0.4, 0.88)
    """Target mean transmittance, annealed from the first to the second value (paper: 40% -> 88%)."""
    transmittance_anneal_steps: int = 500
    """Steps of the exponential anneal of the target (official code: ~500); capped at a fifth of the run."""
    bg_blur_max_px: float = 10.0
    """Largest Gaussian blur sigma, in pixels, of the augmentation backgrounds (paper: 10)."""
    hash_levels: int = 8
    """Hash grid: number of resolution levels, from 16 cells across the cube to hash_max_resolution."""
    hash_log2_size: int = 19
    """Hash grid: log2 of the entries per level."""
    hash_max_resolution: int = 512
    """Hash grid: cells across the cube at the finest level. An 88 px render of the cube from
    radius 4 spans ~75 px, so 512 leaves headroom for the 168-224 px presets."""
    mlp_width: int | None = None
    """Width of the field's MLP; null = 64 for "hashgrid" (instant-ngp), 128 for "mlp"."""
    mlp_blocks: int = 2
    """Residual blocks of the "mlp" backbone."""
    occupancy_resolution: int = 64
    """Cells per side of the empty-space grid; samples in empty cells skip the field (0 = off)."""
    occupancy_threshold: float = 0.01
    """Density below which a cell is empty: over the whole cube it would absorb at most 2% of the light."""
    occupancy_every: int = 16
    """Steps between updates of the empty-space grid (as instant-ngp)."""

    def validate(self, key: str) -> None:
        _check(self.field in ("hashgrid", "mlp"), f"{key}.field", self.field, 'must be "hashgrid" or "mlp"')
        _check(self.lr is None or 0 < self.lr < 1, f"{key}.lr", self.lr, "must be in (0, 1)")
        _check(self.lr_warmup_steps >= 0, f"{key}.lr_warmup_steps", self.lr_warmup_steps, "must be >= 0")
        _check(1 <= self.n_augments <= 64, f"{key}.n_augments", self.n_augments, "must be between 1 and 64")
        _check(0.1 <= self.crop_fraction <= 1, f"{key}.crop_fraction", self.crop_fraction, "must be in [0.1, 1]")
        lo, hi = self.transmittance_target
        _check(0 < lo <= hi < 1, f"{key}.transmittance_target", list(self.transmittance_target),
               "must be two fractions with 0 < start <= end < 1")
        _check(self.transmittance_anneal_steps >= 0, f"{key}.transmittance_anneal_steps",
               self.transmittance_anneal_steps, "must be >= 0")
        _check(self.bg_blur_max_px >= 0, f"{key}.bg_blur_max_px", self.bg_blur_max_px, "must be >= 0")
        _check_field(self, key)
        _check(1 <= self.mlp_blocks <= 16, f"{key}.mlp_blocks", self.mlp_blocks, "must be between 1 and 16")
        _check_occupancy(self, key)


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
    hash_levels: int = 8
    """Hash grid: number of resolution levels, from 16 cells across the cube to hash_max_resolution
    (as Dream Fields here: 8 levels to 512 is plenty for 64 px renders and half the cost of 16)."""
    hash_log2_size: int = 19
    """Hash grid: log2 of the entries per level."""
    hash_max_resolution: int = 512
    """Hash grid: cells across the cube at the finest level."""
    mlp_width: int = 64
    """Width of the field's MLP (instant-ngp)."""
    occupancy_resolution: int = 64
    """Cells per side of the empty-space grid; samples in empty cells skip the field (0 = off)."""
    occupancy_threshold: float = 0.01
    """Density below which a cell is empty."""
    occupancy_every: int = 16
    """Steps between updates of the empty-space grid."""
    precision: str = "auto"
    """Dtype of the diffusion models: "auto" (fp16 on CUDA, else fp32), "fp32", "fp16" or "bf16"."""
    attention_slicing: bool = False
    """Compute the UNet's attention in slices: less GPU memory, a little slower."""
    cpu_offload: bool = False
    """Keep the text encoder, VAE and UNet on the CPU, each moved to the GPU only while it runs."""

    def validate(self, key: str) -> None:
        _check(self.guidance_scale >= 0, f"{key}.guidance_scale", self.guidance_scale, "must be >= 0")
        lo, hi = self.t_range
        _check(0 <= lo <= hi < 1, f"{key}.t_range", list(self.t_range), "must be two fractions with 0 <= min <= max < 1")
        _check(0 <= self.overhead_deg <= 90, f"{key}.overhead_deg", self.overhead_deg, "must lie within [0, 90]")
        for name in ("albedo_warmup_steps", "latent_warmup_steps", "regularizer_ramp_steps"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", getattr(self, name), "must be >= 0")
        for name in ("lambda_orientation", "lambda_opacity", "blob_density"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", getattr(self, name), "must be >= 0")
        _check(0 < self.lr < 1, f"{key}.lr", self.lr, "must be in (0, 1)")
        _check(0 < self.blob_radius <= 2, f"{key}.blob_radius", self.blob_radius, "must be in (0, 2]")
        _check_field(self, key)
        _check_occupancy(self, key)
        _check(self.precision in ("auto", "fp32", "fp16", "bf16"), f"{key}.precision", self.precision,
               'must be "auto", "fp32", "fp16" or "bf16"')


@dataclass(frozen=True)
class ReconstructOptions:
    """Fit a field to a capture's photos (a NeRF with instant-ngp's hash grid and empty-space skipping)."""

    rays_per_step: int = 4096
    """Random rays (pixels drawn from all training images) per step (instant-ngp trains on batches of rays)."""
    lr: float = 1e-2
    """Adam learning rate of the hash grid and its MLP (instant-ngp, threestudio)."""
    lr_final_fraction: float = 0.1
    """The learning rate decays exponentially to this fraction of lr over the run."""
    max_image_size: int = 512
    """Images larger than this (longest side, pixels) are downsampled on load; intrinsics follow."""
    holdout_every: int = 0
    """Hold out every k-th frame (0 = none) as test views: not trained on, their PSNR is reported at the end.
    The NeRF-synthetic layout's transforms_test.json frames are always test views."""
    hash_levels: int = 12
    """Hash grid: number of resolution levels, from 16 cells across the cube to hash_max_resolution."""
    hash_log2_size: int = 19
    """Hash grid: log2 of the entries per level."""
    hash_max_resolution: int = 1024
    """Hash grid: cells across the cube at the finest level (photos carry more detail than 64 px SDS renders)."""
    mlp_width: int = 64
    """Width of the field's MLP (instant-ngp)."""
    occupancy_resolution: int = 64
    """Cells per side of the empty-space grid; samples in empty cells skip the field (0 = off)."""
    occupancy_threshold: float = 0.01
    """Density below which a cell is empty."""
    occupancy_every: int = 16
    """Steps between updates of the empty-space grid."""
    lambda_opacity: float = 1e-3
    """Weight of the binary entropy of each ray's opacity against floaters and fog (0 = off)."""
    lambda_distortion: float = 0.01
    """Weight of mip-NeRF 360's distortion loss (each ray's weights gathered on one thin surface):
    crisper surfaces and fewer floaters for the mesh (mip-NeRF 360: 0.01; 0 = off)."""

    def validate(self, key: str) -> None:
        _check(self.lambda_distortion >= 0, f"{key}.lambda_distortion", self.lambda_distortion, "must be >= 0")
        _check(64 <= self.rays_per_step <= 1 << 20, f"{key}.rays_per_step", self.rays_per_step,
               "must be between 64 and 1048576")
        _check(0 < self.lr < 1, f"{key}.lr", self.lr, "must be in (0, 1)")
        _check(0 < self.lr_final_fraction <= 1, f"{key}.lr_final_fraction", self.lr_final_fraction, "must be in (0, 1]")
        _check(16 <= self.max_image_size <= 8192, f"{key}.max_image_size", self.max_image_size,
               "must be between 16 and 8192")
        _check(self.holdout_every == 0 or self.holdout_every >= 2, f"{key}.holdout_every", self.holdout_every,
               "must be 0 (no held-out frames) or >= 2")
        _check_field(self, key)
        _check_occupancy(self, key)
        _check(self.lambda_opacity >= 0, f"{key}.lambda_opacity", self.lambda_opacity, "must be >= 0")


@dataclass(frozen=True)
class DietNeRFOptions(ReconstructOptions):
    """DietNeRF (Jain et al. 2021): reconstruction from few views plus CLIP semantic consistency."""

    semantic_every: int = 10
    """Steps between semantic consistency losses (paper: k = 10, robust in 10-16)."""
    lambda_semantic: float = 0.1
    """Weight of the semantic consistency loss (official code 0.1; the JAX port 0.01)."""
    semantic_size: int = 64
    """Side of the render from a random pose given to CLIP (paper: 168, resized to CLIP's input);
    smaller is cheaper on the CPU, and CLIP sees it resized either way."""

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.semantic_every >= 1, f"{key}.semantic_every", self.semantic_every, "must be >= 1")
        _check(self.lambda_semantic >= 0, f"{key}.lambda_semantic", self.lambda_semantic, "must be >= 0")
        _check(self.semantic_size % 8 == 0 and 16 <= self.semantic_size <= 512, f"{key}.semantic_size",
               self.semantic_size, "must be a multiple of 8 between 16 and 512")


@dataclass(frozen=True)
class NerfArtOptions(ReconstructOptions):
    """NeRF-Art (Wang et al. 2022): restyle a reconstruction with CLIP directional and contrastive losses."""

    reconstruct_steps: int = 2000
    """Steps of reconstruction before the style steps, when inputs.source_job is not given."""
    style_lr: float = 1e-3
    """Adam learning rate of the style fine-tuning (official code 5e-4 on its MLP; a hash grid takes more)."""
    source_text: str = "a photo"
    """Text describing the source, the start of the directional loss's text direction (official code)."""
    negative_styles: tuple[str, ...] = ()
    """Negative style texts of the contrastive losses; empty = the list shipped with the engine."""
    n_patches: int = 8
    """Random patches of each stylised render in the local contrastive loss."""
    patch_fraction: float = 0.5
    """Side of each patch over the render side."""
    tau: float = 0.07
    """InfoNCE temperature of the contrastive losses (paper)."""
    lambda_directional: float = 1.0
    """Weight of the relative directional CLIP loss (paper)."""
    lambda_global: float = 0.2
    """Weight of the global contrastive loss (paper)."""
    lambda_local: float = 0.1
    """Weight of the local (patch) contrastive loss (paper)."""
    lambda_perceptual: float = 2.0
    """Weight of the VGG perceptual loss against the source render (paper: ~2)."""
    lambda_weight_reg: float = 0.1
    """Weight of the ray-weight spread regulariser against clouds near the camera."""
    chunk_rays: int = 4096
    """Rays per chunk when the cached image gradient is back-propagated (0 = the whole image at once)."""

    def validate(self, key: str) -> None:
        super().validate(key)
        _check(self.reconstruct_steps >= 0, f"{key}.reconstruct_steps", self.reconstruct_steps, "must be >= 0")
        _check(0 < self.style_lr < 1, f"{key}.style_lr", self.style_lr, "must be in (0, 1)")
        _check(self.source_text.strip() != "", f"{key}.source_text", self.source_text, "must not be empty")
        for i, text in enumerate(self.negative_styles):
            _check(text.strip() != "", f"{key}.negative_styles[{i}]", text, "must not be empty")
        _check(1 <= self.n_patches <= 64, f"{key}.n_patches", self.n_patches, "must be between 1 and 64")
        _check(0.1 <= self.patch_fraction <= 1, f"{key}.patch_fraction", self.patch_fraction, "must be in [0.1, 1]")
        _check(0 < self.tau <= 10, f"{key}.tau", self.tau, "must be in (0, 10]")
        for name in ("lambda_directional", "lambda_global", "lambda_local", "lambda_perceptual", "lambda_weight_reg"):
            _check(getattr(self, name) >= 0, f"{key}.{name}", getattr(self, name), "must be >= 0")
        _check(self.chunk_rays == 0 or self.chunk_rays >= 64, f"{key}.chunk_rays", self.chunk_rays,
               "must be 0 (no chunking) or >= 64")



# Capture methods: the cameras come from the capture; the orbit only sets the preview and
# turntable views (capture cameras are normalised to sit around radius 4, see engine/captures.py).
# render.size is the side of previews and of NeRF-Art's style renders; training draws rays.
CAPTURE_ORBIT = {"radius": (4.0, 4.0), "elevation_deg": (30.0, 30.0), "azimuth_deg": (0.0, 360.0),
                 "fov_deg": (40.0, 40.0)}

# Defaults of the common job sections, per method. Orbit: Dream Fields renders from radius 4
# at 30 degrees elevation all around the object (360 degrees: narrower ranges leave the
# sides unlearned) with a ~33 degree field of view. Samples: the paper's 192 are for an MLP
# field; 64 jittered samples across the cube are about one per pixel footprint at 88 px.
METHOD_DEFAULTS: dict[str, dict] = {
    "dream_fields": {
        "steps": 10000,
        "render": {"size": 88, "samples_per_ray": 64},
        "orbit": {"radius": (4.0, 4.0), "elevation_deg": (30.0, 30.0), "azimuth_deg": (0.0, 360.0),
                  "fov_deg": (33.0, 33.0)},
        "needs_prompt": True,
    },
    # DreamFusion: threestudio's cameras (distance 1.5-2, elevation -10..45, FOV 40-70, all
    # azimuths) with the distance scaled to our cube, whose corners (1.73 from the centre)
    # the cameras must stay outside of; 64 px renders upsampled to the VAE's 512 (paper).
    "dreamfusion": {
        "steps": 10000,
        "render": {"size": 64, "samples_per_ray": 64},
        "orbit": {"radius": (2.5, 3.0), "elevation_deg": (-10.0, 45.0), "azimuth_deg": (0.0, 360.0),
                  "fov_deg": (40.0, 70.0)},
        "needs_prompt": True,
    },
    "reconstruct": {
        "steps": 3000,
        "render": {"size": 64, "samples_per_ray": 96},
        "orbit": CAPTURE_ORBIT,
        "needs_prompt": False,
        "needs_capture": True,
    },
    "dietnerf": {
        "steps": 3000,
        "render": {"size": 64, "samples_per_ray": 96},
        "orbit": CAPTURE_ORBIT,
        "needs_prompt": False,
        "needs_capture": True,
    },
    # NeRF-Art: ~400 style steps (official code) after the reconstruction.
    "nerf_art": {
        "steps": 400,
        "render": {"size": 128, "samples_per_ray": 96},
        "orbit": CAPTURE_ORBIT,
        "needs_prompt": True,
        "needs_capture": True,
    },
}

METHOD_OPTIONS: dict[str, type] = {
    "dream_fields": DreamFieldsOptions,
    "dreamfusion": DreamFusionOptions,
    "reconstruct": ReconstructOptions,
    "dietnerf": DietNeRFOptions,
    "nerf_art": NerfArtOptions,
}

# Named in DESIGN.md, arriving in later engine versions; a job naming one gets a clear error.
PLANNED_METHODS = ("latent_edit",)
