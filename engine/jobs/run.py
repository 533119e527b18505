"""The one run loop every method goes through.

Heavy modules (torch, model libraries) are imported only after job.json is validated and
the network policy is set, so a bad job fails fast and offline means offline.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import time
import traceback
from pathlib import Path
from typing import IO

from ..errors import EXIT_CODES, EngineError
from ..spec import RESUMABLE_CHANGES, changes_refusing_resume, job_warnings, load_job
from .events import EventStream, setup_logging

log = logging.getLogger("engine.run")

OLD_SCHEDULE_FILE = "schedule.json"
"""checkpoints/schedule.json: where engines before 2026-12 kept the budget's fits, beside latest.json (now inside
it, so that a kill between the two writes cannot pair a checkpoint with another step's schedule)."""


class CancelWatch:
    """A `cancel` file in the job folder, SIGTERM or SIGINT asks the loop to stop after the current step."""

    def __init__(self, job_dir: Path) -> None:
        self.path = Path(job_dir) / "cancel"
        self.signalled = False
        self.previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        self.signalled = True

    def requested(self) -> bool:
        return self.signalled or self.path.exists()


def network_policy(allow_downloads: bool) -> None:
    """With downloads off, the Hugging Face libraries must never try the network.

    Set before they are imported: they read these variables once, at import time.
    """
    if not allow_downloads:
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE"):
            os.environ[var] = "1"


def step_generator(seed: int, step: int):
    """A CPU generator for one step, derived from (seed, step) alone.

    Every random choice of step k depends only on the seed and k, so a resumed run makes
    the same choices as an uninterrupted one without saving any RNG state.
    """
    import torch

    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def optimise_step(method, seed: int, step: int, check=None):
    """Step `step` of a method as the run loop takes it (benchmarks time exactly this); returns its StepOutput.

    Learning rate, the method's step with the step's own generator, the weighted total of its
    losses and of the representation's regularisers, check(step, result, total) (the run loop's divergence test) before anything is
    applied, then backward and the optimiser's step.
    """
    from ..losses import weighted_total

    for group in method.optimizer.param_groups:
        group["lr"] = method.learning_rate(step)
    method.optimizer.zero_grad(set_to_none=True)
    result = method.step(step, step_generator(seed, step))
    weights = dict(method.weights(step))
    # The representation's own regularisers (tri-plane TV), whatever the method; reported with its losses.
    for name, (loss, weight) in method.regularizers().items():
        result.losses[name], weights[name] = loss, weight
    total = weighted_total(result.losses, weights)
    if check is not None:
        check(step, result, total)
    # A loss may arrive detached: the method back-propagated it itself (NeRF-Art's chunked image
    # losses); it still counts in the total the check sees.
    if total.requires_grad:
        total.backward()
    method.optimizer.step()
    return result


def run_job(job_dir: Path, resume: bool, out: IO[str]) -> int:
    """Run JOB_DIR/job.json to the end, a cancel or an error; returns the exit code."""
    job_dir = Path(job_dir)
    run_started = time.monotonic()  # a time budget counts from here
    events = EventStream(out, job_dir)
    setup_logging(job_dir, events)
    cancel = CancelWatch(job_dir)
    spec = device = None
    try:
        # 1. Validate the job before anything heavy is imported.
        spec = load_job(job_dir)
        # 2. Network policy, then the heavy imports.
        network_policy(spec.allow_downloads)
        import torch

        from ..methods import composition_root, get_card
        from .budget import TimeBudget, end_cost
        from .checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
        from .device import pick_device
        from .outputs import export_result, write_json, write_preview, write_preview_mesh

        device = pick_device(spec.device)
        events.emit("started", method=spec.method, steps=spec.steps, device=str(device), resume=resume,
                    pid=os.getpid(), job=spec.to_dict())
        # What the job asks for that will not happen (a setting the method ignores), or says the old way.
        for warning in job_warnings(json.loads((job_dir / "job.json").read_text(encoding="utf-8"))):
            log.warning("job.json: %s", warning)
        # 3. Seed, then build the method (its representation, guidance models, optimiser); it knows its
        # phases (NeRF-Art reconstructs before it styles) and where its object cube sits in the world.
        torch.manual_seed(spec.seed)
        method = composition_root(get_card(spec.method)).build(spec, device)
        frame = method.frame
        job_phases = [[p.name, p.steps] for p in method.phases]
        fits: list[list[int]] = []  # the budget's (total, done) fits, replayed by --resume

        def diverged(step: int, result, total) -> None:
            if not torch.isfinite(total):
                kept = read_checkpoint_meta(job_dir)
                raise EngineError(
                    "diverged", f"the loss became non-finite at step {step} "
                    f"({ {k: v.item() for k, v in result.losses.items()} })",
                    f"{method.divergence_hint(step)}, or try another seed; "
                    + (f"the last good checkpoint (step {kept['step']}) is kept" if kept else "no checkpoint was written yet"))

        def checkpoint(step: int) -> None:
            save_checkpoint(job_dir, step, method.modules, method.optimizer, spec.to_dict(), frame.to_dict(),
                            method.representation(),
                            schedule={"job_phases": job_phases, "fits": fits} if fits else None, phases=job_phases)
            (job_dir / "checkpoints" / OLD_SCHEDULE_FILE).unlink(missing_ok=True)
            events.emit("artifact", kind="checkpoint", path="checkpoints/latest.json", step=step)

        start = 0
        # 4. Resume from the latest checkpoint, on the schedule it recorded.
        if resume:
            meta = read_checkpoint_meta(job_dir)
            if meta is None:
                raise EngineError("invalid_job", f"--resume: no checkpoint in {job_dir / 'checkpoints'}",
                                  "run without --resume to start from scratch")
            _check_resumable(meta["job"], spec.to_dict())
            start = load_checkpoint(job_dir, method.modules, method.optimizer, device)["step"]
            fits = _replay_fits(meta, job_dir / "checkpoints" / OLD_SCHEDULE_FILE, method, job_phases)
            if start > method.total_steps:  # its field is trained further than the job now asks: never relabel it
                raise EngineError("invalid_job", f"--resume: the checkpoint is at step {start}, beyond the job's "
                                  f"{method.total_steps} steps", f"give at least {start} steps to continue it, or run "
                                  "without --resume to start afresh with fewer")
            log.info("resumed from step %d", start)
        # 5. Optimise, phase after phase. With a time budget the end of the run is reserved first, then the
        # steps are timed and the schedule fitted into what is left, and refitted as the clock goes.
        budget = None
        if spec.budget_s is not None:
            cost = end_cost(method, spec, device)
            budget = TimeBudget(spec.budget_s, run_started, cost["total"], cap=method.total_steps)
            _log_reserve(spec.budget_s, cost, f", {time.monotonic() - run_started:.1f} s gone on start-up")
        t0, last_progress, timed_steps, step, cut = time.monotonic(), 0.0, 0, start, False
        first_step_end = None  # the first step carries warm-up costs: step_s leaves it out
        if budget:
            budget.begin(t0)
        while step < method.total_steps and not cut:
            if cancel.requested():
                checkpoint(step)
                events.emit("finished", status="cancelled", step=step,
                            **_timings(run_started, t0, first_step_end, step - start))
                return EXIT_CODES["cancelled"]
            result = optimise_step(method, spec.seed, step, check=diverged)
            done, timed_steps = step + 1, timed_steps + 1
            now = time.monotonic()
            first_step_end = first_step_end if first_step_end is not None else now
            # 6. The time budget's plan, then events, previews and checkpoints on their schedules.
            fit, cut = None, False
            if budget:
                if budget.reserve_due(now):  # once a window: the end gets cheaper as training empties space
                    cost = end_cost(method, spec, device)
                    budget.set_reserve(cost["total"], now)
                    _log_reserve(spec.budget_s, cost)
                fit, cut = _follow_budget(budget, method, fits, done, now, method.phase(step).name)
            total_steps = done if cut else method.total_steps
            if now - last_progress >= 0.25 or done >= total_steps or done == start + 1 or fit is not None:
                elapsed = now - t0
                events.emit("progress", step=done, total=total_steps, elapsed_s=round(elapsed, 3),
                            eta_s=round(elapsed / timed_steps * (total_steps - done), 1),
                            losses={k: v.item() for k, v in result.losses.items()}, metrics=result.metrics,
                            lr=method.learning_rate(step), phase=method.phase(step).name)
                last_progress = now
            if spec.preview_every and done % spec.preview_every == 0:
                path = write_preview(method.scene, spec, job_dir, done, device)
                events.emit("preview", step=done, path=path)
            if spec.preview_mesh_every and done % spec.preview_mesh_every == 0 and done < total_steps:
                path = write_preview_mesh(method.scene, spec, job_dir, done, device, frame)
                if path:
                    events.emit("artifact", kind="preview_mesh", path=path, step=done)
            if spec.checkpoint_every and done % spec.checkpoint_every == 0 and done < total_steps:
                checkpoint(done)
            step = done
        # 7. Final checkpoint, the method's own evaluation (held-out views), mesh export.
        total_steps, ended = step if cut else method.total_steps, time.monotonic()
        checkpoint(total_steps)
        with torch.no_grad():
            metrics = method.evaluate(job_dir)
        if metrics:
            write_json(job_dir / "result" / "metrics.json", metrics)
            log.info("evaluation: %s", metrics)
            events.emit("artifact", kind="metrics", path="result/metrics.json", metrics=metrics)
        for kind, path in export_result(method.scene, spec, job_dir, device, frame=frame).items():
            events.emit("artifact", kind=kind, path=path)
        # 8. Finish, with what the add-on learns this machine's speed from (and whether the budget cut the run).
        timings = _timings(run_started, t0, first_step_end, total_steps - start, ended)
        if budget:
            timings.update(budget_s=spec.budget_s, budget_cut=total_steps < sum(s for _, s in job_phases))
            log.info("budget %g s: finished in %.1f s (%d of %d steps)", spec.budget_s, timings["elapsed_s"],
                     total_steps, sum(s for _, s in job_phases))
            if timings["elapsed_s"] > spec.budget_s:  # start-up, one step and the export alone do not fit
                log.warning("budget %g s overrun: the run took %.1f s (%.1f s before the first step, %d step(s), "
                            "%.1f s reserved for the end of the run); give this job at least %.0f s on this "
                            "machine, or no budget", spec.budget_s, timings["elapsed_s"], timings.get("build_s", 0.0),
                            total_steps - start, budget.reserve_s, math.ceil(1.2 * timings["elapsed_s"]))
        events.emit("finished", status="succeeded", step=total_steps, **timings)
        return EXIT_CODES["succeeded"]
    except EngineError as e:
        return _fail(events, e)
    except Exception as e:  # noqa: BLE001 - every failure must end as events, never a bare traceback
        from .device import is_out_of_memory, out_of_memory_error

        if spec is not None and is_out_of_memory(e):
            log.error("out of memory: %s", e)
            return _fail(events, out_of_memory_error(spec, device))
        log.error("internal error:\n%s", traceback.format_exc())
        return _fail(events, EngineError("internal", f"{type(e).__name__}: {e}",
                                         f"see {job_dir / 'log.txt'} for the traceback; please report it"))
    finally:
        cancel.restore()
        events.close()


def _log_reserve(budget_s: float, cost: dict, extra: str = "") -> None:
    log.info("budget %g s: %.1f s reserved for the end of the run (export %.1f s, evaluation %.1f s, checkpoint "
             "%.1f s, process exit %.1f s, with a margin)%s", budget_s, cost["total"], cost["export"],
             cost["evaluation"], cost["checkpoint"], cost["process"], extra)


def _follow_budget(budget, method, fits: list, done: int, now: float, phase: str):
    """After step `done`: apply the budget's new plan, if it has one (Method.fit_steps, recorded in `fits`), and say
    whether the run must stop now to export in time. Returns (the Fit or None, stop)."""
    fit = budget.step_done(done, method.total_steps, now, phase)
    if fit is not None:
        if fit.total != method.total_steps:
            method.fit_steps(fit.total, done)
            fits.append([fit.total, done])
        log.info("budget %g s: %s%d of %d steps fit (%.3g s/step measured, %.0f s left for steps, %.1f s reserved "
                 "for export)", budget.budget_s, "refitted, " if fit.refit else "", method.total_steps, budget.cap,
                 fit.s_per_step, fit.left_s, budget.reserve_s)
    stop = done < method.total_steps and budget.must_stop(now)
    if stop:
        log.warning("budget %g s: stopping at step %d of %d to export in time", budget.budget_s, done,
                    method.total_steps)
    return fit, stop


def _timings(run_started: float, t0: float, first_step_end: float | None, steps: int,
             ended: float | None = None) -> dict:
    """The `finished` event's timings: elapsed_s (the whole run), build_s (start-up: imports, models, the method,
    up to the first step), step_s (mean seconds per step, the first one left out, None below 2 steps) and, for a
    run that exported, end_s (final checkpoint, evaluation and export)."""
    now = time.monotonic()
    timings = {"elapsed_s": round(now - run_started, 3), "build_s": round(t0 - run_started, 3), "step_s": None}
    last = ended if ended is not None else now
    if first_step_end is not None and steps >= 2:
        timings["step_s"] = round((last - first_step_end) / (steps - 1), 6)
    if ended is not None:
        timings["end_s"] = round(now - ended, 3)
    return timings


def _replay_fits(meta: dict, old_file: Path, method, job_phases: list) -> list[list[int]]:
    """The budget's fits a checkpoint recorded (latest.json's "schedule", or an older engine's schedule.json),
    replayed on the method (Method.fit_steps) so that a resumed run continues the same schedule; [] when there
    are none, or when the job's steps changed since (then the new steps rule, and a budget fits them afresh)."""
    recorded = meta.get("schedule")
    if recorded is None and old_file.is_file():
        recorded = json.loads(old_file.read_text(encoding="utf-8"))
    if not recorded:
        return []
    if recorded.get("job_phases") != job_phases:
        log.info("the job's steps changed since the checkpoint: its time-budget schedule is dropped")
        return []
    for total, done in recorded["fits"]:
        method.fit_steps(total, done)
    log.info("continuing the checkpoint's time-budget schedule: %d steps", method.total_steps)
    return [list(f) for f in recorded["fits"]]


def _fail(events: EventStream, error: EngineError) -> int:
    log.error("%s: %s (%s)", error.kind, error.message, error.hint, extra={"as_event": False})
    events.emit("error", kind=error.kind, message=error.message, hint=error.hint)
    events.emit("finished", status="failed")
    return error.exit_code


def _check_resumable(saved: dict, current: dict) -> None:
    changed = changes_refusing_resume(saved, current)
    if changed:
        key, before, after = changed[0]
        raise EngineError("invalid_job", f"--resume: job.json key {key!r} changed since the checkpoint "
                          f"({before!r} -> {after!r})",
                          f"restore {key!r} or run without --resume; only {list(RESUMABLE_CHANGES)} may change")