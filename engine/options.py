"""The option sections every method shares (job.json `options.field`, `options.occupancy`), torch-free.

Each method's own options dataclass lives in its package (engine/methods/NAME/__init__.py) and
nests these, with the method's defaults. Job validation (engine/spec.py) parses them before
anything heavy is imported.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import invalid_job


def check(ok: bool, key: str, value, why: str) -> None:
    """invalid_job naming `key` and `value` unless `ok`."""
    if not ok:
        raise invalid_job(key, value, why)


def check_non_negative(options, key: str, *names: str) -> None:
    """Each named option of `options` must be >= 0."""
    for name in names:
        check(getattr(options, name) >= 0, f"{key}.{name}", getattr(options, name), "must be >= 0")


BACKBONES = ("hashgrid", "mlp", "triplane")


@dataclass(frozen=True)
class FieldOptions:
    """The field's backbone (options.field): a multiresolution hash grid (instant-ngp), EG3D's tri-planes or
    Dream Fields' MLP."""

    backbone: str = "hashgrid"
    """"hashgrid" (multiresolution hash grid + small MLP, fast), "triplane" (EG3D's three feature planes + a
    small decoder: a compact latent, what latent_edit edits) or "mlp" (residual MLP with integrated PE;
    Dream Fields only)."""
    hash_levels: int = 8
    """Hash grid: number of resolution levels, from 16 cells across the cube to hash_max_resolution."""
    hash_log2_size: int = 19
    """Hash grid: log2 of the entries per level."""
    hash_max_resolution: int = 512
    """Hash grid: cells across the cube at the finest level."""
    triplane_channels: int = 32
    """Tri-planes: feature channels of each plane (EG3D: 32)."""
    triplane_resolution: int = 256
    """Tri-planes: texels along each side of each plane (EG3D: 256)."""
    triplane_decoder: str = "auto"
    """Tri-planes: the decoder's starting weights. "starter": EG3D's decoder trained over many shapes in random
    colours (shipped; engine/models/starter/train_decoder.py; it fits triplane_channels 32 and mlp_width 64);
    "none": random initialisation; "auto": the starter decoder where it fits, else random; or the path of a
    .safetensors file of TriPlaneField.decoder's state dict. Why it matters: latent editing freezes the decoder,
    and a decoder fitted to one capture alone collapses onto that capture's colours, which the edit then
    cannot leave (FaceDNeRF's EG3D decoder was trained over many faces)."""
    lambda_plane_tv: float = 1e-4
    """Tri-planes: weight of the planes' total variation, added to every step that trains them (K-Planes'
    plane TV weight 1e-4, plenoxels/configs/final/NeRF/nerf_hybrid.py); 0 = off."""
    mlp_width: int | None = 64
    """Width of the field's MLP (the tri-planes' decoder: EG3D's 64); null = the method's default for the
    backbone."""
    mlp_blocks: int = 2
    """Residual blocks of the "mlp" backbone."""
    density_bias: float = -1.0
    """Added to the density before its activation (exp for the hash grid, softplus for the MLP), so it sets how
    full the field starts: -1 (mip-NeRF's) starts as a fog of density ~0.35 through the whole cube, -3 as ~0.05
    (90% of the light gets through)."""

    def validate(self, key: str) -> None:
        check(-20 <= self.density_bias <= 20, f"{key}.density_bias", self.density_bias, "must be between -20 and 20")
        check(self.backbone in BACKBONES, f"{key}.backbone", self.backbone, 'must be "hashgrid", "triplane" or "mlp"')
        check(1 <= self.triplane_channels <= 256, f"{key}.triplane_channels", self.triplane_channels,
              "must be between 1 and 256")
        check(4 <= self.triplane_resolution <= 2048, f"{key}.triplane_resolution", self.triplane_resolution,
              "must be between 4 and 2048")
        check(isinstance(self.triplane_decoder, str) and (self.triplane_decoder in ("auto", "starter", "none")
                                                        or self.triplane_decoder.endswith(".safetensors")),
              f"{key}.triplane_decoder", self.triplane_decoder,
              'must be "auto", "starter", "none" or the path of a .safetensors file')
        check(self.lambda_plane_tv >= 0, f"{key}.lambda_plane_tv", self.lambda_plane_tv, "must be >= 0")
        check(1 <= self.hash_levels <= 32, f"{key}.hash_levels", self.hash_levels, "must be between 1 and 32")
        check(10 <= self.hash_log2_size <= 24, f"{key}.hash_log2_size", self.hash_log2_size,
              "must be between 10 and 24")
        check(16 <= self.hash_max_resolution <= 8192, f"{key}.hash_max_resolution", self.hash_max_resolution,
              "must be between 16 and 8192")
        check(self.mlp_width is None or 8 <= self.mlp_width <= 1024, f"{key}.mlp_width", self.mlp_width,
              "must be between 8 and 1024")
        check(1 <= self.mlp_blocks <= 16, f"{key}.mlp_blocks", self.mlp_blocks, "must be between 1 and 16")


@dataclass(frozen=True)
class OccupancyOptions:
    """The empty-space grid (options.occupancy): samples in empty cells skip the field (instant-ngp)."""

    resolution: int = 64
    """Cells per side of the grid over the object cube (0 = off)."""
    threshold: float = 0.01
    """Opacity one render step through a cell would have (density x the marching step, engine/render/occupancy.py)
    below which the cell is empty (nerfacc's occ_thre 0.01); capped by the mean over the visible cells, so a field
    that starts as a faint fog keeps its densest half. Text methods (no marching) compare raw density with it."""
    every: int = 16
    """Steps between updates of the grid (as instant-ngp)."""

    def validate(self, key: str) -> None:
        check(self.resolution == 0 or 8 <= self.resolution <= 256, f"{key}.resolution", self.resolution,
              "must be 0 (off) or between 8 and 256")
        check(self.threshold >= 0, f"{key}.threshold", self.threshold, "must be >= 0")
        check(self.every >= 1, f"{key}.every", self.every, "must be >= 1")


def check_grid_backbone(options, key: str) -> None:
    """Methods other than Dream Fields build a hash grid or tri-planes (their schedules and learning rates are
    for feature grids, not for the paper MLP's 1e-4)."""
    check(options.field.backbone in ("hashgrid", "triplane"), f"{key}.field.backbone", options.field.backbone,
          'must be "hashgrid" or "triplane" for this method (only dream_fields has the "mlp" backbone)')


# Option keys of engine versions before the nested sections, and where each lives now. Old job
# folders keep running, rendering and resuming; a job that gives a key both ways is refused.
LEGACY_OPTION_KEYS = {
    "hash_levels": ("field", "hash_levels"),
    "hash_log2_size": ("field", "hash_log2_size"),
    "hash_max_resolution": ("field", "hash_max_resolution"),
    "mlp_width": ("field", "mlp_width"),
    "mlp_blocks": ("field", "mlp_blocks"),
    "occupancy_resolution": ("occupancy", "resolution"),
    "occupancy_threshold": ("occupancy", "threshold"),
    "occupancy_every": ("occupancy", "every"),
    "lambda_weight_reg": ("style_lambda_distortion",),  # NeRF-Art's weight regularisation is the distortion loss
}
