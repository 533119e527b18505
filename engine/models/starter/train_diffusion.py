"""Train the starter diffusion model (Stable Diffusion's architecture, small) on renders of the starter
vocabulary; write a diffusers pipeline folder that engine.models.load_diffusion loads like the real one.

    python -m engine.models.starter.train_diffusion [--vae-steps N] [--unet-steps N] [--out DIR]

The parts are Stable Diffusion's (Rombach et al. 2022, "High-Resolution Image Synthesis with Latent
Diffusion Models"), at a size a 2-core CPU trains in under half an hour (800 + 3000 steps):
- AutoencoderKL, 32 px images <-> 16x16x4 latents (downsampling 2, not 8), trained first with an L1 + MSE
  reconstruction and a small KL term; its scaling_factor makes the latents' standard deviation 1, as
  Stable Diffusion's 0.18215 does (section 4.3.2 of the paper);
- CLIPTextModel with CLIP's own BPE tokenizer (open_clip's bundled vocabulary: real prompts tokenize as in
  Stable Diffusion), trained from scratch together with the UNet;
- UNet2DConditionModel predicting the noise (epsilon) under Stable Diffusion's noise schedule (scaled
  linear betas 0.00085-0.012, 1000 steps), captions dropped 10% of the time for classifier-free guidance.

Captions carry DreamFusion's view suffix (", front view", ", side view", ", back view", ", overhead view"),
computed from each render's camera by the function the SDS guidance uses, so view-dependent prompting
means something to this model. Backgrounds are plain random colours, as DreamFusion renders them.

Deterministic on the CPU (fixed seeds everywhere). Evaluated by sampling one image per shape-colour
combination through diffusers' StableDiffusionPipeline and asking the starter judge (trained apart, never
used for guidance) which caption each shows. Prints one JSON line; MODEL_CARD.md repeats it.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...guidance.sds import view_prompt
from . import STARTER_DIFFUSION, STARTER_JUDGE
from .shapes import CLASSES, COLOURS, PHRASINGS, SHAPES, caption, render_shape

RENDER = 64
"""Render size, pixels; images are its 2x2 average (anti-aliased)."""
SIZE = 32
"""Image size the VAE takes, pixels."""
SEED = 3
RENDER_SEED = 300
"""Training renders, apart from both CLIPs' (100, 200) and the held-out ones (900)."""
TEXT_WIDTH = 64
CFG_DROP = 0.1
"""Fraction of captions replaced by "" (classifier-free guidance, Ho & Salimans 2022)."""
EVAL_STEPS, EVAL_SCALE = 30, 5.0
"""DDIM steps and guidance scale of the evaluation samples."""


def clip_tokenizer():
    """CLIP's BPE tokenizer (49408 tokens) as a transformers CLIPTokenizer, built from the vocabulary file that
    open_clip ships (no download): vocab = bytes, bytes + "</w>", the merges, then the two specials, in
    open_clip's SimpleTokenizer order, which is CLIP's vocab.json order."""
    import open_clip
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [b + "</w>" for b in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=77)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which CLIP's BPE uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def build_models(tokenizer):
    """Fresh (vae, text_encoder, unet, scheduler), Stable Diffusion's classes at the starter size."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    # Widths a 2-core CPU trains in minutes (Stable Diffusion's are 128-512); 8 groups in every GroupNorm.
    vae = AutoencoderKL(sample_size=SIZE, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                        block_out_channels=(16, 32), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))
    # diffusers' attention_head_dim is the number of heads here (its long-standing naming quirk).
    unet = UNet2DConditionModel(
        sample_size=SIZE // 2, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=2, norm_num_groups=8)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return vae, text_encoder, unet, scheduler


def render_set(views_per_class: int, seed: int):
    """rgb (N,3,S,S) premultiplied, alpha (N,1,S,S), class (N,), azimuth (N,), elevation (N,) in degrees."""
    g = torch.Generator().manual_seed(seed)
    rgbs, alphas, labels, az, el = [], [], [], [], []
    for k, (shape, colour) in enumerate(CLASSES):
        for _ in range(views_per_class):
            r = render_shape(shape, colour, RENDER, g)
            rgbs.append(r.rgb.permute(2, 0, 1))
            alphas.append(r.alpha[None])
            labels.append(k)
            az.append(float(r.view.azimuth_deg[0]))
            el.append(float(r.view.elevation_deg[0]))
    rgb, alpha = F.avg_pool2d(torch.stack(rgbs), 2), F.avg_pool2d(torch.stack(alphas), 2)
    return rgb, alpha, torch.tensor(labels), torch.tensor(az), torch.tensor(el)


def batch(data, by_class, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """Every class once: a random view over a random plain background, in [-1, 1] (B,3,S,S), and its caption
    (random phrasing, the view suffix of its camera; "" with probability CFG_DROP)."""
    rgb, alpha, _, az, el = data
    picks = [int(idx[torch.randint(len(idx), (1,), generator=g)]) for idx in by_class]
    background = torch.rand(len(picks), 3, 1, 1, generator=g)
    images = rgb[picks] + (1 - alpha[picks]) * background
    u = torch.rand(len(picks), 2, generator=g).tolist()
    texts = []
    for (shape, colour), i, (drop, p) in zip(CLASSES, picks, u):
        text = view_prompt(caption(shape, colour, int(p * len(PHRASINGS))), float(az[i]), float(el[i]))
        texts.append("" if drop < CFG_DROP else text)
    return 2 * images - 1, texts


def cosine_lr(step: int, steps: int, peak: float) -> float:
    warmup = max(1, steps // 20)
    return peak * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))


def train_vae(vae, data, by_class, steps: int, g: torch.Generator, t0: float) -> float:
    """Reconstruction (L1 + MSE) plus a KL weight of 1e-6 (the posterior stays nearly deterministic, as Stable
    Diffusion's); returns the final reconstruction MSE on [-1, 1] images."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    vae.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, 1e-3)
        x, _ = batch(data, by_class, g)
        posterior = vae.encode(x).latent_dist
        z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)
        recon = vae.decode(z).sample
        mse = F.mse_loss(recon, x)
        loss = (recon - x).abs().mean() + mse + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"vae step {step} mse {mse.item():.4f} {time.monotonic() - t0:.0f} s", file=sys.stderr)
    vae.eval().requires_grad_(False)
    return mse.item()


def encode_text(tokenizer, text_encoder, texts: list[str]) -> torch.Tensor:
    ids = tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids)[0]


def train_unet(unet, text_encoder, vae, tokenizer, scheduler, data, by_class, steps: int, g: torch.Generator,
               t0: float):
    """Epsilon prediction under the scheduler's noise (Ho et al. 2020), UNet and text encoder together; an
    exponential moving average (0.999) of both is what gets saved."""
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    scale = vae.config.scaling_factor
    unet.train()
    text_encoder.train()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, steps, 1e-3)
        x, texts = batch(data, by_class, g)
        with torch.no_grad():
            posterior = vae.encode(x).latent_dist
            latents = (posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=g)) * scale
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=g)
        noisy = scheduler.add_noise(latents, noise, t)
        pred = unet(noisy, t, encoder_hidden_states=encode_text(tokenizer, text_encoder, texts)).sample
        loss = F.mse_loss(pred, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        with torch.no_grad():
            decay = min(0.999, (1 + step) / (10 + step))
            for ema, model in ((ema_unet, unet), (ema_text, text_encoder)):
                for e, p in zip(ema.parameters(), model.parameters()):
                    e.lerp_(p, 1 - decay)
        if step % 100 == 0 or step == steps - 1:
            print(f"unet step {step} loss {loss.item():.4f} {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return ema_unet.requires_grad_(False), ema_text.requires_grad_(False), loss.item()


@torch.no_grad()
def evaluate(folder: Path, samples_per_class: int = 1) -> tuple[dict, torch.Tensor]:
    """Sample each canonical caption (", front view") through diffusers' StableDiffusionPipeline built from the
    folder as engine.models.load_diffusion loads it; the starter judge names each sample among all captions.
    Returns the scores and the samples (N,3,S,S) in [0,1], class-major."""
    import open_clip
    from diffusers import StableDiffusionPipeline

    from ..diffusion import load_diffusion
    from .train import normalise

    m = load_diffusion(str(folder), "cpu", torch.float32, allow_downloads=False)
    pipe = StableDiffusionPipeline(vae=m.vae, text_encoder=m.text_encoder, tokenizer=m.tokenizer, unet=m.unet,
                                   scheduler=m.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    prompts = [view_prompt(caption(s, c), 0.0, 20.0) for s, c in CLASSES for _ in range(samples_per_class)]
    images = []
    for i in range(0, len(prompts), 32):
        out = pipe(prompts[i:i + 32], height=SIZE, width=SIZE, num_inference_steps=EVAL_STEPS,
                   guidance_scale=EVAL_SCALE, generator=torch.Generator().manual_seed(SEED + i), output_type="pt")
        images.append(out.images.float().clamp(0, 1))
    images = torch.cat(images)
    judge = open_clip.create_model(f"local-dir:{STARTER_JUDGE}").eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{STARTER_JUDGE}")
    texts = F.normalize(judge.encode_text(tokenizer([caption(s, c) for s, c in CLASSES])), dim=-1)
    size = judge.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    big = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    pred = (F.normalize(judge.encode_image(normalise(big)), dim=-1) @ texts.T).argmax(-1)
    labels = torch.arange(len(CLASSES)).repeat_interleave(samples_per_class)
    n = len(COLOURS)
    return ({"top1": (pred == labels).float().mean().item(), "shape": (pred // n == labels // n).float().mean().item(),
             "colour": (pred % n == labels % n).float().mean().item(), "chance": 1 / len(CLASSES),
             "samples": len(labels), "ddim_steps": EVAL_STEPS, "guidance_scale": EVAL_SCALE}, images)


def save_grid(images: torch.Tensor, path: Path, columns: int) -> None:
    """(N,3,S,S) in [0,1] -> one PNG, N/columns rows."""
    from PIL import Image

    n, _, s, _ = images.shape
    rows = math.ceil(n / columns)
    grid = torch.ones(3, rows * s, columns * s)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[:, r * s:(r + 1) * s, c * s:(c + 1) * s] = images[i]
    Image.fromarray((grid.permute(1, 2, 0) * 255).round().byte().numpy()).resize(
        (columns * s * 2, rows * s * 2), Image.NEAREST).save(path)


def train(vae_steps: int, unet_steps: int, views_per_class: int, out: Path) -> dict:
    from diffusers import StableDiffusionPipeline

    t0 = time.monotonic()
    # 1. Renders (shared by both stages).
    data = render_set(views_per_class, RENDER_SEED)
    by_class = [torch.nonzero(data[2] == k)[:, 0] for k in range(len(CLASSES))]
    render_s = time.monotonic() - t0
    # 2. The models, seeded.
    torch.manual_seed(SEED)
    tokenizer = clip_tokenizer()
    vae, text_encoder, unet, scheduler = build_models(tokenizer)
    g = torch.Generator().manual_seed(SEED + 10)
    # 3. The autoencoder; then the scaling factor that gives its latents unit standard deviation.
    vae_mse = train_vae(vae, data, by_class, vae_steps, g, t0)
    with torch.no_grad():
        x, _ = batch(data, by_class, torch.Generator().manual_seed(SEED + 20))
        std = vae.encode(x).latent_dist.mean.std().item()
    vae.register_to_config(scaling_factor=1.0 / std)
    vae_s = time.monotonic() - t0 - render_s
    # 4. The UNet and the text encoder.
    unet, text_encoder, unet_loss = train_unet(unet, text_encoder, vae, tokenizer, scheduler, data, by_class,
                                               unet_steps, g, t0)
    # 5. Save as fp16 (the variant engine.models.load_diffusion picks when it is the only one) and evaluate the
    # reloaded weights.
    out.mkdir(parents=True, exist_ok=True)
    pipe = StableDiffusionPipeline(vae=vae.half(), text_encoder=text_encoder.half(), tokenizer=tokenizer,
                                   unet=unet.half(), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True, variant="fp16")
    scores, samples = evaluate(out)
    save_grid(samples, out / "samples.png", len(COLOURS))
    params = {name: round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
              for name, module in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    report = {"role": "diffusion", "vae_steps": vae_steps, "unet_steps": unet_steps,
              "views_per_class": views_per_class, "seed": SEED, "render_seed": RENDER_SEED, "params_M": params,
              "size_MB": round(sum(f.stat().st_size for f in out.rglob("*.safetensors")) / 1e6, 1),
              "vae_mse": round(vae_mse, 5), "scaling_factor": round(1.0 / std, 4), "unet_loss": round(unet_loss, 4),
              "render_s": round(render_s, 1), "vae_s": round(vae_s, 1), "total_s": round(time.monotonic() - t0, 1),
              "judged_samples": scores, "machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}"}
    (out / "MODEL_CARD.md").write_text(model_card(report), encoding="utf-8")
    return report


def model_card(r: dict) -> str:
    s, p = r["judged_samples"], r["params_M"]
    return f"""# Text3D starter diffusion

A small latent diffusion model in Stable Diffusion's architecture (diffusers UNet2DConditionModel {p['unet']} M,
AutoencoderKL {p['vae']} M, transformers CLIPTextModel {p['text_encoder']} M parameters, most of them CLIP's
49408-token embedding table; {r['size_MB']} MB in fp16), trained from scratch by
`python -m engine.models.starter.train_diffusion` in {r['total_s']:.0f} s ({r['machine']}).
Use: DreamFusion's score distillation where a test or benchmark must show that guidance works.
It loads through engine.models.load_diffusion, the real models' path.

**What it knows, and nothing else:** {len(SHAPES)} shapes ({', '.join(SHAPES)}) in {len(COLOURS)} plain colours
({', '.join(COLOURS)}), captioned as {', '.join(repr(p) for p in PHRASINGS)}, each with DreamFusion's view suffix
(", front view", ", side view", ", back view", ", overhead view") from its camera. 32 px images, 16x16x4 latents
(the autoencoder downsamples by 2, not 8). Any other word means nothing to it: real prompts need Stable Diffusion.

**Data:** {r['views_per_class']} renders per combination (render seed {r['render_seed']}), drawn as the starter CLIP's
(engine/models/starter/shapes.py) at {RENDER} px and averaged down to {SIZE} px, over random plain background colours.

**Training:** autoencoder {r['vae_steps']} steps (L1 + MSE + 1e-6 KL; final MSE {r['vae_mse']} on [-1, 1]),
scaling factor {r['scaling_factor']} (unit latent standard deviation); then UNet and text encoder together for
{r['unet_steps']} steps of epsilon prediction under Stable Diffusion's noise schedule, every batch holding all
{len(CLASSES)} combinations once, captions dropped {CFG_DROP:.0%} of the time; the EMA (0.999) weights are saved.

**Samples, judged:** one sample per combination ("a {{colour}} {{shape}}, front view", DDIM {s['ddim_steps']} steps,
guidance scale {s['guidance_scale']}), named by the starter judge (trained apart, never used for guidance) among all
{len(CLASSES)} canonical captions: top-1 {s['top1']:.3f} (chance {s['chance']:.3f}); shape right {s['shape']:.3f},
colour right {s['colour']:.3f}. The samples are samples.png (a row per shape, a column per colour).
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--vae-steps", type=int, default=800)
    p.add_argument("--unet-steps", type=int, default=3000)
    p.add_argument("--views", type=int, default=48, help="training renders per shape-colour combination")
    p.add_argument("--out", type=Path, help="output folder (default: the shipped one)")
    args = p.parse_args(argv)
    report = train(args.vae_steps, args.unet_steps, args.views, args.out or STARTER_DIFFUSION)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
