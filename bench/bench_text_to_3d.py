"""CLIP R-precision of text-to-3D with the starter models: for each prompt of the starter vocabulary, run the
method (Dream Fields guided by the starter CLIP, DreamFusion by the starter diffusion model), render a
turntable of the result, and count how often the judge (a CLIP trained apart, never used for guidance) picks
the prompt's caption among all the benchmark's prompts.

    python bench/bench_text_to_3d.py [--method dream_fields|dreamfusion] [--steps 200] [--size 48] [--views 8]
                                     [--prompts 16] [--only K,K,...] [--options JSON] [--keep DIR]

Prints one JSON line per prompt and a summary line: R-precision per prompt and overall, its shape and colour
parts, chance, the same retrieval among all 64 captions of the vocabulary (harder), the fog (the share of the
views' opacity in half-transparent pixels) and the coverage (the share of pixels at least half opaque; see
engine.models.starter.judge: renders of the true shapes score 0.03 and 0.15), and the seconds per object. The Dream Fields paper reports R-precision the same way (the
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

from engine.jobs.run import run_job  # noqa: E402
from engine.models.starter import starter_job  # noqa: E402
from engine.models.starter.judge import BACKGROUND, Judge, coverage, fog, turntable_images  # noqa: E402
from engine.models.starter.vocabulary import CLASSES, COLOURS, SHAPES, caption  # noqa: E402



def benchmark_prompts(n: int) -> list[tuple[str, str]]:
    """n (shape, colour) pairs in which every shape and every colour appear about equally often."""
    colours = list(COLOURS)
    pairs = [(shape, colours[(i + k * 3) % len(colours)]) for k in range(len(colours)) for i, shape in enumerate(SHAPES)]
    return pairs[:n]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--method", default="dream_fields", choices=("dream_fields", "dreamfusion"))
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--size", type=int, default=48, help="render size during optimisation")
    p.add_argument("--views", type=int, default=8, help="turntable views judged per object")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--only", help="comma-separated indices of the prompts to run (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--options", type=json.loads, default={}, help="JSON merged into job.json options")
    p.add_argument("--keep", type=Path, help="keep the job folders here")
    p.add_argument("--rejudge", action="store_true",
                   help="judge the finished jobs already in --keep again instead of running them")
    args = p.parse_args(argv)
    torch.set_num_threads(torch.get_num_threads())

    prompts = benchmark_prompts(args.prompts)
    captions = [caption(s, c) for s, c in prompts]
    # Every caption of the vocabulary; R-precision picks among the benchmark's prompts, "vocabulary" among all.
    vocabulary = [caption(s, c) for s, c in CLASSES]
    judge = Judge(vocabulary)
    among = [vocabulary.index(c) for c in captions]
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-t23d-"))
    rows = []
    only = [int(k) for k in args.only.split(",")] if args.only else range(len(prompts))
    for k in only:
        shape, colour = prompts[k]
        job_dir = root / f"{k:02d}-{colour}-{shape}"
        if args.rejudge:
            code, seconds = (0 if (job_dir / "result").is_dir() else 1), 0.0
        else:
            job_dir.mkdir(parents=True, exist_ok=True)
            job = {"spec_version": 1, "method": args.method, "prompt": captions[k], "seed": args.seed,
                   "steps": args.steps, "device": "cpu", "render": {"size": args.size},
                   "export": {"resolution": 64, "formats": ["npz"]}, "preview_every": 0, "checkpoint_every": 0,
                   **starter_job(args.method), "options": args.options}
            (job_dir / "job.json").write_text(json.dumps(job))
            t0 = time.monotonic()
            code = run_job(job_dir, False, io.StringIO())
            seconds = time.monotonic() - t0
        if code != 0:
            rows.append({"prompt": captions[k], "exit_code": code})
            print(json.dumps(rows[-1]), flush=True)
            continue
        images, opacity = turntable_images(job_dir, args.views, 64)
        picks = [among.index(i) for i in judge.pick(images, among)]
        right = sum(i == k for i in picks) / len(picks)
        shape_right = sum(prompts[i][0] == shape for i in picks) / len(picks)
        colour_right = sum(prompts[i][1] == colour for i in picks) / len(picks)
        right_all = sum(vocabulary[i] == captions[k] for i in judge.pick(images)) / len(picks)
        rows.append({"prompt": captions[k], "r_precision": right, "shape": shape_right, "colour": colour_right,
                     "vocabulary": right_all, "fog": round(fog(opacity), 3),
                     "coverage": round(coverage(opacity), 3), "seconds": round(seconds, 1), "picked": [captions[i] for i in picks]})
        print(json.dumps(rows[-1]), flush=True)
    # A failed run (diverged, or an error) scores 0 in the retrieval figures; fog, coverage and time are over
    # the finished ones.
    done = [r for r in rows if "r_precision" in r]
    summary = {"bench": "text_to_3d", "method": args.method, "steps": args.steps, "render_size": args.size,
               "views": args.views, "prompts": len(rows), "failed": len(rows) - len(done),
               "r_precision": round(sum(r["r_precision"] for r in done) / max(len(rows), 1), 3),
               "shape": round(sum(r["shape"] for r in done) / max(len(rows), 1), 3),
               "colour": round(sum(r["colour"] for r in done) / max(len(rows), 1), 3),
               "chance": round(1 / len(prompts), 3), "background": BACKGROUND,
               "vocabulary": round(sum(r["vocabulary"] for r in done) / max(len(rows), 1), 3),
               "vocabulary_chance": round(1 / len(vocabulary), 3),
               "fog": round(sum(r["fog"] for r in done) / max(len(done), 1), 3),
               "coverage": round(sum(r["coverage"] for r in done) / max(len(done), 1), 3),
               "seconds_per_object": round(sum(r["seconds"] for r in done) / max(len(done), 1), 1),
               "options": args.options, "machine": f"{torch.get_num_threads()} threads, torch {torch.__version__}"}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
