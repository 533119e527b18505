"""Dream Fields (Jain et al., CVPR 2022, arXiv 2112.01455): a NeRF optimised so that CLIP finds its renders
similar to the prompt. The card and options; the composition root is method.py."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import FieldOptions, OccupancyOptions, check
from ..base import MethodCard, Quality


@dataclass(frozen=True)
class DreamFieldsOptions:
    """Dream Fields (Jain et al. 2022); defaults from the paper and google-research/dreamfields."""

    lr: float | None = None
    """Peak Adam learning rate; null = 1e-4 for the "mlp" backbone (paper), 5e-3 for "hashgrid"."""
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
    field: FieldOptions = FieldOptions(backbone="hashgrid", hash_levels=8, hash_log2_size=19,
                                       hash_max_resolution=512, mlp_width=None, mlp_blocks=2, density_bias=-3.0)
    """The backbone. Hash grid by default (the paper's MLP is backbone "mlp"); 8 levels to 512: an 88 px
    render of the cube from radius 4 spans ~75 px, so 512 leaves headroom for the 168-224 px presets.
    mlp_width null = 64 for "hashgrid" (instant-ngp), 128 for "mlp". density_bias -3: the field starts
    nearly empty (90% of the light through the cube, above the transmittance target) instead of mip-NeRF's
    -1, a fog the transmittance loss must clear first; with the starter CLIP at 200 steps that fog stayed
    and hid the shape (docs/BENCHMARKS.md)."""
    occupancy: OccupancyOptions = OccupancyOptions()
    """The empty-space grid."""

    def validate(self, key: str) -> None:
        check(self.lr is None or 0 < self.lr < 1, f"{key}.lr", self.lr, "must be in (0, 1)")
        check(self.lr_warmup_steps >= 0, f"{key}.lr_warmup_steps", self.lr_warmup_steps, "must be >= 0")
        check(1 <= self.n_augments <= 64, f"{key}.n_augments", self.n_augments, "must be between 1 and 64")
        check(0.1 <= self.crop_fraction <= 1, f"{key}.crop_fraction", self.crop_fraction, "must be in [0.1, 1]")
        lo, hi = self.transmittance_target
        check(0 < lo <= hi < 1, f"{key}.transmittance_target", list(self.transmittance_target),
              "must be two fractions with 0 < start <= end < 1")
        check(self.transmittance_anneal_steps >= 0, f"{key}.transmittance_anneal_steps",
              self.transmittance_anneal_steps, "must be >= 0")
        check(self.bg_blur_max_px >= 0, f"{key}.bg_blur_max_px", self.bg_blur_max_px, "must be >= 0")


# Presets: the paper's low and medium render/crop sizes (88 and 168 px) and its 10k-step schedule
# for "high"; "standard" stops at 2k steps, where the official code's renders already read as the
# prompt. Draft is a quick look (a few minutes on a GPU).
CARD = MethodCard(
    name="dream_fields",
    title="Dream Fields",
    summary="Text to NeRF, guided by CLIP similarity of the renders",
    source="Jain, Mildenhall, Barron, Abbeel, Poole, CVPR 2022 (arXiv 2112.01455); google-research/dreamfields",
    input="text",
    takes_prompt=True,
    options=DreamFieldsOptions,
    # Radius 4 at 30 degrees elevation all around the object (narrower ranges leave the sides
    # unlearned) with a ~33 degree field of view. Samples: the paper's 192 are for an MLP field;
    # 64 jittered samples across the cube are about one per pixel footprint at 88 px.
    defaults={"steps": 10000, "render": {"size": 88, "samples_per_ray": 64},
              "orbit": {"radius": (4.0, 4.0), "elevation_deg": (30.0, 30.0), "azimuth_deg": (0.0, 360.0),
                        "fov_deg": (33.0, 33.0)}},
    presets={"draft": Quality(steps=300, render_size=64, mesh_resolution=128),
             "standard": Quality(steps=2000, render_size=88, mesh_resolution=256),
             "high": Quality(steps=10000, render_size=168, mesh_resolution=256)},
    roles={"clip": None},
)
