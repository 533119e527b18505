"""Latent tri-plane editing (engine/methods/latent_edit): inversion quality against time, and the cost of an edit step.

Prints one JSON object with the machine (platform, torch, threads, device) and one section per part.

    python bench/bench_latent_edit.py [--part inversion|edit|both] [--real-size] [--device cpu]
        [--steps 50,100,200,300] [--rays 4096] [--timed 3] [--source-steps 100]

1. inversion: held-out PSNR against training time. The capture is the analytic box of
   tests/engine/capture_support.py at --size px (64) from --views cameras (40), every 5th held
   out (options.holdout_every). It is fitted by `method: reconstruct`, whose step is what
   latent_edit's invert phase runs, with three fields: tri-planes at 128^2 and 256^2 (32
   channels, decoder width 64: the starter decoder loads, options.field.triplane_decoder
   "auto") and reconstruct's default hash grid. Each field is trained once, to the largest of
   --steps, by the run loop's own step (engine.jobs.run.optimise_step), and evaluated
   (Reconstruct.evaluate, not counted in the time) after each step count of --steps. So the
   intermediate points lie on the longest run's learning-rate schedule (exponential decay over
   all its steps): a run that stopped there would have decayed further.
   Timed: whole run-loop steps (learning rate, method.step, weighted total, backward, Adam).
   The default --steps stop at 300: on a 2-core CPU a step takes about 0.27 s (tri-planes 128),
   0.52 s (tri-planes 256) and 0.45 s (hash grid), so this part takes about 6.5 minutes there;
   1000 steps of the three would take over 20.

2. edit: seconds per edit step and peak memory of latent_edit beside a DreamFusion step, both
   at render.size 64 (each method's own samples_per_ray unless --samples). The edit starts from
   inputs.source_job, a --source-steps tri-plane reconstruct job of the same capture (its
   empty-space grid too), so every step timed is an edit step: SDS at a jittered capture
   camera, the photometric MSE, VGG perceptual and CLIP identity losses at a capture camera,
   the density correlation. DreamFusion's timed steps start past its albedo warm-up (as
   bench_dreamfusion.py times them). Each method runs in its own child process, so that the
   peak memory is its own: the process's peak RSS on the CPU (it includes building the
   models), torch.cuda.max_memory_allocated on CUDA. In each: one untimed step; the
   text-embedding cache filled for the four view prompts; for the edit, the per-frame caches
   (the photo at the render size, the source's render there) filled for every training frame,
   as the first step at each frame would (their time reported apart, as cache_fill_s); then
   --timed steps, each a whole run-loop step as above. The source job is short, so its
   empty-space grid still marks every cell occupied (the grid keeps a decaying maximum, which
   forgets a starting density of ~0.3 only after ~1100 steps) and the edit's renders skip
   nothing: an edit after a long inversion renders somewhat less, a small part of a real-size
   step. With --real-size this part takes about 6.5 minutes on a 2-core CPU (steps of ~30 s).
   Models: without --real-size the tiny ones of `python -m engine models make-tiny`; with it,
   random weights of the real architectures, which cost the time and memory trained ones do:
   Stable Diffusion 2.1-base's UNet, VAE and text encoder (bench_dreamfusion.real_size_models,
   handed to the method in place of load_diffusion), torchvision's VGG16 convolutional stack
   (bench_nerf_art.write_random_vgg16) and open_clip's ViT-B-16 (the default CLIP,
   bench_dream_fields.write_random_clip), the last two written as local folders and loaded by
   the engine's own loaders (load_perceptual, load_clip).
"""
from __future__ import annotations

import argparse
import io
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from capture_support import render_capture  # noqa: E402

from engine.jobs.run import optimise_step  # noqa: E402
from engine.methods.reconstruct.method import Reconstruct  # noqa: E402
from engine.spec import parse_job  # noqa: E402

PROMPT = "a blue cube"
HOLDOUT_EVERY = 5
# The tri-planes latent_edit edits (its options.field), at two resolutions; null = reconstruct's own hash grid.
FIELDS = {
    "triplane_128": {"backbone": "triplane", "triplane_resolution": 128, "triplane_channels": 32, "mlp_width": 64},
    "triplane_256": {"backbone": "triplane", "triplane_resolution": 256, "triplane_channels": 32, "mlp_width": 64},
    "hashgrid": None,
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_step(method, seed: int, step: int, device: torch.device):
    """(seconds, StepOutput) of run-loop step `step`."""
    sync(device)
    t = time.perf_counter()
    out = optimise_step(method, seed, step)
    sync(device)
    return time.perf_counter() - t, out


def machine(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def box_capture(folder: Path, args) -> Path:
    """The analytic box (red and blue sides, yellow top) from args.views cameras at args.size px."""
    if not (folder / "transforms.json").is_file():
        render_capture(folder, n=args.views, size=args.size)
    return folder


# 1. Inversion --------------------------------------------------------------------------------------------------


def inversion(tmp: Path, args, device: torch.device) -> dict:
    """Held-out PSNR at each of args.steps for each field of FIELDS, one run per field."""
    capture = box_capture(tmp / "box", args)
    checkpoints = sorted(set(args.steps))
    fits = {}
    for name, field in FIELDS.items():
        options = {"holdout_every": HOLDOUT_EVERY, "rays_per_step": args.rays}
        if field is not None:
            options["field"] = field
        spec = parse_job({"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)},
                          "steps": checkpoints[-1], "device": str(device), "options": options})
        torch.manual_seed(spec.seed)
        method = Reconstruct(spec, device)
        points, trained = [], 0.0
        for step in range(checkpoints[-1]):
            seconds, out = timed_step(method, spec.seed, step, device)
            trained += seconds
            if step + 1 in checkpoints:
                with torch.no_grad():
                    metrics = method.evaluate(tmp / name)
                points.append({"steps": step + 1, "train_s": round(trained, 1),
                               "test_psnr": round(metrics["test_psnr"], 2),
                               "train_batch_psnr": round(out.metrics["psnr"], 2),
                               "occupied": round(out.metrics.get("occupied", 1.0), 3)})
                print(json.dumps({name: points[-1]}), file=sys.stderr)
        f = spec.options.field
        if f.backbone == "triplane":
            described = (f"tri-planes 3 x {f.triplane_channels} x {f.triplane_resolution}^2, decoder width "
                         f"{f.mlp_width} (triplane_decoder {f.triplane_decoder!r})")
        else:
            described = (f"hash grid {f.hash_levels} levels to {f.hash_max_resolution}, 2^{f.hash_log2_size} "
                         f"entries, MLP width {f.mlp_width}")
        fits[name] = {"field": described, "params_M": round(sum(p.numel() for p in method.field.parameters()) / 1e6, 2),
                      "s_per_step": round(trained / checkpoints[-1], 3), "points": points}
        samples = spec.render.samples_per_ray
    test = len(range(0, args.views, HOLDOUT_EVERY))
    return {"capture": f"analytic box, {args.views} views of {args.size} px, every {HOLDOUT_EVERY}th held out "
                       f"({args.views - test} train, {test} test)",
            "method": "reconstruct (latent_edit's invert phase)", "rays_per_step": args.rays,
            "samples_per_ray": samples,
            "lr_schedule": f"exponential decay over {checkpoints[-1]} steps in every run; points are taken along it",
            "fields": fits}


# 2. Edit step against DreamFusion step ---------------------------------------------------------------------------


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def models_for(tmp: Path, real_size: bool) -> dict[str, str]:
    """{role: folder}: the tiny models, with real-size random CLIP ViT-B-16 and VGG16 in place of theirs."""
    from engine.models import make_tiny

    models = make_tiny(tmp / "tiny")
    if real_size:
        from bench_dream_fields import write_random_clip
        from bench_nerf_art import write_random_vgg16

        if not (tmp / "clip-vit-b-16").is_dir():
            write_random_clip(tmp / "clip-vit-b-16", "ViT-B-16")
            write_random_vgg16(tmp / "vgg16")
        models = {**models, "clip": str(tmp / "clip-vit-b-16"), "perceptual": str(tmp / "vgg16")}
    return models


def source_job(tmp: Path, capture: Path, args) -> Path:
    """A finished tri-plane reconstruct job of the capture with latent_edit's field: the edit's inputs.source_job."""
    from engine.jobs.run import run_job
    from engine.methods.latent_edit import LatentEditOptions

    folder = tmp / "source"
    folder.mkdir(parents=True, exist_ok=True)
    field = {k: getattr(LatentEditOptions.field, k) for k in ("backbone", "triplane_resolution", "triplane_channels",
                                                               "mlp_width", "density_bias", "lambda_plane_tv")}
    (folder / "job.json").write_text(json.dumps({
        "spec_version": 1, "method": "reconstruct", "seed": 0, "steps": args.source_steps, "device": args.device,
        "inputs": {"capture": str(capture)}, "options": {"holdout_every": HOLDOUT_EVERY, "field": field},
        "export": {"resolution": 32, "formats": ["npz"]}, "preview_every": 0, "checkpoint_every": 0}))
    code = run_job(folder, False, io.StringIO())
    if code != 0:
        sys.exit(f"the source job failed ({code}): {(folder / 'log.txt').read_text()[-2000:]}")
    return folder


def fill_edit_caches(method) -> None:
    """What LatentEdit.step computes on its first visit to a capture frame, for every training frame: the photo
    at the render size and the source's render there (mirrors that code)."""
    from engine.render import composite
    from engine.render.image import render_pixels

    with torch.no_grad():
        for index in method.train.tolist():
            origins, dirs, (rh, rw), focal = method.frame_camera(index)
            method.target(index, (rh, rw))
            if index not in method.source_renders:
                src = render_pixels(method.source, origins, dirs, method.spec.render.samples_per_ray, focal,
                                    chunk=16384)
                image = composite(src.rgb, src.opacity, method.background_of())
                method.source_renders[index] = image.reshape(rh, rw, 3)


def edit_worker(args) -> None:
    """Child process: build one method (args.worker), time args.timed steps; print one JSON line."""
    from engine.methods.dreamfusion import method as dreamfusion
    from engine.methods.dreamfusion.method import model_dtype
    from engine.methods.latent_edit import method as latent_edit
    from engine.models import load_diffusion

    device = torch.device(args.device)
    config = json.loads(Path(args.worker_config).read_text())
    models, module = config["models"], {"dreamfusion": dreamfusion, "latent_edit": latent_edit}[args.worker]
    render = {"size": args.render_size, **({"samples_per_ray": args.samples} if args.samples else {})}
    job = {"spec_version": 1, "method": args.worker, "prompt": PROMPT, "seed": 0, "device": args.device,
           "render": render, "models": {"diffusion": models["diffusion"]}}
    if args.worker == "latent_edit":
        job["models"] = {role: models[role] for role in ("diffusion", "perceptual", "clip")}
        job["inputs"] = {"capture": config["capture"], "source_job": config["source_job"]}
        job["options"] = {"holdout_every": HOLDOUT_EVERY}
    spec = parse_job(job)
    built = time.perf_counter()
    if args.real_size:
        from bench_dreamfusion import real_size_models

        # Both methods load the diffusion models as model_dtype("auto"): DreamFusion's options.precision default.
        dtype = model_dtype("auto", device)
        diffusion = real_size_models(load_diffusion(models["diffusion"], "cpu", torch.float32, False), device, dtype)
        module.load_diffusion = lambda *a, **k: diffusion  # the method takes them as if loaded
    torch.manual_seed(spec.seed)
    method = module.build(spec, device)
    built = time.perf_counter() - built

    seconds = []
    if args.worker == "latent_edit":
        steps = range(method.edit_start, method.edit_start + 1 + args.timed)
        assert all(method.phase(k).name == "edit" for k in steps), "timed steps must be edit steps"
    else:  # past the albedo (and latent) warm-up, as bench_dreamfusion.py: the run's usual shading mix
        start = max(method.warmup, method.latent_warmup)
        steps = [0, *range(start, start + args.timed)]
    timed_step(method, spec.seed, steps[0], device)  # untimed: lazy allocations, the empty-space grid
    for suffix in ("front view", "side view", "back view", "overhead view"):
        method.guidance.embed(f"{spec.prompt}, {suffix}")  # the prompt cache, outside the timings
    fill = 0.0
    if args.worker == "latent_edit":
        sync(device)
        t = time.perf_counter()
        fill_edit_caches(method)
        sync(device)
        fill = time.perf_counter() - t
    for k in steps[1:]:
        seconds.append(timed_step(method, spec.seed, k, device)[0])
    unet = method.guidance.models.unet
    result = {
        "samples_per_ray": spec.render.samples_per_ray, "render": spec.render.size, "steps_timed": list(steps[1:]),
        "build_s": round(built, 1), "unet_params_M": round(sum(p.numel() for p in unet.parameters()) / 1e6, 1),
        "dtype": str(unet.dtype).removeprefix("torch."),
        "s_per_step_mean": round(statistics.mean(seconds), 3),
        "s_per_step_median": round(statistics.median(seconds), 3),
        "all_s": [round(s, 3) for s in seconds], "peak_memory_mb": round(peak_memory_mb(device)),
        "occupied": method.empty_space.metrics().get("occupied"),
    }
    if args.worker == "latent_edit":
        clip, vgg = method.identity.embedder, method.perceptual.features
        result.update({"cache_fill_s": round(fill, 2), "cache_frames": len(method.train),
                       "clip_params_M": round(sum(p.numel() for p in clip.model.visual.parameters()) / 1e6, 1),
                       "clip_image_size": clip.image_size,
                       "vgg_params_M": round(sum(p.numel() for p in vgg.features.parameters()) / 1e6, 1)})
    print(json.dumps(result))


def edit(tmp: Path, args, device: torch.device) -> dict:
    """latent_edit and DreamFusion steps, each method in a child process of this script."""
    capture = box_capture(tmp / "box", args)
    t = time.perf_counter()
    config = {"models": models_for(tmp / "models", args.real_size), "capture": str(capture)}
    models_s = time.perf_counter() - t
    t = time.perf_counter()
    config["source_job"] = str(source_job(tmp, capture, args))
    source_s = time.perf_counter() - t
    (tmp / "worker.json").write_text(json.dumps(config))
    results = {}
    for name in ("latent_edit", "dreamfusion"):
        cmd = [sys.executable, __file__, "--worker", name, "--worker-config", str(tmp / "worker.json"),
               "--device", args.device, "--timed", str(args.timed), "--render-size", str(args.render_size)]
        cmd += ["--real-size"] if args.real_size else []
        cmd += ["--samples", str(args.samples)] if args.samples else []
        # The child's stderr (warnings, progress) passes through as it comes.
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if out.returncode != 0:
            sys.exit(f"the {name} worker failed ({out.returncode})")
        results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps({name: results[name]}), file=sys.stderr)
    le, df = results["latent_edit"], results["dreamfusion"]
    return {
        "models": ("real-size random: SD 2.1-base UNet/VAE/text encoder, VGG16 conv stack, open_clip ViT-B-16"
                   if args.real_size else "tiny (models make-tiny)"),
        "source_job_steps": args.source_steps, "write_models_s": round(models_s, 1), "source_job_s": round(source_s, 1),
        "latent_edit": le, "dreamfusion": df,
        "edit_over_dreamfusion": {
            "s_per_step_mean": round(le["s_per_step_mean"] / df["s_per_step_mean"], 2),
            "s_per_step_median": round(le["s_per_step_median"] / df["s_per_step_median"], 2),
            "peak_memory": round(le["peak_memory_mb"] / df["peak_memory_mb"], 2)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("inversion", "edit", "both"), default="both")
    p.add_argument("--device", default="cpu")
    p.add_argument("--views", type=int, default=40, help="capture cameras (every 5th held out)")
    p.add_argument("--size", type=int, default=64, help="capture image side in pixels")
    p.add_argument("--steps", type=lambda s: [int(v) for v in s.split(",")], default=[50, 100, 200, 300],
                   help="inversion: step counts evaluated, along one run to the largest")
    p.add_argument("--rays", type=int, default=4096, help="inversion: rays per step (reconstruct's default)")
    p.add_argument("--real-size", action="store_true", help="edit: real-size random-weight guidance models")
    p.add_argument("--timed", type=int, default=3, help="edit: timed steps per method, after one untimed")
    p.add_argument("--source-steps", type=int, default=100, help="edit: steps of the tri-plane source job")
    p.add_argument("--render-size", type=int, default=64, help="edit: render.size of both methods")
    p.add_argument("--samples", type=int, default=None, help="edit: samples per ray of both (default: each method's)")
    p.add_argument("--worker", choices=("latent_edit", "dreamfusion"), help=argparse.SUPPRESS)
    p.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return edit_worker(args)

    device = torch.device(args.device)
    report = {"bench": "latent_edit", "machine": machine(device)}
    with tempfile.TemporaryDirectory(prefix="bench-latent-edit-") as tmp:
        for part, run in (("inversion", inversion), ("edit", edit)):
            if args.part in (part, "both"):
                t = time.perf_counter()
                report[part] = run(Path(tmp), args, device)
                report[part]["wall_s"] = round(time.perf_counter() - t, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
