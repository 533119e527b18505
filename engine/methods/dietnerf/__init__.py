"""DietNeRF (Jain, Tancik, Abbeel, ICCV 2021, arXiv 2104.00677): few-view reconstruction kept consistent by
CLIP image embeddings. The card and options; the composition root is method.py."""
from __future__ import annotations

from dataclasses import dataclass

from ...options import check
from ..base import MethodCard
from ..reconstruct import CAPTURE_DEFAULTS, CAPTURE_PRESETS, ReconstructOptions

# The paper's CLIP; the job's models.clip overrides it.
DIETNERF_CLIP = "ViT-B-32/openai"


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
        check(self.semantic_every >= 1, f"{key}.semantic_every", self.semantic_every, "must be >= 1")
        check(self.lambda_semantic >= 0, f"{key}.lambda_semantic", self.lambda_semantic, "must be >= 0")
        check(self.semantic_size % 8 == 0 and 16 <= self.semantic_size <= 512, f"{key}.semantic_size",
              self.semantic_size, "must be a multiple of 8 between 16 and 512")


CARD = MethodCard(
    name="dietnerf",
    title="DietNeRF",
    summary="Reconstruct from few views (under 10), kept plausible by CLIP",
    source="Jain, Tancik, Abbeel, ICCV 2021 (arXiv 2104.00677); ajayjain/DietNeRF",
    input="capture",
    takes_prompt=False,
    options=DietNeRFOptions,
    defaults=CAPTURE_DEFAULTS,
    presets=CAPTURE_PRESETS,
    roles={"clip": DIETNERF_CLIP},
)
