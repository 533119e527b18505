"""NeRF-Art's guidance (Wang et al. 2022): relative directional CLIP loss and global and local
contrastive (InfoNCE) losses between the stylised render and style texts."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..prompts import fit_and_warn, shown

# Each text is embedded in these sentences and the embeddings averaged, as StyleGAN-NADA and NeRF-Art
# do with (longer) ImageNet template lists: one phrasing's quirks average out.
TEMPLATES = (
    "a photo of {}.",
    "a rendering of {}.",
    "a picture of {}.",
    "an image of {}.",
    "a close-up photo of {}.",
    "a cropped photo of {}.",
    "a good photo of {}.",
    "a rendition of {}.",
)

# A stylised render equal to the source has no edit direction; the cosine is taken as
# e.d / sqrt(|e|^2 + EDIT_EPS^2), so that case (the first step of a fine-tune that starts from the
# source) gives loss 1 and a gradient along d of size 1/EDIT_EPS instead of 0/0 or an unbounded one
# that would swamp Adam's second-moment estimate for hundreds of steps. Edits of unit embeddings
# are O(0.1), where the change to the cosine is below 1e-4.
EDIT_EPS = 1e-3


def fit_to_templates(clip, text: str, what: str, templates: tuple[str, ...] = TEMPLATES) -> str:
    """`text` shortened by words from its end until it fits CLIP's context in every template, with one warning
    naming what was dropped (engine/prompts.py); unchanged when it fits."""
    return fit_and_warn(text, clip.count_tokens, clip.text_limit, what, clip.text_encoder_label,
                        forms=[template.format for template in templates],
                        forms_label="in the longest of NeRF-Art's templates").text


def embed_text(clip, texts: list[str], templates: tuple[str, ...] = TEMPLATES) -> torch.Tensor:
    """K texts -> (K,D) unit-length embeddings, each the renormalised mean over the templates; no grad."""
    emb = clip.encode_text([template.format(text) for text in texts for template in templates])
    return F.normalize(emb.reshape(len(texts), len(templates), -1).mean(dim=1), dim=-1)


class StyleGuidance:
    """NeRF-Art's three CLIP losses for a stylised render of a capture and its source render.

    clip: an engine.models ClipModel (frozen). source_text: what the source renders are (NeRF-Art:
    "a photo"). target_text: the style prompt. negative_texts: other styles
    (engine/guidance/negative_styles.py), at least one, none the target itself. tau: the InfoNCE
    temperature. n_patches: random square crops per stylised image for the local loss (the official
    code takes 12), each patch_fraction of the image's shorter side. The texts are embedded once; one
    longer than CLIP's context in a template loses words from its end, with one warning (fit_to_templates).
    """

    def __init__(self, clip, source_text: str, target_text: str, negative_texts: Sequence[str], tau: float = 0.07,
                 n_patches: int = 12, patch_fraction: float = 0.5) -> None:
        if not negative_texts:
            raise ValueError("StyleGuidance needs at least one negative text: InfoNCE without negatives is 0")
        self.clip, self.tau = clip, tau
        self.n_patches, self.patch_fraction = n_patches, patch_fraction
        source_text = fit_to_templates(clip, source_text, "NeRF-Art's source text (options.source_text)")
        target_text = fit_to_templates(clip, target_text, "style prompt")
        negative_texts = [fit_to_templates(clip, text, f"negative style {shown(text, 40)!r}")
                          for text in negative_texts]
        with torch.no_grad():
            source, target = embed_text(clip, [source_text, target_text])
            self.target = target  # (D,)
            self.negatives = embed_text(clip, list(negative_texts))  # (K,D)
            self.direction = F.normalize(target - source, dim=-1)  # (D,) the text edit direction

    def patches(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B,3,H,W) -> (B*n_patches,3,s,s) random square crops, s = patch_fraction * min(H,W)."""
        b, _, h, w = images.shape
        side = max(1, round(self.patch_fraction * min(h, w)))
        tops = torch.randint(0, h - side + 1, (b, self.n_patches), generator=generator).tolist()
        lefts = torch.randint(0, w - side + 1, (b, self.n_patches), generator=generator).tolist()
        return torch.stack([images[i, :, top:top + side, left:left + side]
                            for i in range(b) for top, left in zip(tops[i], lefts[i])])

    def info_nce(self, anchors: torch.Tensor) -> torch.Tensor:
        """(N,D) unit image embeddings -> scalar mean InfoNCE: -log(e^(a.t/tau) / (e^(a.t/tau) + sum_k e^(a.n_k/tau)))
        with t the target text and n_k the negative texts."""
        logits = torch.cat([anchors @ self.target[:, None], anchors @ self.negatives.T], dim=1) / self.tau
        return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()

    def loss(self, stylised: torch.Tensor, source: torch.Tensor,
             generator: torch.Generator) -> dict[str, torch.Tensor]:
        """stylised, source (B,H,W,3) in [0,1], the same poses -> {"directional", "global_contrastive",
        "local_contrastive"}: unweighted scalars, means over images (and patches). The source gets no gradient.

        directional = 1 - cos(E(stylised) - E(source), E(target text) - E(source text)), in [0, 2];
        the official code sums its 12 patches' InfoNCE, this averages them (same scale as the global one).
        """
        b = stylised.shape[0]
        x = stylised.permute(0, 3, 1, 2)
        # The images and their patches in one CLIP batch.
        emb = self.clip.encode_image(torch.cat([self.clip.prepare(x), self.clip.prepare(self.patches(x, generator))]))
        whole, local = emb[:b], emb[b:]
        with torch.no_grad():
            source_emb = self.clip.encode_image(self.clip.prepare(source.permute(0, 3, 1, 2)))
        edit = whole - source_emb  # (B,D)
        cos = (edit @ self.direction) / (edit.square().sum(dim=-1) + EDIT_EPS**2).sqrt()
        return {
            "directional": (1 - cos).mean(),
            "global_contrastive": self.info_nce(whole),
            "local_contrastive": self.info_nce(local),
        }
