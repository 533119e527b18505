"""Stable Diffusion components for score distillation, loaded one by one from a diffusers folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from engine.models.hub import ensure_local
from engine.models.registry import parse_model
from engine.models.resolve import SD_WEIGHTS

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer


@dataclass(frozen=True, eq=False)
class DiffusionModels:
    """Frozen (eval, no parameter requires grad) Stable Diffusion components; no safety checker."""

    unet: UNet2DConditionModel
    """(B, 4, h, w) latents, (B,) timesteps, (B, 77, C) text embeddings -> .sample (B, 4, h, w) predicted noise."""
    vae: AutoencoderKL
    """(B, 3, H, W) images in [-1, 1] <-> (B, 4, H/f, W/f) latents, f = 2 ** (len(config.block_out_channels) - 1);
    latents are scaled by config.scaling_factor."""
    text_encoder: CLIPTextModel
    """(B, 77) token ids -> .last_hidden_state (B, 77, C)."""
    tokenizer: CLIPTokenizer
    """Prompts -> ids, padded to tokenizer.model_max_length (77)."""
    scheduler: DDIMScheduler
    """DDIM built from the pipeline's scheduler config (its alphas_cumprod give the noise schedule)."""
    name: str = ""
    """The model as job.json's `models` names it (for messages)."""

    @property
    def text_limit(self) -> int:
        """Tokens the text encoder reads besides its start and end tokens (75 of 77): the tokenizer cuts a
        longer text there."""
        return self.tokenizer.model_max_length - self.tokenizer.num_special_tokens_to_add()

    @property
    def text_encoder_label(self) -> str:
        """Whose text encoder this is, for messages."""
        if not self.name:
            return "the diffusion model's text encoder"
        return f"the text encoder of diffusion model {self.name!r}"

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` in this model's tokenizer, start and end tokens excluded, before any truncation."""
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False).input_ids)


def load_diffusion(name: str, device: str | torch.device, dtype: torch.dtype, allow_downloads: bool,
                   role: str = "diffusion") -> DiffusionModels:
    """Load the Stable Diffusion model `name` for `role` of job.json's `models`, in `dtype` on `device`.

    Never touches the network unless allow_downloads; a model that is not on this machine is
    EngineError("model_missing") with the command that downloads it.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = ensure_local(parse_model(name, role), role, allow_downloads)
    # Always from the local folder: a download, if any, happened above with its own choice of files.
    unet = UNet2DConditionModel.from_pretrained(
        folder, subfolder="unet", torch_dtype=dtype, variant=_variant(folder, "unet"), local_files_only=True)
    vae = AutoencoderKL.from_pretrained(
        folder, subfolder="vae", torch_dtype=dtype, variant=_variant(folder, "vae"), local_files_only=True)
    text_encoder = CLIPTextModel.from_pretrained(
        folder, subfolder="text_encoder", dtype=dtype, variant=_variant(folder, "text_encoder"),
        local_files_only=True)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", local_files_only=True)
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    for module in (unet, vae, text_encoder):
        module.to(device).eval().requires_grad_(False)
    return DiffusionModels(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
                           name=name)


def _variant(folder: Path, component: str) -> str | None:
    """"fp16" when a component has only fp16 weights (what `download` fetches), else None."""
    stem = folder / component / SD_WEIGHTS[component]
    has_plain = any(stem.with_name(stem.name + ext).is_file() for ext in (".safetensors", ".bin"))
    return None if has_plain else "fp16"
