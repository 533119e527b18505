"""CLIP R-precision of text-to-3D with the starter models: for each prompt of the starter vocabulary, run the
method (guided by the starter CLIP), render a turntable of the result, and count how often the judge (a CLIP
trained apart, never used for guidance) picks the prompt's caption among all the benchmark's prompts.

    python bench/bench_text_to_3d.py [--method dream_fields] [--steps 200] [--size 48] [--views 8]
                                     [--prompts 16] [--options JSON]

Prints one JSON line per prompt and a summary line: R-precision per prompt and overall, its shape and colour
parts, chance, and the seconds per object. The Dream Fields paper reports R-precision the same way (the
retrieval of the right caption from a rendered view, averaged over views).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.cameras import camera_rays, focal_from_fov, turntable  # noqa: E402
from engine.jobs.offline import load_scene  # noqa: E402
from engine.jobs.outputs import render_scene_rays  # noqa: E402
from engine.jobs.run import run_job  # noqa: E402
from engine.models.clip import load_clip  # noqa: E402
from engine.models.starter import STARTER_CLIP, STARTER_JUDGE  # noqa: E402
from engine.models.starter.shapes import COLOURS, SHAPES, caption  # noqa: E402
from engine.render import composite  # noqa: E402


def benchmark_prompts(n: int) -> list[tuple[str, str]]:
    """n (shape, colour) pairs in which every shape and every colour appear about equally often."""
    colours = list(COLOURS)
    pairs = [(shape, colours[(i + k * 3) % len(colours)]) for k in range(len(colours)) for i, shape in enumerate(SHAPES)]
    return pairs[:n]


def turntable_images(job_dir: Path, views: int, size: int) -> torch.Tensor:
    """(V,3,S,S) renders of the finished job's scene around it, over white."""
    spec, scene, device, _ = load_scene(job_dir, "cpu")
    cams = turntable(spec.orbit, views)
    images = []
    for i in range(views):
        focal = focal_from_fov(float(cams.fov_deg[i]), size)
        origins, dirs = camera_rays(cams.c2w[i], focal, size, size)
        out = render_scene_rays(scene, origins, dirs, spec.render.samples_per_ray, focal)
        image = composite(out.rgb, out.opacity, torch.ones(3)).reshape(size, size, 3)
        images.append(image.permute(2, 0, 1))
    return torch.stack(images)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", default="dream_fields")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=48, help="render size during optimisation")
    p.add_argument("--views", type=int, default=8, help="turntable views judged per object")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--options", type=json.loads, default={}, help="JSON merged into job.json options")
    p.add_argument("--keep", type=Path, help="keep the job folders here")
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())

    prompts = benchmark_prompts(args.prompts)
    captions = [caption(s, c) for s, c in prompts]
    judge = load_clip(str(STARTER_JUDGE), "cpu", allow_downloads=False)
    text = judge.encode_text(captions)
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-t23d-"))
    rows = []
    for k, (shape, colour) in enumerate(prompts):
        job_dir = root / f"{k:02d}-{colour}-{shape}"
        job_dir.mkdir(parents=True, exist_ok=True)
        job = {"spec_version": 1, "method": args.method, "prompt": captions[k], "seed": args.seed, "steps": args.steps,
               "device": "cpu", "render": {"size": args.size}, "models": {"clip": str(STARTER_CLIP)},
               "export": {"resolution": 64, "formats": ["npz"]}, "preview_every": 0, "checkpoint_every": 0,
               "options": args.options}
        (job_dir / "job.json").write_text(json.dumps(job))
        t0 = time.monotonic()
        code = run_job(job_dir, False, io.StringIO())
        seconds = time.monotonic() - t0
        if code != 0:
            rows.append({"prompt": captions[k], "exit_code": code})
            print(json.dumps(rows[-1]), flush=True)
            continue
        with torch.no_grad():
            feats = judge.encode_image(judge.prepare(turntable_images(job_dir, args.views, 64)))
        picks = (feats @ text.T).argmax(-1)
        right = (picks == k).float().mean().item()
        shape_right = sum(prompts[i][0] == shape for i in picks.tolist()) / len(picks)
        colour_right = sum(prompts[i][1] == colour for i in picks.tolist()) / len(picks)
        rows.append({"prompt": captions[k], "r_precision": right, "shape": shape_right, "colour": colour_right,
                     "seconds": round(seconds, 1), "picked": [captions[i] for i in picks.tolist()]})
        print(json.dumps(rows[-1]), flush=True)
    done = [r for r in rows if "r_precision" in r]
    summary = {"bench": "text_to_3d", "method": args.method, "steps": args.steps, "render_size": args.size,
               "views": args.views, "prompts": len(prompts), "failed": len(rows) - len(done),
               "r_precision": round(sum(r["r_precision"] for r in done) / max(len(done), 1), 3),
               "shape": round(sum(r["shape"] for r in done) / max(len(done), 1), 3),
               "colour": round(sum(r["colour"] for r in done) / max(len(done), 1), 3),
               "chance": round(1 / len(prompts), 3),
               "seconds_per_object": round(sum(r["seconds"] for r in done) / max(len(done), 1), 1),
               "options": args.options, "machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}"}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
