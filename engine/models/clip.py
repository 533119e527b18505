"""open_clip models for CLIP guidance: loading, frozen, behind a two-method interface."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from engine.errors import EngineError
from engine.models.hub import ensure_local
from engine.models.registry import DEFAULT_MODELS, ModelRef, parse_model


@dataclass(frozen=True, eq=False)
class ClipModel:
    """A frozen open_clip model with its tokenizer and image normalisation."""

    model: torch.nn.Module
    """open_clip CLIP in eval mode; no parameter requires grad."""
    tokenizer: Callable[[list[str]], torch.Tensor]
    """B prompts -> (B, context_length) int64 tokens."""
    image_size: int
    """Side S of the square images encode_image takes."""
    mean: torch.Tensor
    """(3,) channel means of RGB in [0, 1], on the model's device: normalised = (rgb - mean) / std."""
    std: torch.Tensor
    """(3,) channel standard deviations, on the model's device."""
    name: str = ""
    """The model as job.json's `models` names it (for messages)."""

    @property
    def text_limit(self) -> int:
        """Tokens the text tower reads besides its start and end tokens (75 of CLIP's 77): the tokenizer cuts
        a longer text there."""
        return self.tokenizer.context_length - 2

    @property
    def text_encoder_label(self) -> str:
        """Whose text encoder this is, for messages."""
        return f"the text tower of CLIP model {self.name!r}" if self.name else "CLIP's text tower"

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in this model's tokenizer, start and end tokens excluded, before any truncation."""
        return len(self.tokenizer.encode(text))

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """B prompts -> (B, D) unit-length embeddings, without grad."""
        tokens = self.tokenizer(texts).to(self.mean.device)
        with torch.no_grad():
            return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> (B, 3, S, S) resized (bilinear, antialiased when shrinking) and normalised."""
        x = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                          antialias=max(images.shape[-2:]) > self.image_size)
        return (x - self.mean.to(x)[:, None, None]) / self.std.to(x)[:, None, None]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images, already resized and normalised -> (B, D) unit-length embeddings, differentiable."""
        return F.normalize(self.model.encode_image(images).float(), dim=-1)


def load_clip(name: str, device: str | torch.device, allow_downloads: bool, role: str = "clip") -> ClipModel:
    """Load the open_clip model `name` for `role` of job.json's `models`.

    Never touches the network unless allow_downloads; a model that is not on this machine is
    EngineError("model_missing") with the command that downloads it.
    """
    import open_clip

    ref = parse_model(name, role)
    if ref.arch is not None:
        _check_text_tower(open_clip.get_model_config(ref.arch), ref, role)
        weights = ensure_local(ref, role, allow_downloads)
        pretrained = open_clip.get_pretrained_cfg(ref.arch, ref.tag)
        # open_clip only warns when a tag was trained with QuickGELU (the OpenAI weights) and the
        # architecture config says GELU; the embeddings are then wrong, so apply the tag's setting.
        model = open_clip.create_model(
            ref.arch, pretrained=str(weights), device=device,
            force_quick_gelu=pretrained.get("quick_gelu", False), force_preprocess_cfg=pretrained,
        )
        tokenizer = open_clip.get_tokenizer(ref.arch)
    else:  # a folder with open_clip_config.json: local, or a snapshot in the HF cache
        folder = ensure_local(ref, role, allow_downloads)
        config = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
        _check_text_tower(config.get("model_cfg", {}), ref, role)
        model = open_clip.create_model(f"local-dir:{folder}", device=device)
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model.eval().requires_grad_(False)

    preprocess = model.visual.preprocess_cfg
    size = preprocess["size"]
    return ClipModel(
        model=model,
        tokenizer=tokenizer,
        image_size=size if isinstance(size, int) else size[0],  # CLIP inputs are square
        mean=torch.tensor(preprocess["mean"], dtype=torch.float32, device=device),
        std=torch.tensor(preprocess["std"], dtype=torch.float32, device=device),
        name=name,
    )


def _check_text_tower(model_cfg: dict, ref: ModelRef, role: str) -> None:
    # A Hugging Face text tower or tokenizer is fetched from the hub by name at load time, which
    # would break the offline promise; the CLIP BPE tokenizer ships inside open_clip.
    text_cfg = model_cfg.get("text_cfg", {})
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if text_cfg.get(key):
            raise EngineError(
                "invalid_job",
                f"models.{role}: {ref.name!r} needs the Hugging Face model {text_cfg[key]!r} for its text side "
                f"(text_cfg.{key}); Text3D loads open_clip models that use open_clip's own tokenizer",
                f"use e.g. {DEFAULT_MODELS['clip']!r} or 'ViT-B-32/openai'",
            )
