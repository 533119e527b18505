"""Dream Fields' guidance: CLIP similarity between augmented renders and the prompt."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..prompts import fit_and_warn


class ClipSimilarity:
    """loss = -mean cosine(CLIP(random crop of render), CLIP(prompt)), over n_augments crops per image.

    clip: an engine.models ClipModel (frozen). The prompt's embedding is computed once; a prompt longer
    than CLIP's context loses words from its end, with one warning naming them (engine/prompts.py).
    """

    def __init__(self, clip, prompt: str, n_augments: int = 8, crop_fraction: float = 80 / 88) -> None:
        self.clip = clip
        self.n_augments = n_augments
        self.crop_fraction = crop_fraction
        self.prompt = fit_and_warn(prompt, clip.count_tokens, clip.text_limit, "prompt", clip.text_encoder_label).text
        with torch.no_grad():
            self.text = clip.encode_text([self.prompt])  # (1,D), unit length

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B,H,W,3) in [0,1] -> (B*n_augments,3,S,S) random crops, resized and normalised for CLIP."""
        b, h, w, _ = images.shape
        side = max(1, round(self.crop_fraction * min(h, w)))
        x = images.permute(0, 3, 1, 2)
        corners = torch.randint(0, min(h, w) - side + 1, (b, self.n_augments, 2), generator=generator).tolist()
        crops = torch.stack([x[i, :, top:top + side, left:left + side]
                             for i in range(b) for top, left in corners[i]])
        crops = F.interpolate(crops, size=(self.clip.image_size, self.clip.image_size), mode="bilinear",
                              align_corners=False, antialias=side > self.clip.image_size)
        mean, std = self.clip.mean.to(crops), self.clip.std.to(crops)
        return (crops - mean[None, :, None, None]) / std[None, :, None, None]

    def loss(self, images: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """images (B,H,W,3) in [0,1] -> {"clip": scalar}, unweighted."""
        emb = self.clip.encode_image(self.augment(images, generator))  # (B*n,D), unit length
        return {"clip": -(emb @ self.text.to(emb).T).mean()}
