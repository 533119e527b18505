"""Overhead of `python -m engine batch --backend ray` against `--backend local` on tiny jobs; prints JSON.

Per job: submission to its first event (job_submitted -> the engine's first event: process start, imports,
job.json) and total (job_submitted -> job_ended), mean over the jobs and over the first wave (the jobs that
found a free slot: Ray submits all at once, so later ones queue; the overhead compares first waves); per
batch: wall time and, for Ray, the start-up of the cluster of this machine it starts (batch_started's
start_s). Tiny random-weight models (`python -m engine models make-tiny`), Dream Fields, CPU, one thread per
engine for both backends (Ray gives a one-CPU task OMP_NUM_THREADS=1). Ray runs as many jobs at once as this
machine has CPUs (--gpus-per-job 0); local runs them in turn.

    python bench/bench_batch.py [--jobs 3] [--steps 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_job(job_dir: Path, models: dict, steps: int, seed: int) -> Path:
    job_dir.mkdir(parents=True)
    (job_dir / "job.json").write_text(json.dumps({
        "spec_version": 1, "method": "dream_fields", "prompt": "a red chair", "seed": seed, "steps": steps,
        "device": "cpu", "render": {"size": 24, "samples_per_ray": 16}, "models": {"clip": models["clip"]},
        "export": {"resolution": 32, "texture_size": 0}, "preview_every": 0, "checkpoint_every": 0,
        "options": {"n_augments": 2, "field": {"hash_levels": 4, "hash_log2_size": 12, "hash_max_resolution": 64,
                                               "mlp_width": 16}}}))
    return job_dir


def run_batch(args: list[str], env: dict) -> dict:
    t = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "engine", "batch", *args], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    wall = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"engine batch {' '.join(args)} exited with {out.returncode}:\n{out.stderr[-3000:]}")
    stream = [json.loads(line) for line in out.stdout.splitlines()]
    submitted, first, ended = {}, {}, {}
    for e in stream:
        job = e.get("job_dir")
        if e["event"] == "job_submitted":
            submitted[job] = e["time"]
        elif e["event"] == "job_ended":
            ended[job] = e["time"]
        elif job and not e["event"].startswith(("job_", "batch_")):
            first.setdefault(job, e["time"])
    to_first = [first[j] - submitted[j] for j in submitted]
    total = [ended[j] - submitted[j] for j in submitted]
    started = stream[0]
    # Ray submits every job at once and runs as many as it has CPUs (one CPU a task): later jobs wait for a
    # slot, which is queueing, not overhead. The first wave (jobs that found a free slot) shows the overhead.
    # Local submits each job when the previous one ended: all of its jobs are a first wave.
    slots = int(started["resources"].get("CPU", 1)) if "resources" in started else len(to_first)
    mean = lambda xs: round(sum(xs) / len(xs), 2)  # noqa: E731
    return {"jobs": len(submitted), "wall_s": round(wall, 2),
            "submission_to_first_event_s": mean(to_first), "submission_to_end_s": mean(total),
            "first_wave": {"jobs": min(slots, len(to_first)), "submission_to_first_event_s": mean(to_first[:slots]),
                           "submission_to_end_s": mean(total[:slots])},
            "per_job_submission_to_first_event_s": [round(x, 2) for x in to_first],
            **({"cluster_start_s": started["start_s"], "resources": started["resources"]}
               if "start_s" in started else {})}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    a = p.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    with tempfile.TemporaryDirectory(prefix="t3db", dir="/tmp") as tmp:
        tmp = Path(tmp)
        made = subprocess.run([sys.executable, "-m", "engine", "models", "make-tiny", str(tmp / "tiny")],
                              capture_output=True, text=True, env=env, cwd=ROOT, check=True)
        models = json.loads(made.stdout)
        results = {}
        for backend in ("local", "ray"):
            jobs = [write_job(tmp / backend / f"job{i}", models, a.steps, i) for i in range(a.jobs)]
            extra = ["--gpus-per-job", "0"] if backend == "ray" else []
            ray_env = {**env, "RAY_TMPDIR": str(tmp), "RAY_AUTH_MODE": "disabled"}
            results[backend] = run_batch(["--backend", backend, *extra, *map(str, jobs)], ray_env)
        overhead = {k: round(results["ray"]["first_wave"][k] - results["local"]["first_wave"][k], 2)
                    for k in ("submission_to_first_event_s", "submission_to_end_s")}
        print(json.dumps({"machine": {"cpus": os.cpu_count()}, "steps": a.steps, **results,
                          "ray_minus_local_per_job": overhead}, indent=1))


if __name__ == "__main__":
    main()
