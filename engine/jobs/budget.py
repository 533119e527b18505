"""A time budget for the run loop (job.json `budget_s`): how many steps fit, kept up to date as the run goes.

The budget runs from the start of the run to the exported mesh. The loop (engine/jobs/run.py) reserves
the end of the run (final checkpoint, evaluation, mesh export: `end_cost`, estimated before the first
step), times the steps (the first one, which carries warm-up, JIT and allocation costs, is not counted),
fits the schedule into what is left (Method.fit_steps) and re-checks the clock as it goes: a machine
that slows down gets fewer steps, one that speeds up (empty-space skipping gets faster as the grid
empties) gets back steps up to the job's `steps`, a new phase (NeRF-Art's style steps cost more than its
reconstruction steps) is timed afresh and the plan refitted to it, and when no further step fits the run
stops, always leaving the reserve for its export.

TimeBudget is arithmetic on the clock and step counts alone (no torch), so tests drive it with a fake clock.
"""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass

# Timing: at least this many steps after the warm-up step, over MEASURE_SHARE of the budget (1 to 10 s).
MEASURE_STEPS = 2
MEASURE_SHARE = 0.02
# The step time is the mean over the most recent WINDOW_SHARE of the budget (at least the measuring time):
# recent enough to follow a machine that slows down or steps that get faster.
WINDOW_SHARE = 0.1
# Planned steps end this long before the reserve begins: 3% of the budget + half a second.
MARGIN_SHARE, MARGIN_S = 0.03, 0.5
# Refit when the planned end strays from its target by more than this share of the budget (or two steps), at
# most once a window: every refit moves the schedules a little, and step times are noisy.
REFIT_SHARE = 0.05


@dataclass(frozen=True)
class Fit:
    """A new plan: `total` steps (of which `done` are taken), with the numbers it was made from."""

    total: int
    done: int
    s_per_step: float
    """Mean seconds per step measured (after the warm-up step)."""
    left_s: float
    """Seconds left for steps when the plan was made (the reserve and margin taken off)."""
    refit: bool
    """False for the first plan (made once the steps are timed), True for a later change."""


class TimeBudget:
    """When to stop optimising so that a run of `budget_s` seconds, started at `started` (time.monotonic()),
    ends with its export in time.

    reserve_s: what the end of the run takes (end_cost); cap: the most steps the run may take (the job's). The
    loop calls begin(now) before its first step and step_done(done, total, now, phase) after every step, which
    returns a Fit once the steps are timed (the first plan, which may keep `total`), once a new phase's steps are,
    and whenever the plan should change later, else None; must_stop(now) says when no further step fits.
    """

    def __init__(self, budget_s: float, started: float, reserve_s: float, cap: int) -> None:
        self.budget_s, self.reserve_s, self.cap = budget_s, reserve_s, cap
        self.deadline = started + budget_s
        self.margin_s = MARGIN_SHARE * budget_s + MARGIN_S
        self.measure_s = min(max(1.0, MEASURE_SHARE * budget_s), 10.0)
        self.window_s = max(self.measure_s, WINDOW_SHARE * budget_s)
        self.samples: collections.deque[tuple[float, int]] = collections.deque()  # (time, steps done)
        self.fitted_at: float | None = None
        self.last_step_s = 0.0
        self._step_began = started
        self._phase: str | None = None
        self._new_phase = False
        self.reserved_at = started

    def begin(self, now: float) -> None:
        """The first step starts now (the time before it went into building the method)."""
        self._step_began = now

    @property
    def stop_by(self) -> float:
        """When the planned steps should be over: the deadline less the reserve and the margin."""
        return self.deadline - self.reserve_s - self.margin_s

    def s_per_step(self) -> float | None:
        """Mean seconds per step over the recent window; None until measured."""
        if len(self.samples) < 2:
            return None
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (t1 - t0) / (d1 - d0) if d1 > d0 else None

    def step_done(self, done: int, total: int, now: float, phase: str = "") -> Fit | None:
        """Record that `done` steps are taken at `now` of a plan of `total`, the last one in `phase`; a Fit when the
        plan should change."""
        self.last_step_s, self._step_began = now - self._step_began, now
        if phase != self._phase and self._phase is not None:
            self.samples.clear()  # another kind of step: timed afresh, its first one (first calls) left out
            self._new_phase = self.fitted_at is not None
        self._phase = phase
        first_of_run = not self.samples
        self.samples.append((now, done))
        if first_of_run:
            return None  # the warm-up step: its end starts the clock
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window_s:
            self.samples.popleft()
        rate = self.s_per_step()
        measured = now - self.samples[0][0] >= self.measure_s and done - self.samples[0][1] >= MEASURE_STEPS
        if rate is None or ((self.fitted_at is None or self._new_phase) and not measured):
            return None
        left = self.stop_by - now
        fit = min(self.cap, done + max(0, math.floor(left / rate)))
        refit = self.fitted_at is not None
        if self._new_phase:
            self._new_phase = False
            if fit == total:
                return None
        elif refit:
            # Keep the plan while its end stays near the target. At most one refit a window, except when the plan
            # is about to end early: steps that got faster (the grid emptied) after a plan fitted to slow ones
            # would otherwise end the run with much of the budget unspent (measured: 169 s of 300 on a CPU).
            planned_end = now + (total - done) * rate
            ending_early = planned_end - now < self.window_s and planned_end < self.stop_by
            if (fit == total or (now - self.fitted_at < self.window_s and not ending_early)
                    or abs(planned_end - self.stop_by) <= max(REFIT_SHARE * self.budget_s, 2 * rate)):
                return None
        self.fitted_at = now
        return Fit(fit, done, rate, left, refit)

    def reserve_due(self, now: float) -> bool:
        """Whether the reserve is a window old: the end of the run is cheaper once training has emptied space
        (the held-out renders and the export skip it), so the loop estimates it again (end_cost, live)."""
        return now - self.reserved_at >= self.window_s

    def set_reserve(self, reserve_s: float, now: float) -> None:
        """A new estimate of the end of the run; the plan follows at the next refit (stop_by moves with it)."""
        self.reserve_s, self.reserved_at = reserve_s, now

    def must_stop(self, now: float) -> bool:
        """Whether another step (as long as the last one) would run into the reserve."""
        return now + self.last_step_s > self.deadline - self.reserve_s


def end_cost(method, spec, device) -> dict[str, float]:
    """Seconds the end of the run will take, estimated before it starts: "export" (the density grid, marching
    cubes, the texture), "evaluation" (Method.evaluation_queries), "checkpoint", "process" (the interpreter's
    start and exit, outside the run's clock: torch takes a second to shut down), and "total" with a safety
    factor. Field queries are timed on this device (one untimed call first, for warm-up and JIT); the
    CPU-side mesh stages use constants measured on a 2-core CPU (slow: they overestimate faster machines)."""
    import time

    import torch

    from ..mesh.grid import MIN_COARSE_CELLS

    points = torch.rand(QUERY_POINTS, 3, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    with torch.no_grad():
        method.scene.field(points[:1024]).density.sum().item()
        t = time.perf_counter()
        method.scene.field(points).density.sum().item()  # .item(): waits for the device
        query_s = (time.perf_counter() - t) / QUERY_POINTS
    res, texture = spec.export.resolution, spec.export.texture_size
    coarse = 4
    while coarse > 1 and res // coarse < MIN_COARSE_CELLS:
        coarse //= 2
    queries = (res // coarse) ** 3 + REFINE_SHARE * res ** 3 + texture ** 2
    faces = min(FACES_PER_RES2 * res ** 2, spec.export.max_faces or math.inf)
    export = queries * query_s + CELL_S * (res + 2) ** 3 + (UNWRAP_S_PER_FACE * faces if texture else 0) + FIXED_S
    evaluation = method.evaluation_queries() * query_s
    tensors = [t for m in method.modules.values() for t in m.state_dict().values()]
    tensors += [t for s in method.optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    if not method.optimizer.state:  # Adam's two moments per parameter appear with the first step
        tensors += [p for g in method.optimizer.param_groups for p in g["params"]] * 2
    checkpoint = sum(t.numel() * t.element_size() for t in tensors) / WRITE_BYTES_S + FIXED_S
    costs = {"export": export, "evaluation": evaluation, "checkpoint": checkpoint, "process": PROCESS_S}
    return {**costs, "total": SAFETY * sum(costs.values()), "query_us": query_s * 1e6}


# end_cost's model, measured on a 2-core CPU with a hash-grid field: field queries on the coarse 64^3 lattice
# and ~13% of 256^3 near the surface (tests/engine/capture_support's box), then the numpy stages over the 258^3
# grid (cavity fill, marching cubes, cleanup, decimation, vertex colours, writing). Those took 9 s when first
# measured; in the bench_reconstruct runs of 2026-11-30 they took 0.7 s (synthetic360), 0.9 s (synthetic8) and
# 2.5 s (photo, decimated from 250k faces): CELL_S is the slowest of these per cell.
QUERY_POINTS = 65536
REFINE_SHARE = 0.13
CELL_S = 1.5e-7
FACES_PER_RES2 = 12.0
UNWRAP_S_PER_FACE = 1.7e-3  # xatlas: 413 s for 250k faces on that CPU
WRITE_BYTES_S = 100e6
FIXED_S = 0.5
PROCESS_S = 1.5  # 0.6-2 s from the `finished` event to the exit of the engine process on that CPU
SAFETY = 1.25
