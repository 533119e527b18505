"""Reconstruction: a field fitted to a capture's photos (NeRF, Mildenhall et al. ECCV 2020, with instant-ngp's
choices, Mueller et al. SIGGRAPH 2022). The card and options; the composition root is method.py."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import FieldOptions, OccupancyOptions, check, check_grid_backbone
from ..base import MethodCard, Quality

# Capture methods: the cameras come from the capture; the orbit only sets the preview and
# turntable views (capture cameras are normalised to sit around radius 4, engine/captures.py).
# render.size is the side of previews (and of NeRF-Art's style renders); training draws rays.
CAPTURE_ORBIT = {"radius": (4.0, 4.0), "elevation_deg": (30.0, 30.0), "azimuth_deg": (0.0, 360.0),
                 "fov_deg": (40.0, 40.0)}
CAPTURE_DEFAULTS = {"steps": 3000, "render": {"size": 64, "samples_per_ray": 96}, "orbit": CAPTURE_ORBIT}
# Rays are drawn from the photos; instant-ngp looks good after a few thousand steps. A GPU takes them in a minute
# or two; a CPU (~1.5-2 s a step on 2 cores) would take an hour, so draft and standard carry a time budget that
# fits their schedule into minutes there (and never binds on a GPU); high runs every step.
CAPTURE_PRESETS = {"draft": Quality(steps=500, render_size=64, mesh_resolution=128, budget_s=180.0),
                   "standard": Quality(steps=3000, render_size=64, mesh_resolution=256, budget_s=600.0),
                   "high": Quality(steps=10000, render_size=128, mesh_resolution=256)}


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
    field: FieldOptions = FieldOptions(backbone="hashgrid", hash_levels=12, hash_log2_size=19,
                                       hash_max_resolution=1024, mlp_width=64)
    """The hash grid: 12 levels to 1024 cells (photos carry more detail than 64 px SDS renders), MLP width 64
    (instant-ngp)."""
    occupancy: OccupancyOptions = OccupancyOptions()
    """The empty-space grid."""
    lambda_opacity: float = 1e-3
    """Weight of the binary entropy of each ray's opacity against floaters and fog (0 = off)."""
    lambda_distortion: float = 0.01
    """Weight of mip-NeRF 360's distortion loss (each ray's weights gathered on one thin surface):
    crisper surfaces and fewer floaters for the mesh (mip-NeRF 360: 0.01; 0 = off)."""
    background: str = "auto"
    """What the photos show outside the object cube. "field": a second, smaller field over all of space beyond
    the cube (mip-NeRF 360's contraction), rendered in front of and behind it, so that a room, a table or a street
    needs no fog in the cube; the mesh comes from the object's field alone. "colour": the photos' mean border
    colour (a plain studio backdrop; the old behaviour). "auto": "field" for photos without alpha, nothing for
    photos with alpha (their coverage says where the object is)."""
    background_samples: int = 32
    """Samples of the background field per ray: a quarter in front of the cube, the rest behind it out to
    infinity, evenly in disparity."""

    def validate(self, key: str) -> None:
        check(self.lambda_distortion >= 0, f"{key}.lambda_distortion", self.lambda_distortion, "must be >= 0")
        check(64 <= self.rays_per_step <= 1 << 20, f"{key}.rays_per_step", self.rays_per_step,
              "must be between 64 and 1048576")
        check(0 < self.lr < 1, f"{key}.lr", self.lr, "must be in (0, 1)")
        check(0 < self.lr_final_fraction <= 1, f"{key}.lr_final_fraction", self.lr_final_fraction, "must be in (0, 1]")
        check(16 <= self.max_image_size <= 8192, f"{key}.max_image_size", self.max_image_size,
              "must be between 16 and 8192")
        check(self.holdout_every == 0 or self.holdout_every >= 2, f"{key}.holdout_every", self.holdout_every,
              "must be 0 (no held-out frames) or >= 2")
        check_grid_backbone(self, key)
        check(self.background in ("auto", "field", "colour"), f"{key}.background", self.background,
              'must be "auto", "field" or "colour"')
        check(4 <= self.background_samples <= 1024, f"{key}.background_samples", self.background_samples,
              "must be between 4 and 1024")
        check(self.lambda_opacity >= 0, f"{key}.lambda_opacity", self.lambda_opacity, "must be >= 0")


CARD = MethodCard(
    name="reconstruct",
    title="Reconstruct",
    summary="Fit a textured mesh to the capture's photos",
    source="NeRF (Mildenhall et al., ECCV 2020, arXiv 2003.08934) with instant-ngp's hash grid, empty-space "
           "skipping and training (Mueller et al., SIGGRAPH 2022, arXiv 2201.05989)",
    input="capture",
    takes_prompt=False,
    options=ReconstructOptions,
    defaults=CAPTURE_DEFAULTS,
    presets=CAPTURE_PRESETS,
)
