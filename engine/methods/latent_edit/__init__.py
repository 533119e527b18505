"""Latent tri-plane editing (FaceDNeRF: Zhang, Xu, Dai, Tai, Tang, NeurIPS 2023, arXiv 2306.00783): edit a
capture with a text prompt by moving EG3D-style tri-planes under a frozen decoder. The card and options; the
composition root is method.py."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import FieldOptions, OccupancyOptions, check, check_non_negative
from ..base import MethodCard, Quality
from ..reconstruct import CAPTURE_ORBIT, ReconstructOptions


@dataclass(frozen=True)
class LatentEditOptions(ReconstructOptions):
    """FaceDNeRF's edit in general form: invert the capture into tri-planes, then optimise the planes (the
    decoder frozen) with Score Distillation Sampling toward the prompt while reconstruction, identity and
    density-correlation losses hold them to the source.

    The invert phase uses the reconstruct options (lr, lambda_distortion, rays_per_step, ...); the edit
    phase the options below. Weights: FaceDNeRF's own (lambda_id 0.2, lambda_rec 0.2, lambda_diff 1.3e-5)
    depend on its summed LPIPS and SDS scaling and do not transfer (../METHODS.md); these were set by
    measurement on the starter diffusion model (docs/BENCHMARKS.md, "Latent tri-plane editing")."""

    reconstruct_steps: int = 2000
    """Steps of reconstruction before the edit (the inversion: planes and decoder fitted to the photos), when
    inputs.source_job is not given."""
    face: bool = False
    """The capture is a face: the identity loss compares face-recogniser embeddings (models.identity,
    facenet-pytorch's InceptionResnetV1, FaceDNeRF's identity loss) instead of CLIP image embeddings."""
    keep_original: float = 1.0
    """How strongly the edit holds to the original (the panel's "Keep the original"): multiplies the
    reconstruction (lambda_rgb, lambda_perceptual) and identity weights together; 0 = pure SDS."""
    edit_lr: float = 1e-2
    """Peak Adam learning rate of the planes in the edit (FaceDNeRF's 0.01; K-Planes' 0.01)."""
    warmup_fraction: float = 0.05
    """Share of the edit steps over which the rate rises linearly from 0 (FaceDNeRF's lr_rampup_length 0.05)."""
    rampdown_fraction: float = 0.25
    """Share of the edit steps at its end over which the rate falls to 0 along a cosine (FaceDNeRF's
    lr_rampdown_length 0.25)."""
    tune_steps: int = 0
    """Steps of pivotal tuning after the edit: the decoder fine-tuned at tune_lr with the planes frozen, under
    the edit's losses (FaceDNeRF's optional generator tuning, after PTI, Roich et al. 2021: 400 steps); 0 = off."""
    tune_lr: float = 3e-4
    """Adam learning rate of the decoder in the tuning steps (PTI, FaceDNeRF: 3e-4)."""
    guidance_scale: float = 100.0
    """Classifier-free guidance scale of SDS (FaceDNeRF and DreamFusion: 100)."""
    t_range: tuple[float, float] = (0.02, 0.98)
    """Range of SDS's diffusion timestep, as fractions of the scheduler's training timesteps (FaceDNeRF)."""
    overhead_deg: float = 60.0
    """Elevation above which the view prompt says ", overhead view" (DreamFusion)."""
    albedo_warmup_steps: int = 2000
    """Edit steps rendered with albedo only before any other shading joins (DreamFusion); capped at a fifth of
    the edit."""
    albedo_share: float = 1.0
    """Share of the SDS renders after the warm-up shaded with albedo only; the rest split equally between
    textureless and lambertian shading (DreamFusion: 0.2, for shape from scratch). An edit starts from a shape:
    measured on a red box edited toward "a blue cube" (150 steps, starter diffusion model), DreamFusion's 0.2
    left the albedo red (0.82, 0.11, 0.10 -> 0.81, 0.12, 0.11) and 1.0 moved it (-> 0.67, 0.18, 0.26); the
    textureless renders carry no colour to edit."""
    jitter_deg: float = 11.5
    """SDS cameras: a capture camera turned about the object's centre by a yaw and a pitch, each uniform in
    +-jitter_deg (FaceDNeRF's side views: +-0.2 rad)."""
    lambda_sds: float = 0.05
    """Weight of Score Distillation Sampling: the edit. Small because SDS's gradient is large: on an edit that
    had drifted far from its source, the unweighted gradient norms on the planes were SDS 170, identity 0.067,
    density correlation 0.024, perceptual 0.019, photometric MSE 0.0015 (FaceDNeRF weighs its SDS 1.3e-5
    against 0.2 for the same reason)."""
    lambda_rgb: float = 1000.0
    """Weight of the photometric MSE on random rays of the capture's photos (stay the same object). This and
    the next three were set together by measurement (docs/BENCHMARKS.md): with the defaults a red box edited
    toward "a blue cube" turns bluish while its shape holds, and keep_original 0 moves it about twice as far."""
    lambda_perceptual: float = 30.0
    """Weight of the VGG perceptual (LPIPS-style) loss between the render and the photo at a capture camera
    (FaceDNeRF's reconstruction loss)."""
    lambda_identity: float = 10.0
    """Weight of the identity loss, 1 - cos of the edited and the source render's embeddings at the same capture
    camera (FaceDNeRF's identity loss; face recogniser when `face`, else CLIP image embeddings)."""
    lambda_density_corr: float = 300.0
    """Weight of 1 - the Pearson correlation of source and edited densities at random points of the cube
    (Vox-E, Sella et al. ICCV 2023: keeps the structure; Vox-E's weight 200 is for its SDS scaling)."""
    density_points: int = 8192
    """Random points of the cube per step for the density correlation."""

    field: FieldOptions = FieldOptions(backbone="triplane", triplane_channels=32, triplane_resolution=256,
                                       mlp_width=64, density_bias=-1.0, lambda_plane_tv=1e-4)
    """EG3D's tri-planes: 3 x 32 channels x 256^2, decoder 32 -> 64 -> 4, density softplus(h - 1)."""
    occupancy: OccupancyOptions = OccupancyOptions()
    """The empty-space grid."""

    def validate(self, key: str) -> None:
        super().validate(key)
        check_non_negative(self, key, "reconstruct_steps", "tune_steps", "albedo_warmup_steps", "keep_original",
                           "lambda_sds", "lambda_rgb", "lambda_perceptual", "lambda_identity", "lambda_density_corr")
        check(isinstance(self.face, bool), f"{key}.face", self.face, "must be true or false")
        check(self.keep_original <= 100, f"{key}.keep_original", self.keep_original, "must be between 0 and 100")
        for name in ("edit_lr", "tune_lr"):
            check(0 < getattr(self, name) < 1, f"{key}.{name}", getattr(self, name), "must be in (0, 1)")
        for name in ("warmup_fraction", "rampdown_fraction"):
            check(0 <= getattr(self, name) <= 1, f"{key}.{name}", getattr(self, name), "must be in [0, 1]")
        check(self.warmup_fraction + self.rampdown_fraction <= 1, f"{key}.warmup_fraction",
              self.warmup_fraction, "warmup_fraction + rampdown_fraction must be at most 1")
        check(self.guidance_scale >= 0, f"{key}.guidance_scale", self.guidance_scale, "must be >= 0")
        lo, hi = self.t_range
        check(0 <= lo <= hi < 1, f"{key}.t_range", list(self.t_range), "must be two fractions with 0 <= min <= max < 1")
        check(0 <= self.overhead_deg <= 90, f"{key}.overhead_deg", self.overhead_deg, "must lie within [0, 90]")
        check(0 <= self.albedo_share <= 1, f"{key}.albedo_share", self.albedo_share, "must be in [0, 1]")
        check(0 <= self.jitter_deg <= 90, f"{key}.jitter_deg", self.jitter_deg, "must lie within [0, 90]")
        check(16 <= self.density_points <= 1 << 20, f"{key}.density_points", self.density_points,
              "must be between 16 and 1048576")
        check(self.field.backbone == "triplane", f"{key}.field.backbone", self.field.backbone,
              'must be "triplane": latent editing moves the tri-planes under a frozen decoder')


# `steps` are the edit steps (FaceDNeRF's 1000 for "high"), after reconstruct_steps of inversion (none when
# inputs.source_job is the inversion). 64 px SDS renders as DreamFusion's.
CARD = MethodCard(
    name="latent_edit",
    title="Edit (latent)",
    summary="FaceDNeRF: invert the capture into tri-planes, then edit them toward the prompt with SDS, "
            "held to the original by reconstruction and identity losses",
    source="Zhang, Xu, Dai, Tai, Tang, NeurIPS 2023 (arXiv 2306.00783); BillyXYB/FaceDNeRF, NVlabs/eg3d, "
           "Vox-E (arXiv 2303.12048)",
    input="capture",
    takes_prompt=True,
    options=LatentEditOptions,
    defaults={"steps": 500, "render": {"size": 64, "samples_per_ray": 96}, "orbit": CAPTURE_ORBIT},
    presets={"draft": Quality(steps=150, render_size=64, mesh_resolution=128, options={"reconstruct_steps": 500}),
             "standard": Quality(steps=500, render_size=64, mesh_resolution=256, options={"reconstruct_steps": 2000}),
             "high": Quality(steps=1000, render_size=128, mesh_resolution=256, options={"reconstruct_steps": 5000})},
    roles={"diffusion": None, "perceptual": None, "clip": None, "identity": None},
    source_methods=("latent_edit", "reconstruct"),
)
