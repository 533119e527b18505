"""Tiny random-weight models with the real architectures, for tests and the offline demo.

They are saved with the libraries' own formats and loaded back by load_clip / load_diffusion /
load_perceptual / load_identity exactly like real models.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from engine.models.registry import parse_model
from engine.models.resolve import locate

SEED = 0

# open_clip's local-dir layout: the architecture under "model_cfg", normalisation under "preprocess_cfg".
TINY_CLIP_CONFIG = {
    "model_cfg": {
        "embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
        # vocab_size stays at CLIP's 49408: the tokenizer bundled with open_clip produces those ids.
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}

# VGG16's shape (three convs in stages 3-5, relu1_2 ... relu4_3 tapped) at an eighth of its widths.
TINY_PERCEPTUAL_CONFIG = {
    "layers": [8, 8, "M", 16, 16, "M", 32, 32, 32, "M", 64, 64, 64, "M", 64, 64, 64, "M"],
    "taps": [3, 8, 15, 22],
}

# The face recogniser at its real size: InceptionResnetV1 has no width setting, and at 160 px one image
# goes forward and backward in about 0.15 s on one core. Stored in fp16 (47 MB instead of 94 MB; the
# loader casts every file to float32).
TINY_IDENTITY_CONFIG = {"architecture": "inception_resnet_v1", "image_size": 160}


def make_tiny(out_dir: str | Path) -> dict:
    """Write out_dir/clip (open_clip folder), out_dir/diffusion (diffusers pipeline folder),
    out_dir/perceptual (VGG folder: perceptual_config.json + model.safetensors) and out_dir/identity
    (face recogniser folder: identity_config.json + model.safetensors).

    Deterministic (fixed seed; the caller's RNG state is left alone); a folder that is already
    complete is kept as it is. Returns {"clip": abs path, "diffusion": abs path, "perceptual": abs path,
    "identity": abs path}.
    """
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    builders = {"clip": _build_clip, "diffusion": _build_diffusion, "perceptual": _build_perceptual,
                "identity": _build_identity}
    folders = {role: out / role for role in builders}
    for role, build in builders.items():
        folder = folders[role]
        if locate(parse_model(str(folder), role)).path is None:
            _write_folder(folder, build)
    return {role: str(folder) for role, folder in folders.items()}


def _write_folder(folder: Path, build: Callable[[Path], None]) -> None:
    """Build into a temporary sibling and rename it into place, so a folder is never half written."""
    if folder.exists():
        raise FileExistsError(f"{folder} exists but is not a complete tiny model: remove it or choose another folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SEED)
            build(tmp)
        tmp.rename(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_clip(folder: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP_CONFIG, indent=2), encoding="utf-8")
    model = open_clip.CLIP(**TINY_CLIP_CONFIG["model_cfg"])
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")


def _build_diffusion(folder: Path) -> None:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    # sample_size 32 latents decode to 64 px images (the VAE downsamples by 2): renders stay small.
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    vae = AutoencoderKL(
        sample_size=64, in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
    )
    # CLIP's byte-level BPE without merges: every byte alone and word-final, plus the two specials.
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(alphabet + [c + "</w>" for c in alphabet])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    ))
    # Stable Diffusion's noise schedule.
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(folder)


def _build_perceptual(folder: Path) -> None:
    from safetensors.torch import save_file

    from engine.models.perceptual import build_features
    from engine.models.resolve import PERCEPTUAL_CONFIG, PERCEPTUAL_WEIGHTS

    # Only VGG's `features`, under torchvision's names: torchvision's VGG class would add its fixed
    # 25088 -> 4096 -> 4096 classifier (120M weights) that no perceptual loss uses.
    (folder / PERCEPTUAL_CONFIG).write_text(json.dumps(TINY_PERCEPTUAL_CONFIG, indent=2), encoding="utf-8")
    features = build_features(TINY_PERCEPTUAL_CONFIG["layers"])
    save_file({f"features.{key}": value for key, value in features.state_dict().items()}, folder / PERCEPTUAL_WEIGHTS)


def _build_identity(folder: Path) -> None:
    from safetensors.torch import save_file

    from engine.models.identity import build_network
    from engine.models.resolve import IDENTITY_CONFIG, IDENTITY_WEIGHTS

    (folder / IDENTITY_CONFIG).write_text(json.dumps(TINY_IDENTITY_CONFIG, indent=2), encoding="utf-8")
    network = _calibrate_batch_norms(build_network(), TINY_IDENTITY_CONFIG["image_size"])
    state = {k: v.half() if v.is_floating_point() else v for k, v in network.state_dict().items()}
    save_file(state, folder / IDENTITY_WEIGHTS)


def _calibrate_batch_norms(network: torch.nn.Module, size: int) -> torch.nn.Module:
    """Set every BatchNorm's running statistics to those of 8 smooth random images (data-dependent
    initialisation). With PyTorch's defaults (mean 0, variance 1) the random InceptionResnetV1 maps every
    image to nearly the same embedding (cosines above 0.9999), so an identity loss would neither tell
    images apart nor pass a useful gradient; calibrated, different images are tens of degrees apart."""
    batch_norms = [m for m in network.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))]
    for bn in batch_norms:
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: after one batch, exactly its statistics
    network.train()
    network.dropout.eval()  # the statistics of the layer after it are those of inference
    images = torch.nn.functional.interpolate(torch.rand(8, 3, 10, 10), size=(size, size), mode="bilinear",
                                             align_corners=False)
    with torch.no_grad():
        network((images * 255 - 127.5) / 128)
    for bn in batch_norms:
        bn.momentum = 0.1  # facenet-pytorch's (and PyTorch's) setting
    return network.eval()
