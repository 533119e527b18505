"""DreamFusion's guidance: Score Distillation Sampling through Stable Diffusion (Poole et al. 2022).

The render is encoded by the VAE with gradients; noise is added at a random timestep and the
UNet's classifier-free-guided noise prediction, minus the noise, is the gradient on the
latents: w(t) * (eps_hat - eps), w(t) = 1 - alpha_bar_t. The UNet itself is never
differentiated (stable-dreamfusion, threestudio).

Optionally (`approximate=True`, DreamFusion's latent warm-up) the render skips the VAE encoder:
it is resized to the latent resolution and mapped to latents by a fixed affine map, the
least-squares inverse of the linear latent -> RGB approximation that previewers use. Cheaper
(no 512 px encoder forward and backward), with a cruder colour target; in the spirit of
Latent-NeRF and threestudio's `rgb_as_latents`, where the field renders the 4 latent channels.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ..models.diffusion import DiffusionModels
from ..prompts import fit_and_warn

# Stable Diffusion 1.x/2.x latents -> RGB, a 4x3 linear map: rgb in [-1, 1] = latents (scaled by
# 0.18215, as the UNet sees them) @ LATENT_RGB_FACTORS, no bias. The factors are ComfyUI's
# (comfy/latent_formats.py, class SD15, which ComfyUI also uses for SD 2.x; latent_preview.py's
# Latent2RGBPreviewer maps the product from [-1, 1] to [0, 255]). They replaced the first such
# factors there, Keturn's, fitted on SD 1.4 (https://discuss.huggingface.co/t/23204, "Decoding
# latents to RGB without upscaling", 2022; also InvokeAI's approximate decoder).
LATENT_RGB_FACTORS = (
    # R        G        B
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
LATENT_RGB_SCALING = 0.18215
"""The VAE scaling factor of the latents that LATENT_RGB_FACTORS were fitted on."""


def rgb_to_latent_map(scaling_factor: float = LATENT_RGB_SCALING) -> tuple[torch.Tensor, torch.Tensor]:
    """(matrix (3, 4), bias (4,)) with latents = rgb @ matrix + bias for rgb in [0, 1], float32.

    The minimum-norm least-squares inverse of rgb_[-1,1] = latents @ LATENT_RGB_FACTORS: the
    factors have rank 3, so RGB -> latents -> RGB is exact (to float rounding) and latents ->
    RGB -> latents is the orthogonal projection onto the factors' 3-dimensional column space
    (what the 4th latent direction held is lost: the cruder target). The bias is the [0, 1] ->
    [-1, 1] shift. Latents come out scaled by `scaling_factor` (the VAE's config.scaling_factor,
    as ScoreDistillation.encode scales them), rescaled from the factors' own 0.18215.
    """
    inverse = torch.linalg.pinv(torch.tensor(LATENT_RGB_FACTORS, dtype=torch.float64))  # (3, 4)
    inverse = inverse * (scaling_factor / LATENT_RGB_SCALING)
    # latents = (2 rgb - 1) @ inverse
    return (2 * inverse).float(), (-inverse.sum(0)).float()


VIEW_SUFFIXES = {"front": ", front view", "side": ", side view", "back": ", back view", "overhead": ", overhead view"}
"""DreamFusion's view suffixes, appended to the prompt."""


def view_prompt(prompt: str, azimuth_deg: float, elevation_deg: float, overhead_deg: float = 60.0) -> str:
    """The prompt with DreamFusion's view suffix: overhead above `overhead_deg`, else by azimuth
    (0 = front = camera on -Y, wrapped to (-180, 180]): front within 45 degrees, back beyond 135, side between."""
    if elevation_deg > overhead_deg:
        return prompt + VIEW_SUFFIXES["overhead"]
    azimuth = (azimuth_deg + 180.0) % 360.0 - 180.0
    azimuth = 180.0 if azimuth == -180.0 else azimuth
    if abs(azimuth) <= 45:
        return prompt + VIEW_SUFFIXES["front"]
    if abs(azimuth) > 135:
        return prompt + VIEW_SUFFIXES["back"]
    return prompt + VIEW_SUFFIXES["side"]


class ScoreDistillation:
    """loss = SDS of rendered images under the view-dependent prompt; d loss / d latents = w(t) (eps_hat - eps).

    models: frozen DiffusionModels (their dtype is the compute dtype). offload: the models live
    on the CPU and each visits `device` only while it runs (saves GPU memory, costs transfers).
    Text embeddings are computed once per distinct view prompt and cached. A prompt too long for the
    text encoder with its view suffixes loses words from its end, so that every view prompt keeps its
    suffix (the tokenizer would cut the suffixes and give all views one conditioning); a negative prompt
    too long is cut likewise. Each logs one warning naming the dropped words (engine/prompts.py).
    """

    def __init__(self, models: DiffusionModels, prompt: str, negative_prompt: str = "", guidance_scale: float = 100.0,
                 t_range: tuple[float, float] = (0.02, 0.98), overhead_deg: float = 60.0,
                 device: torch.device | str = "cpu", offload: bool = False) -> None:
        self.models = models
        suffixes = tuple(VIEW_SUFFIXES.values())
        self.prompt = fit_and_warn(
            prompt, models.count_tokens, models.text_limit, "prompt", models.text_encoder_label,
            forms=[lambda p, s=s: p + s for s in suffixes], forms_label="with its view suffix",
            kept=" and kept the view suffixes (" + ", ".join(repr(s) for s in suffixes) + ")").text
        self.negative_prompt = fit_and_warn(negative_prompt, models.count_tokens, models.text_limit,
                                            "negative_prompt", models.text_encoder_label).text
        self.guidance_scale, self.overhead_deg = guidance_scale, overhead_deg
        self.device, self.offload = torch.device(device), offload
        n = models.scheduler.config.num_train_timesteps
        self.t_min, self.t_max = int(t_range[0] * n), int(t_range[1] * n)
        self.alphas_cumprod = models.scheduler.alphas_cumprod.to(self.device)  # (num_train_timesteps,)
        # The VAE's input side: what the UNet was trained at times the VAE's downsampling (512 for SD 2.1-base).
        self.vae_factor = 2 ** (len(models.vae.config.block_out_channels) - 1)
        self.image_size = models.unet.config.sample_size * self.vae_factor
        # The UNet's latent side (64 for SD 2.1-base): approximate_latents resizes renders to it.
        self.latent_size = self.image_size // self.vae_factor
        matrix, bias = rgb_to_latent_map(models.vae.config.scaling_factor)
        self.rgb_to_latents = matrix.to(self.device), bias.to(self.device)
        self.dtype = models.unet.dtype
        self._embeddings: dict[str, torch.Tensor] = {}

    @contextmanager
    def _on_device(self, module: torch.nn.Module):
        if self.offload:
            module.to(self.device)
        try:
            yield module
        finally:
            if self.offload:
                module.to("cpu")

    @torch.no_grad()
    def embed(self, text: str) -> torch.Tensor:
        """text -> (77, C) text-encoder hidden states, cached."""
        if text not in self._embeddings:
            tok = self.models.tokenizer([text], padding="max_length", max_length=self.models.tokenizer.model_max_length,
                                        truncation=True, return_tensors="pt")
            with self._on_device(self.models.text_encoder) as encoder:
                self._embeddings[text] = encoder(tok.input_ids.to(self.device))[0][0]
        return self._embeddings[text]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B,H,W,3) in [0,1] -> (B,4,h,w) scaled latents, with gradients through the encoder."""
        x = images.permute(0, 3, 1, 2).to(self.dtype)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        with self._on_device(self.models.vae) as vae:
            # The posterior mean: sampling would add noise the SDS noise already provides.
            return vae.encode(2 * x - 1).latent_dist.mean * vae.config.scaling_factor

    def approximate_latents(self, images: torch.Tensor) -> torch.Tensor:
        """(B,H,W,3) in [0,1] -> (B,4,h,w) scaled latents by rgb_to_latent_map, without the VAE; with gradients.

        Resized first (the map is affine per pixel, so resizing commutes with it): h = w = the
        UNet's latent side (64 for SD 2.1-base, whose 64 px renders then need no resizing).
        """
        x = images.permute(0, 3, 1, 2).float()
        if x.shape[-1] != self.latent_size or x.shape[-2] != self.latent_size:
            # antialias when shrinking: plain bilinear would skip pixels and their gradients.
            x = F.interpolate(x, size=(self.latent_size, self.latent_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.latent_size)
        matrix, bias = self.rgb_to_latents
        return (torch.einsum("bchw,cl->blhw", x, matrix) + bias[:, None, None]).to(self.dtype)

    def loss(self, images: torch.Tensor, views, generator: torch.Generator,
             approximate: bool = False) -> dict[str, torch.Tensor]:
        """images (B,H,W,3) in [0,1], views (engine.cameras.Views, B cameras) -> {"sds": scalar}, unweighted.

        approximate: latents by approximate_latents (no VAE encoder) instead of encode.
        """
        b = images.shape[0]
        latents = self.approximate_latents(images) if approximate else self.encode(images)
        t = torch.randint(self.t_min, self.t_max + 1, (b,), generator=generator)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        cond = torch.stack([self.embed(view_prompt(self.prompt, float(az), float(el), self.overhead_deg))
                            for az, el in zip(views.azimuth_deg, views.elevation_deg)])
        uncond = self.embed(self.negative_prompt).expand_as(cond)
        with torch.no_grad():
            t = t.to(self.device)
            noisy = self.models.scheduler.add_noise(latents.detach(), noise, t)
            with self._on_device(self.models.unet) as unet:
                eps_u, eps_c = unet(torch.cat([noisy, noisy]), torch.cat([t, t]),
                                    encoder_hidden_states=torch.cat([uncond, cond])).sample.float().chunk(2)
            eps_hat = eps_u + self.guidance_scale * (eps_c - eps_u)
            w = (1 - self.alphas_cumprod[t]).float()[:, None, None, None]
            # No nan_to_num (as some implementations do): a non-finite prediction must surface
            # as a non-finite loss, which the run loop reports as `diverged`.
            grad = w * (eps_hat - noise.float())
        latents = latents.float()
        # 0.5 * |latents - target|^2 with a detached target: its gradient on the latents is exactly `grad`.
        return {"sds": 0.5 * (latents - (latents - grad).detach()).square().sum() / b}
