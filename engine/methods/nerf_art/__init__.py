"""NeRF-Art (Wang, Jiang, Chai, Liao, Yuan, Zhang, TVCG 2023, arXiv 2212.08070): restyle a reconstructed
capture with a text prompt. The card and options; the composition root is method.py."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import check
from ..base import MethodCard, Quality
from ..reconstruct import CAPTURE_ORBIT, ReconstructOptions

# The paper's CLIP; the job's models.clip overrides it.
NERF_ART_CLIP = "ViT-B-32/openai"


@dataclass(frozen=True)
class NerfArtOptions(ReconstructOptions):
    """NeRF-Art (Wang et al. 2022): restyle a reconstruction with CLIP directional and contrastive losses.

    The reconstruction phase uses the reconstruct options (lr, lambda_distortion, ...); the style phase
    the style_* and the style losses' weights below."""

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
    style_lambda_distortion: float = 0.1
    """Weight of mip-NeRF 360's distortion loss in the style steps (the paper's weight regularisation,
    against clouds near the camera; paper: 0.1)."""
    chunk_rays: int = 4096
    """Rays per chunk when the cached image gradient is back-propagated (0 = the whole image at once)."""

    def validate(self, key: str) -> None:
        super().validate(key)
        check(self.reconstruct_steps >= 0, f"{key}.reconstruct_steps", self.reconstruct_steps, "must be >= 0")
        check(0 < self.style_lr < 1, f"{key}.style_lr", self.style_lr, "must be in (0, 1)")
        check(self.source_text.strip() != "", f"{key}.source_text", self.source_text, "must not be empty")
        for i, text in enumerate(self.negative_styles):
            check(text.strip() != "", f"{key}.negative_styles[{i}]", text, "must not be empty")
        check(1 <= self.n_patches <= 64, f"{key}.n_patches", self.n_patches, "must be between 1 and 64")
        check(0.1 <= self.patch_fraction <= 1, f"{key}.patch_fraction", self.patch_fraction, "must be in [0.1, 1]")
        check(0 < self.tau <= 10, f"{key}.tau", self.tau, "must be in (0, 10]")
        for name in ("lambda_directional", "lambda_global", "lambda_local", "lambda_perceptual",
                     "style_lambda_distortion"):
            check(getattr(self, name) >= 0, f"{key}.{name}", getattr(self, name), "must be >= 0")
        check(self.chunk_rays == 0 or self.chunk_rays >= 64, f"{key}.chunk_rays", self.chunk_rays,
              "must be 0 (no chunking) or >= 64")


# `steps` are the style steps (the official code's ~400 for "standard"), after reconstruct_steps of
# reconstruction (none when inputs.source_job is the reconstruction).
CARD = MethodCard(
    name="nerf_art",
    title="Restyle",
    summary="NeRF-Art: reconstruct the capture, then restyle it to match the style prompt",
    source="Wang et al., TVCG 2023 (arXiv 2212.08070); cassiePython/NeRF-Art",
    input="capture",
    takes_prompt=True,
    options=NerfArtOptions,
    defaults={"steps": 400, "render": {"size": 128, "samples_per_ray": 96}, "orbit": CAPTURE_ORBIT},
    presets={"draft": Quality(steps=100, render_size=64, mesh_resolution=128, options={"reconstruct_steps": 500}),
             "standard": Quality(steps=400, render_size=128, mesh_resolution=256,
                                 options={"reconstruct_steps": 2000}),
             "high": Quality(steps=1000, render_size=128, mesh_resolution=256, options={"reconstruct_steps": 5000})},
    roles={"clip": NERF_ART_CLIP, "perceptual": None},
    source_methods=("reconstruct", "dietnerf", "nerf_art"),
)
