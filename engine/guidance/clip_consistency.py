"""DietNeRF's semantic consistency (Jain et al. 2021): renders from unseen poses should look, to CLIP,
like the given views of the same object."""
from __future__ import annotations

import torch


class SemanticConsistency:
    """loss = 1 - cos(CLIP(render), CLIP(target image)): the paper maximises the cosine similarity,
    this is its unweighted loss form (0 when the embeddings agree, at most 2).

    clip: an engine.models ClipModel (frozen). target_images (N,H,W,3) in [0,1], the capture's
    views; they are embedded once, without gradients, one at a time (the views may be large).
    """

    def __init__(self, clip, target_images: torch.Tensor) -> None:
        self.clip = clip
        with torch.no_grad():
            self.targets = torch.cat([self._embed(image[None]) for image in target_images])  # (N,D), unit length

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B,H,W,3) in [0,1] -> (B,D) unit-length CLIP embeddings, differentiable."""
        x = images.permute(0, 3, 1, 2).to(self.clip.mean.device)
        return self.clip.encode_image(self.clip.prepare(x))

    def loss(self, render: torch.Tensor, index: int) -> dict[str, torch.Tensor]:
        """render (B,H,W,3) in [0,1] (DietNeRF renders small, e.g. 168 px, and resizes to CLIP's input);
        index: which target image it is compared with -> {"semantic": scalar}, the mean over the B renders."""
        emb = self._embed(render)
        return {"semantic": 1 - (emb @ self.targets[index]).mean()}
