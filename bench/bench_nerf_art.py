"""NeRF-Art: seconds per style step with and without chunked back-propagation, and peak memory.

The capture is the analytic box of tests/engine/capture_support.py (24 views of 64 px); the
field is shaped by --shape reconstruction steps first (untimed), so empty-space skipping works
as it would after a real reconstruction. Guidance models have real architectures and random
weights (the time is the same as trained weights'): open_clip ViT-B-32 and torchvision's VGG16
convolutional stack, written as local folders and loaded through the engine's own loaders.

    python bench/bench_nerf_art.py [--size 128] [--samples 64] [--steps 3] [--chunk 4096]

Timing: style steps (method.step, weighted total, backward, Adam) alternate between chunked
(--chunk rays) and whole-image back-propagation in one process, after one untimed step of each.
Memory: each variant runs again in a child process; the peak of its resident memory during two
style steps (sampled every 2 ms from /proc/self/statm) minus its resident memory just before is
what the style step added (CPU; torch.cuda.max_memory_allocated on CUDA).
"""
from __future__ import annotations

import argparse
import dataclasses
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
from bench_dream_fields import write_random_clip  # noqa: E402
from capture_support import render_capture  # noqa: E402

from engine.jobs.run import optimise_step  # noqa: E402
from engine.methods.nerf_art import method as nerf_art  # noqa: E402
from engine.models.perceptual import TORCHVISION_VGG, build_features  # noqa: E402
from engine.models.resolve import PERCEPTUAL_CONFIG, PERCEPTUAL_WEIGHTS  # noqa: E402
from engine.spec import parse_job  # noqa: E402


def write_random_vgg16(folder: Path) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = TORCHVISION_VGG["torchvision/vgg16"]
    (folder / PERCEPTUAL_CONFIG).write_text(json.dumps(config))
    features = build_features(config["layers"])
    save_file({f"features.{k}": v.contiguous() for k, v in features.state_dict().items()}, folder / PERCEPTUAL_WEIGHTS)


def build(tmp: Path, args, chunk: int):
    capture = tmp / "box"
    if not capture.exists():
        render_capture(capture, n=24, size=64)
        write_random_clip(tmp / "clip", "ViT-B-32")
        write_random_vgg16(tmp / "vgg")
    spec = parse_job({"spec_version": 1, "method": "nerf_art", "prompt": "a bronze statue",
                      "inputs": {"capture": str(capture)}, "steps": 100, "device": args.device,
                      "render": {"size": args.size, "samples_per_ray": args.samples},
                      "models": {"clip": str(tmp / "clip"), "perceptual": str(tmp / "vgg")},
                      "options": {"reconstruct_steps": args.shape, "chunk_rays": chunk, "rays_per_step": 2048}})
    method = nerf_art.build(spec, torch.device(args.device))
    return spec, method


def run_step(method, spec, step: int) -> float:
    t0 = time.perf_counter()
    optimise_step(method, 0, step)
    if spec.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def shape(method, spec, steps: int) -> None:
    for step in range(steps):
        run_step(method, spec, step)


def with_chunk(method, chunk: int) -> None:
    method.spec = dataclasses.replace(method.spec, options=dataclasses.replace(method.spec.options, chunk_rays=chunk))


def rss() -> int:
    """Resident memory of this process now, in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def memory_child(args) -> None:
    """One variant: shape, then style steps; print the peak the style steps added (MB)."""
    import threading

    with tempfile.TemporaryDirectory() as tmp:
        spec, method = build(Path(tmp), args, args.child_chunk)
        shape(method, spec, args.shape)
        run_step(method, spec, args.shape)  # the source render cache and lazy allocations settle
        cuda = args.device.startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        base, peak, done = (torch.cuda.memory_allocated() if cuda else rss()), [0], threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.002)

        watcher = threading.Thread(target=sample)
        watcher.start()
        for step in range(args.shape + 1, args.shape + 3):
            run_step(method, spec, step)
        done.set()
        watcher.join()
        top = torch.cuda.max_memory_allocated() if cuda else peak[0]
    print(json.dumps({"style_peak_added_mb": round((top - base) / 2**20)}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--shape", type=int, default=150)
    p.add_argument("--chunk", type=int, default=4096)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child-chunk", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child_chunk is not None:
        return memory_child(args)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        spec, method = build(Path(tmp), args, args.chunk)
        shape(method, spec, args.shape)
        times = {"chunked": [], "whole": []}
        step = args.shape
        for i in range(args.steps + 1):
            for name, chunk in (("chunked", args.chunk), ("whole", 0)):
                with_chunk(method, chunk)
                seconds = run_step(method, spec, step)
                step += 1
                if i:  # the first of each is a warm-up
                    times[name].append(seconds)
        occupied = method.empty_space.metrics().get("occupied", 1.0)
    memory = {}
    for name, chunk in (("chunked", args.chunk), ("whole", 0)):
        cmd = [sys.executable, __file__, "--size", str(args.size), "--samples", str(args.samples), "--shape",
               str(args.shape), "--device", args.device, "--child-chunk", str(chunk)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        memory[name] = json.loads(out.stdout.strip().splitlines()[-1])["style_peak_added_mb"]
    chunked, whole = statistics.median(times["chunked"]), statistics.median(times["whole"])
    print(json.dumps({
        "bench": "nerf_art", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads", "device": args.device,
        "torch": torch.__version__, "render_size": args.size, "samples_per_ray": args.samples, "chunk_rays": args.chunk,
        "clip": "ViT-B-32 (random weights)", "perceptual": "VGG16 conv stack (random weights)",
        "occupied_fraction": round(occupied, 3),
        "s_per_step": {"chunked": round(chunked, 2), "whole": round(whole, 2)}, "chunked_over_whole": round(chunked / whole, 3),
        "all_s": {k: [round(v, 2) for v in vs] for k, vs in times.items()},
        "style_peak_added_mb": memory,
    }))


if __name__ == "__main__":
    main()
