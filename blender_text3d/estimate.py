"""How long a job will take on this machine, learnt from the jobs already run here: the line the panel shows
before the user starts. No bpy, no torch: plain pytest covers it.

Each job folder's events.jsonl says how fast its run went: the `finished` event's step_s (seconds per step,
the warm-up step left out), build_s (start-up: imports, models) and end_s (final checkpoint, evaluation,
export), or for engines before those fields the progress events' steps and times. A new job is estimated
from the newest earlier job of the same method on the same device (job.json `device`), preferring one with
the same work per step; another one is scaled by the work per step (rays per step for methods that train on
rays, else render size squared, times samples per ray) and its end by the mesh resolution cubed. With a
time budget the estimate is the engine's own fit (engine/jobs/budget.py margins): how many steps fit.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .engine_rules import budget as engine_budget
from .engine_rules import errors as engine_errors
from .engine_rules import spec as engine_spec

JOBS_READ = 50
"""The newest job folders read (their names sort by time: paths.new_job_dir)."""
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class Timing:
    """What one earlier job says about this machine's speed."""

    job: str
    """Its folder's name."""
    method: str
    device: str
    """job.json `device` as written ("auto", "cpu", "cuda:1", ...)."""
    step_s: float
    """Seconds per step, the first (warm-up) step left out."""
    build_s: float
    """Seconds from the engine's start to its first step (0 when unknown)."""
    end_s: float | None
    """Seconds of the final checkpoint, evaluation and export; None when the run did not export."""
    work: float
    """Work per step (work_per_step)."""
    resolution: int
    """export.resolution."""


@dataclass(frozen=True)
class Estimate:
    """The panel's line about a job, and the numbers behind it."""

    text: str
    """"about 7 min for 3000 steps (0.14 s/step, from your last reconstruct job)", or why there is none."""
    seconds: float | None = None
    """Wall-clock seconds the job should take; None without an earlier job to learn from."""
    steps: int = 0
    """Steps it should run: all it asks for, or those that fit its budget."""
    step_s: float | None = None
    """Seconds per step expected."""
    source: str = ""
    """The earlier job's folder name."""


def work_per_step(spec) -> float:
    """What one step costs, relative to other jobs of the same method: samples per ray times rays per step
    (methods that train on rays: options.rays_per_step) or times the render's pixels."""
    rays = getattr(spec.options, "rays_per_step", None)
    pixels = rays if isinstance(rays, int) else spec.render.size ** 2
    return float(pixels * spec.render.samples_per_ray)


def planned_steps(spec) -> int:
    """Every step the job runs: `steps`, and for methods that reconstruct first (and have no source job) their
    reconstruction steps, and their tuning steps."""
    reconstruct = getattr(spec.options, "reconstruct_steps", 0) if spec.inputs.source_job is None else 0
    return spec.steps + int(reconstruct or 0) + int(getattr(spec.options, "tune_steps", 0) or 0)


def read_timing(job_dir: Path) -> Timing | None:
    """The timing of a job folder's latest run, None when it has none (not run, failed at once, one step)."""
    try:
        spec = engine_spec.parse_job(json.loads((job_dir / "job.json").read_text(encoding="utf-8")))
        lines = (job_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, engine_errors.EngineError):
        return None
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    starts = [i for i, e in enumerate(events) if e.get("event") == "started"]
    if not starts:
        return None
    run = events[starts[-1]:]  # a resumed job: its last run
    progress = [e for e in run if e.get("event") == "progress" and _number(e.get("step")) is not None
                and _number(e.get("elapsed_s")) is not None]
    finished = next((e for e in run if e.get("event") == "finished"), {})
    step_s = _number(finished.get("step_s"))
    if step_s is None and len(progress) >= 2 and progress[-1]["step"] > progress[0]["step"]:
        # The first progress event comes after the first step: from there on, no warm-up.
        step_s = (progress[-1]["elapsed_s"] - progress[0]["elapsed_s"]) / (progress[-1]["step"] - progress[0]["step"])
    if not step_s or step_s <= 0:
        return None
    build_s = _number(finished.get("build_s"))
    if build_s is None and progress and _number(run[0].get("time")) and _number(progress[0].get("time")):
        build_s = max(0.0, progress[0]["time"] - run[0]["time"] - step_s)
    end_s = _number(finished.get("end_s"))
    if end_s is None and finished.get("status") == "succeeded" and progress and _number(finished.get("time")):
        end_s = max(0.0, finished["time"] - progress[-1].get("time", finished["time"]))
    return Timing(job_dir.name, spec.method, spec.device, step_s, build_s or 0.0, end_s, work_per_step(spec),
                  spec.export.resolution)


def timings(jobs_dir: str | os.PathLike, limit: int = JOBS_READ) -> list[Timing]:
    """The timings of the newest `limit` job folders that finished, newest first; a folder is read again only
    when its events.jsonl changed (the panel asks on every redraw)."""
    try:
        folders = sorted((e for e in os.scandir(jobs_dir) if e.is_dir()), key=lambda e: e.name, reverse=True)
    except OSError:
        return []
    found = []
    for entry in folders[:limit]:
        events = Path(entry.path) / "events.jsonl"
        try:
            stat = events.stat()
        except OSError:
            continue
        key = (entry.path, stat.st_mtime_ns, stat.st_size)
        if key not in _TIMINGS:
            if len(_TIMINGS) >= 4 * JOBS_READ:
                _TIMINGS.clear()
            _TIMINGS[key] = read_timing(Path(entry.path)) if _has_finished(events, stat.st_size) else None
        if _TIMINGS[key] is not None:
            found.append(_TIMINGS[key])
    return found


_TIMINGS: dict[tuple, Timing | None] = {}


def estimate(job: Mapping[str, Any], jobs_dir: str | os.PathLike) -> Estimate:
    """How long `job` (a job.json dict, e.g. jobspec.build_job's) will take, from the jobs in jobs_dir."""
    try:
        spec = engine_spec.parse_job(dict(job))
    except engine_errors.EngineError as exc:
        return Estimate(f"no estimate: {exc.message}")
    steps = planned_steps(spec)
    same = [t for t in timings(jobs_dir) if t.method == spec.method and t.device == spec.device]
    if not same:
        on = "" if spec.device == "auto" else f" on {spec.device}"
        return Estimate(f"no estimate yet: run a {spec.method} job once{on} on this machine", steps=steps)
    work = work_per_step(spec)
    # The newest with the same work per step and an export, else the newest with an export, else the newest.
    source = next((t for t in same if t.work == work and t.end_s is not None),
                  next((t for t in same if t.end_s is not None), same[0]))
    step_s = source.step_s * work / source.work
    end_s = (source.end_s or 0.0) * (spec.export.resolution / source.resolution) ** 3
    scaled = ", scaled to these settings" if source.work != work else ""
    why = f"{_number_text(step_s)} s/step, from your last {spec.method} job{scaled}"
    if spec.budget_s is None:
        seconds = source.build_s + steps * step_s + end_s
        return Estimate(f"about {duration(seconds)} for {steps} steps ({why})", seconds, steps, step_s, source.job)
    # The engine's plan: the end of the run reserved, with its margin, the rest for steps.
    margin = engine_budget.MARGIN_SHARE * spec.budget_s + engine_budget.MARGIN_S
    room = spec.budget_s - source.build_s - engine_budget.SAFETY * end_s - margin
    fit = max(0, min(steps, math.floor(room / step_s)))
    if fit >= steps:
        seconds = source.build_s + steps * step_s + end_s
        return Estimate(f"about {duration(seconds)} for {steps} steps, within the {duration(spec.budget_s)} budget "
                        f"({why})", seconds, steps, step_s, source.job)
    seconds = source.build_s + fit * step_s + end_s
    return Estimate(f"about {fit} of {steps} steps fit in {duration(spec.budget_s)} ({why})", seconds, fit, step_s,
                    source.job)


def duration(seconds: float) -> str:
    """"45 s", "7 min", "1 h 20 min"."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    minutes = int(seconds / 60 + 0.5)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _has_finished(events: Path, size: int) -> bool:
    """Whether the end of events.jsonl holds a `finished` event (a job still running is not read yet)."""
    try:
        with open(events, "rb") as f:
            f.seek(max(0, size - _TAIL_BYTES))
            return b'"finished"' in f.read()
    except OSError:
        return False


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number_text(value: float) -> str:
    return f"{value:.2g}" if value < 10 else f"{value:.0f}"
