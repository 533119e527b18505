"""Reconstruction: held-out PSNR against wall time on a capture rendered here.

The capture: the analytic box of tests/engine/capture_support.py (an opaque box, two colours
on its sides and a yellow top, RGBA images) seen by --views cameras all around at elevations
15 and 40 degrees, --size pixels square; every 8th view is held out. The reconstruction runs
in process with the run loop's own step (engine.jobs.run.optimise_step);
evaluation time is not counted in the wall time.

    python bench/bench_reconstruct.py [--views 48] [--size 96] [--steps 2000] [--every 250]

Prints one JSON object: per evaluation point, steps, seconds of training, held-out PSNR.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "engine"))

import torch  # noqa: E402
from capture_support import render_capture  # noqa: E402

from engine.captures import ObjectFrame  # noqa: E402
from engine.jobs.run import optimise_step  # noqa: E402
from engine.methods.reconstruct import method as reconstruct  # noqa: E402
from engine.spec import parse_job  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--views", type=int, default=48)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--rays", type=int, default=4096)
    p.add_argument("--samples", type=int, default=96)
    args = p.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        capture = render_capture(Path(tmp) / "box", n=args.views, size=args.size, frame=ObjectFrame((0.0, 0.0, 0.5), 1.0))
        spec = parse_job({"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)},
                          "steps": args.steps, "device": "cpu", "render": {"samples_per_ray": args.samples},
                          "options": {"rays_per_step": args.rays, "holdout_every": 8}})
        method = reconstruct.build(spec, torch.device("cpu"))
        points, trained = [], 0.0
        for step in range(args.steps):
            t0 = time.perf_counter()
            out = optimise_step(method, 0, step)
            trained += time.perf_counter() - t0
            if (step + 1) % args.every == 0 or step + 1 == args.steps:
                with torch.no_grad():
                    metrics = method.evaluate(Path(tmp) / "job")
                points.append({"steps": step + 1, "train_s": round(trained, 1),
                               "test_psnr": round(metrics["test_psnr"], 2), "train_batch_psnr": round(out.metrics["psnr"], 2)})
                print(json.dumps(points[-1]), file=sys.stderr)
    print(json.dumps({
        "bench": "reconstruct", "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "capture": f"analytic box, {args.views} views of {args.size} px, every 8th held out",
        "rays_per_step": args.rays, "samples_per_ray": args.samples, "field": "hash grid defaults (12 levels to 1024, 2^19)",
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "points": points,
    }))


if __name__ == "__main__":
    main()
