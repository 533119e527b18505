"""Reconstruction: held-out PSNR against wall time on a capture rendered here.

The capture: the analytic box of tests/engine/capture_support.py (an opaque box, two colours
on its sides and a yellow top, RGBA images) seen by --views cameras all around at elevations
15 and 40 degrees, --size pixels square; every 8th view is held out. The reconstruction runs
in process with the run loop's own step (engine.jobs.run.optimise_step);
evaluation time is not counted in the wall time.

    python bench/bench_reconstruct.py [--views 48] [--size 96] [--steps 2000] [--every 250]

Prints one JSON object: per evaluation point, steps, seconds of training, held-out PSNR.

With --scenes DIR, the Blender-rendered scenes of bench/scenes/make_scenes.py instead (synthetic360: 90 + 10
held-out views of 100 px; synthetic8: 8 of them; photo: a phone-like capture of 135x240 with a room behind the
object and OPENCV lens distortion, every 8th frame held out), each run as a user runs it: `python -m engine run`
of a reconstruct job with the engine's defaults and `budget_s` (wall time including the mesh export), in a
subprocess. Per scene: the held-out PSNR at the end, the wall time, the steps that fit, the training-batch PSNR
and the occupied share of the empty-space grid over time (from the progress events), and for the photo the
share of mesh vertices inside the object's true box (bench_truth.json).

    python bench/bench_reconstruct.py --scenes ~/.cache/text3d/bench_scenes --budget 600 [--only photo]
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


def run_scene(folder: Path, budget: float, work: Path, device: str = "cpu", method: str = "reconstruct",
              models: dict | None = None) -> dict:
    """One scene as a user runs it: a `method` job (reconstruct, dietnerf) with the defaults and budget_s, through
    the CLI; models: job.json's `models` (dietnerf's CLIP)."""
    import subprocess

    import numpy as np

    job = work / folder.name
    job.mkdir(parents=True)
    options = {} if (folder / "transforms_train.json").exists() else {"holdout_every": 8}
    (job / "job.json").write_text(json.dumps({"spec_version": 1, "method": method, "seed": 0, "device": device,
                                              "inputs": {"capture": str(folder.resolve())}, "budget_s": budget,
                                              "preview_every": 0, "options": options, "models": models or {}}))
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "engine", "run", str(job)], cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    events = [json.loads(line) for line in (job / "events.jsonl").read_text().splitlines() if line.strip()]
    if out.returncode != 0:
        return {"scene": folder.name, "error": [e for e in events if e["event"] == "error"], "wall_s": round(wall, 1)}
    progress = [e for e in events if e["event"] == "progress"]
    keep = progress[:: max(1, len(progress) // 12)] + progress[-1:]
    metrics = json.loads((job / "result" / "metrics.json").read_text())
    result = {"scene": folder.name, "method": method, "models": models or {}, "wall_s": round(wall, 1), "test_psnr": round(metrics["test_psnr"], 2),
              "test_views": metrics["test_views"], "steps": progress[-1]["total"],
              "finished": next(e for e in events if e["event"] == "finished"),
              "curve": [{"step": e["step"], "elapsed_s": e["elapsed_s"], "train_psnr": round(e["metrics"]["psnr"], 2),
                         "occupied": round(e["metrics"].get("occupied", 1.0), 4)} for e in keep]}
    truth = folder / "bench_truth.json"
    if truth.exists() and (job / "result" / "mesh.npz").exists():
        lo, hi = (np.array(b) for b in json.loads(truth.read_text())["object_bounds"])
        with np.load(job / "result" / "mesh.npz") as mesh:
            v = mesh["vertices"] + mesh["offset"]  # world metres: the vertices are relative to the offset
        margin = 0.1 * (hi - lo)
        result["mesh_vertices"] = len(v)
        result["mesh_inside_object_box"] = round(float(((v >= lo - margin) & (v <= hi + margin)).all(1).mean()), 3)
    return result


def scenes_main(args) -> None:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        for name in ("synthetic360", "photo", "synthetic8"):
            if args.only and name != args.only:
                continue
            results.append(run_scene(Path(args.scenes).expanduser() / name, args.budget, Path(tmp), args.device,
                                     args.method, json.loads(args.models) if args.models else None))
            print(json.dumps(results[-1]), file=sys.stderr)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    print(json.dumps({"bench": "reconstruct_scenes", "machine": gpu or f"{platform.machine()}, {torch.get_num_threads()} "
                      "threads", "device": args.device, "torch": torch.__version__, "budget_s": args.budget, "scenes": results}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--scenes", help="folder of bench/scenes/make_scenes.py's captures")
    p.add_argument("--budget", type=float, default=600.0, help="--scenes: budget_s of each job (seconds)")
    p.add_argument("--only", help="--scenes: run this scene only")
    p.add_argument("--device", default="cpu", help="--scenes: the jobs' device (cpu, cuda)")
    p.add_argument("--method", default="reconstruct", help="--scenes: the jobs' method (reconstruct, dietnerf)")
    p.add_argument("--models", help="--scenes: job.json `models` as JSON, e.g. '{\"clip\": \"/path/to/clip\"}'")
    p.add_argument("--keep", help="--scenes: write the job folders here (kept) instead of a temporary folder")
    p.add_argument("--views", type=int, default=48)
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--rays", type=int, default=4096)
    p.add_argument("--samples", type=int, default=96)
    args = p.parse_args()
    if args.scenes:
        return scenes_main(args)
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
