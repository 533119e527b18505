"""Identity loss (FaceDNeRF, Zhang et al. NeurIPS 2023): an edited render should still show the same
person, or the same object, as the source render.

FaceDNeRF takes 1 - cos of ArcFace embeddings of the edited and the source face. insightface's ArcFace
models are for non-commercial research only, so faces here are embedded by facenet-pytorch's
InceptionResnetV1 (models.identity), and other captures by CLIP's image tower (models.clip).
"""
from __future__ import annotations

import torch

from ..models.clip import ClipModel
from ..models.identity import FaceEmbedder


class IdentityLoss:
    """loss = mean over B of 1 - cos(emb(image), emb(source)): 0 when the embeddings agree, at most 2.

    embedder: a frozen FaceEmbedder (face captures) or ClipModel (any other capture); both give
    unit-length embeddings, so the cosine is their dot product.
    """

    def __init__(self, embedder: FaceEmbedder | ClipModel) -> None:
        if not isinstance(embedder, (FaceEmbedder, ClipModel)):
            raise TypeError(f"IdentityLoss needs a FaceEmbedder or a ClipModel, not {type(embedder).__name__}")
        self.embedder = embedder

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B,H,W,3) in [0,1] -> (B,D) unit-length embeddings (D = 512 for facenet, CLIP's width otherwise),
        differentiable."""
        if isinstance(self.embedder, FaceEmbedder):
            return self.embedder.embed(images)
        clip = self.embedder
        x = images.permute(0, 3, 1, 2).to(clip.mean.device)
        return clip.encode_image(clip.prepare(x))

    def loss(self, image: torch.Tensor, source: torch.Tensor) -> dict[str, torch.Tensor]:
        """image, source (B,H,W,3) in [0,1], the edited and the source render from the same cameras ->
        {"identity": scalar}, unweighted; differentiable w.r.t. image only (source is embedded without
        gradients)."""
        with torch.no_grad():
            target = self.embed(source.detach())
        return {"identity": 1 - (self.embed(image) * target).sum(dim=-1).mean()}
