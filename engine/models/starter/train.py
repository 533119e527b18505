"""Train a starter CLIP (or its judge) on renders of the starter vocabulary; write an open_clip folder.

    python -m engine.models.starter.train clip  [--steps N] [--out DIR]
    python -m engine.models.starter.train judge [--steps N] [--out DIR]

Deterministic on the CPU (fixed seeds; renders, backgrounds, crops and captions all come from seeded
generators). The guidance model and the judge differ in everything but the vocabulary: renders drawn
with other seeds, another architecture size, another training seed; both are scored on held-out
renders neither saw. Prints one JSON line with the measurements, which MODEL_CARD.md repeats.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...render.background import random_background
from . import STARTER_CLIP, STARTER_JUDGE
from .shapes import CLASSES, COLOURS, PHRASINGS, SHAPES, caption, render_shape

SIZE = 64
"""Render and model input size, pixels."""
PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
              "interpolation": "bicubic", "resize_mode": "shortest"}
TEXT = {"context_length": 77, "vocab_size": 49408}  # CLIP's tokenizer, bundled with open_clip
ROLES = {
    "clip": {"seed": 0, "render_seed": 100, "out": STARTER_CLIP,
             "model_cfg": {"embed_dim": 64,
                           "vision_cfg": {"image_size": SIZE, "layers": 4, "width": 128, "patch_size": 8,
                                          "head_width": 32},
                           "text_cfg": {**TEXT, "width": 64, "heads": 2, "layers": 2}}},
    "judge": {"seed": 1, "render_seed": 200, "out": STARTER_JUDGE,
              "model_cfg": {"embed_dim": 48,
                            "vision_cfg": {"image_size": SIZE, "layers": 3, "width": 96, "patch_size": 8,
                                           "head_width": 32},
                            "text_cfg": {**TEXT, "width": 48, "heads": 2, "layers": 2}}},
}
TEST_RENDER_SEED = 900
"""Held-out renders: neither model trains on them."""


def render_set(views_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rgb (N,H,W,3) premultiplied, alpha (N,H,W), class index (N,) for views_per_class views of each class."""
    g = torch.Generator().manual_seed(seed)
    rgbs, alphas, labels = [], [], []
    for k, (shape, colour) in enumerate(CLASSES):
        for _ in range(views_per_class):
            rgb, alpha, _ = render_shape(shape, colour, SIZE, g)
            rgbs.append(rgb)
            alphas.append(alpha)
            labels.append(k)
    return torch.stack(rgbs), torch.stack(alphas), torch.tensor(labels)


def augment(rgb: torch.Tensor, alpha: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One training image (3,H,W): over a random background (Dream Fields' noise, checkerboard or smooth
    noise, blurred; or a plain colour), then a random crop of 75-100% resized back."""
    if torch.rand(1, generator=g).item() < 0.3:
        background = torch.rand(3, generator=g).expand(SIZE, SIZE, 3)
    else:
        background = random_background(SIZE, g, 10.0)
    image = (rgb + (1 - alpha[..., None]) * background).permute(2, 0, 1)
    side = int(SIZE * (0.75 + 0.25 * torch.rand(1, generator=g).item()))
    y, x = (torch.randint(SIZE - side + 1, (2,), generator=g)).tolist()
    crop = image[:, y:y + side, x:x + side]
    return F.interpolate(crop[None], size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0]


def normalise(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(PREPROCESS["mean"]), torch.tensor(PREPROCESS["std"])
    return (images - mean[:, None, None]) / std[:, None, None]


def evaluate(model, tokenizer, test) -> dict:
    """Zero-shot accuracy on held-out renders over random backgrounds: pick the canonical caption (of 64), and
    read off whether its shape and its colour are right."""
    rgb, alpha, labels = test
    g = torch.Generator().manual_seed(TEST_RENDER_SEED + 1)
    images = torch.stack([augment(rgb[i], alpha[i], g) for i in range(len(labels))])
    with torch.no_grad():
        texts = F.normalize(model.encode_text(tokenizer([caption(s, c) for s, c in CLASSES])), dim=-1)
        feats = torch.cat([F.normalize(model.encode_image(normalise(images[i:i + 256])), dim=-1)
                           for i in range(0, len(images), 256)])
    pred = (feats @ texts.T).argmax(-1)
    n_colours = len(COLOURS)
    return {"top1": (pred == labels).float().mean().item(),
            "shape": (pred // n_colours == labels // n_colours).float().mean().item(),
            "colour": (pred % n_colours == labels % n_colours).float().mean().item(),
            "chance": 1 / len(CLASSES), "test_images": len(labels)}


def train(role: str, steps: int, views_per_class: int, out: Path) -> dict:
    import open_clip
    from safetensors.torch import save_file

    cfg = ROLES[role]
    t0 = time.monotonic()
    # 1. Renders: the role's own training views, and the shared held-out views.
    data = render_set(views_per_class, cfg["render_seed"])
    test = render_set(8, TEST_RENDER_SEED)
    render_s = time.monotonic() - t0
    # 2. The model, seeded.
    torch.manual_seed(cfg["seed"])
    model = open_clip.CLIP(**cfg["model_cfg"])
    tokenizer = open_clip.get_tokenizer("ViT-B-32")  # the bundled BPE; context 77 as in the config
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    g = torch.Generator().manual_seed(cfg["seed"] + 10)
    rgb, alpha, labels = data
    by_class = [torch.nonzero(labels == k)[:, 0] for k in range(len(CLASSES))]
    # 3. Train: each batch holds every class once (no false negatives in the contrastive loss), a random
    # view of it and a random phrasing of its caption.
    model.train()
    for step in range(steps):
        lr = 5e-4 * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr
        picks = [int(idx[torch.randint(len(idx), (1,), generator=g)]) for idx in by_class]
        images = normalise(torch.stack([augment(rgb[i], alpha[i], g) for i in picks]))
        phrasings = torch.randint(len(PHRASINGS), (len(CLASSES),), generator=g).tolist()
        texts = tokenizer([caption(s, c, p) for (s, c), p in zip(CLASSES, phrasings)])
        image_f, text_f, logit_scale = model(images, texts)
        logits = logit_scale * image_f @ text_f.T
        target = torch.arange(len(CLASSES))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == steps - 1:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.monotonic() - t0:.0f} s", file=sys.stderr)
    model.eval()
    # 4. Save as fp16 (half the size; the scores below are of the reloaded fp16 weights) and evaluate.
    out.mkdir(parents=True, exist_ok=True)
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg["model_cfg"],
                                                           "preprocess_cfg": PREPROCESS}, indent=2))
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    reloaded = open_clip.create_model(f"local-dir:{out}").eval()
    scores = evaluate(reloaded, open_clip.get_tokenizer(f"local-dir:{out}"), test)
    report = {"role": role, "steps": steps, "views_per_class": views_per_class, "seed": cfg["seed"],
              "render_seed": cfg["render_seed"], "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
              "size_MB": round((out / "open_clip_model.safetensors").stat().st_size / 1e6, 1),
              "render_s": round(render_s, 1), "total_s": round(time.monotonic() - t0, 1), "held_out": scores,
              "machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}"}
    (out / "MODEL_CARD.md").write_text(model_card(report), encoding="utf-8")
    return report


def model_card(r: dict) -> str:
    s = r["held_out"]
    use = ("text guidance where a test or benchmark must show that guidance works (bench/bench_text_to_3d.py)"
           if r["role"] == "clip" else "evaluation only (R-precision in bench/bench_text_to_3d.py); never for guidance")
    return f"""# Text3D starter {r['role']}

A small CLIP (open_clip architecture, {r['params_M']} M parameters, {r['size_MB']} MB in fp16) trained from scratch
by `python -m engine.models.starter.train {r['role']}` in {r['total_s']:.0f} s ({r['machine']}).
Use: {use}.

**What it knows, and nothing else:** {len(SHAPES)} shapes ({', '.join(SHAPES)}) in {len(COLOURS)} plain colours
({', '.join(COLOURS)}), {len(CLASSES)} combinations, captioned as {', '.join(repr(p) for p in PHRASINGS)}.
Any other word, object, material or style means nothing to it: real prompts need the real CLIP.

**Data:** {r['views_per_class']} renders per combination (render seed {r['render_seed']}) by the engine's own
volume renderer (engine/models/starter/shapes.py): random cameras (radius 3.5-4.5, elevation -10 to 60
degrees, any azimuth, FOV 30-40 degrees), random size and spin, half flat albedo (as Dream Fields
renders) and half lambertian-shaded; composited over Dream Fields' random backgrounds (noise,
checkerboard, smooth noise, blurred) or a plain colour, randomly cropped to 75-100%.

**Training:** every batch holds all {len(CLASSES)} combinations once with a random phrasing (CLIP's symmetric
contrastive loss), {r['steps']} steps of AdamW (lr 5e-4, warm-up then cosine), seed {r['seed']}.

**Held-out accuracy** ({s['test_images']} renders no model trained on, over random backgrounds; picking the
canonical caption among all {len(CLASSES)}): top-1 {s['top1']:.3f} (chance {s['chance']:.3f}); shape right
{s['shape']:.3f}, colour right {s['colour']:.3f}.
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("role", choices=tuple(ROLES))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--views", type=int, default=40, help="training renders per shape-colour combination")
    p.add_argument("--out", type=Path, help="output folder (default: the shipped one)")
    args = p.parse_args(argv)
    report = train(args.role, args.steps, args.views, args.out or ROLES[args.role]["out"])
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
