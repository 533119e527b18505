"""What a method is: its card (torch-free, read by job validation, the CLI and the add-on) and the
contract its composition root fulfils for the run loop and the offline commands (render, export).

A method lives in one package, `engine/methods/NAME/`:
- `__init__.py`: `CARD`, a MethodCard, and the method's options dataclass. Imports neither torch
  nor any model library, so a job is validated (and the add-on draws its panel) without them.
- `method.py`: the composition root. `build(spec, device) -> Method` wires the representation,
  guidance, losses and optimiser in plain sight; `make_scene(spec, representation) -> Scene`
  rebuilds the trained representation alone, from what the checkpoint recorded.
It is registered by one line (its name in REGISTERED) in `engine/methods/__init__.py`.
docs/ARCHITECTURE.md walks through adding one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # annotations only: this module stays importable without torch
    import torch

    from ..captures import ObjectFrame
    from ..fields.base import FieldOutput
    from ..render.volume import RenderOutput

INPUTS = ("text", "capture")


@dataclass(frozen=True)
class Quality:
    """One quality preset of a method (the panel's draft / standard / high)."""

    steps: int
    """Optimisation steps (job.json `steps`)."""
    render_size: int
    """Render size in pixels (job.json `render.size`), a multiple of 8."""
    mesh_resolution: int
    """Marching-cubes grid of the exported mesh (job.json `export.resolution`)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Method options the preset sets too (e.g. NeRF-Art's `reconstruct_steps`)."""
    budget_s: float | None = None
    """Time budget in seconds (job.json `budget_s`): the run fits its steps into it on the machine it runs on;
    None = no budget (every step runs)."""


@dataclass(frozen=True)
class MethodCard:
    """Everything about a method that can be known without torch: the single source of the engine's job
    validation, `python -m engine --help` and the add-on's method lists, presets and defaults."""

    name: str
    """job.json `method`."""
    title: str
    """Short name shown in the add-on's method menu."""
    summary: str
    """One line: what the method does (menu tooltip, --help)."""
    source: str
    """The paper (authors, venue, arXiv id) and the implementations the defaults follow."""
    input: str
    """"text" (makes an object from the prompt) or "capture" (starts from inputs.capture)."""
    takes_prompt: bool
    """True: `prompt` is required (the object, or the style); False: the method takes no prompt."""
    options: type
    """The frozen dataclass of job.json `options`: defaults with a docstring each, and validate(key)."""
    defaults: Mapping[str, Any]
    """Defaults of the common job sections: `steps`, `render` {size, samples_per_ray}, `orbit` {...}."""
    presets: Mapping[str, Quality]
    """Quality presets by name: "draft", "standard", "high"."""
    roles: Mapping[str, str | None] = field(default_factory=dict)
    """Model roles the method loads (job.json `models` keys), each with this method's default model, or
    None for the role's default (engine/models/registry.py DEFAULT_MODELS)."""
    source_methods: tuple[str, ...] = ()
    """Methods whose finished job may be `inputs.source_job` (empty: the method takes none)."""
    composition_root: str = ""
    """Module with build(spec, device) and make_scene(spec, representation); "" = `<card's package>.method`."""

    def validate(self) -> None:
        """Raise ValueError when the card itself is malformed (a programming error, caught at registration)."""
        if self.input not in INPUTS:
            raise ValueError(f"method {self.name}: input must be one of {INPUTS}, not {self.input!r}")
        for key in ("steps", "render", "orbit"):
            if key not in self.defaults:
                raise ValueError(f"method {self.name}: defaults lack {key!r}")
        if not callable(getattr(self.options, "validate", None)):
            raise ValueError(f"method {self.name}: its options class has no validate(key)")
        if self.source_methods and self.input != "capture":
            raise ValueError(f"method {self.name}: only capture methods start from a source job")


@dataclass(frozen=True)
class Phase:
    """A stretch of a run with its own losses and schedule (NeRF-Art: reconstruct, then style)."""

    name: str
    steps: int


@dataclass
class StepOutput:
    """What a method's step returns to the run loop."""

    losses: dict[str, torch.Tensor]
    """Named, unweighted scalar losses; engine.losses.weighted_total sums them with the method's weights."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Numbers worth watching that are not losses (e.g. mean transmittance, the occupied share of the grid)."""


RayRenderer = Callable[["torch.Tensor", "torch.Tensor", float], "RenderOutput"]


@dataclass
class Scene:
    """The trained representation, as previews, preview meshes, export and `engine render` see it.

    modules: what the checkpoint restores (name -> nn.Module), the names being those of Method.modules.
    field: (N,3) object-space points in [-1,1]^3 -> FieldOutput (density (N,), albedo (N,3) in [0,1]):
    the mesh exporter's density and albedo. A representation that is not a density field (a set of
    Gaussians) gives its own density/albedo here (e.g. splatted) and its own renderer below.
    render: (R,3) origins, (R,3) unit directions, focal length in pixels -> RenderOutput (per-ray rgb,
    opacity, depth), without gradients; None = volume rendering of `field` with render.samples_per_ray.
    """

    modules: dict[str, Any]
    field: Callable[..., FieldOutput]
    render: RayRenderer | None = None


class Method:
    """The contract between a method and the run loop (engine/jobs/run.py) and the offline commands.

    The loop never looks for anything else: it builds the method, restores `modules` and `optimizer`
    on --resume, and for each step in the phases sets `learning_rate(step)`, calls `step`, sums the
    losses with `weights(step)` (engine/losses.py), back-propagates and steps the optimiser; previews
    and export read `scene`; at the end it calls `evaluate` and records `representation()` in the
    checkpoint, so that `make_scene` can rebuild the scene from the job folder alone.
    """

    phases: tuple[Phase, ...]
    """The run's phases in order; the loop runs sum(p.steps) steps, counted from 0 across phases. A time budget
    shortens them (fit_steps); schedules that read them follow."""
    job_phases: tuple[Phase, ...] | None = None
    """The phases as the job asked for them, kept by the first fit_steps (None before any)."""
    frame: ObjectFrame
    """Where the object cube [-1,1]^3 sits in the world: meshes and renders go back through it."""
    scene: Scene
    """The representation being optimised (see Scene)."""
    modules: dict[str, torch.nn.Module]
    """Everything a checkpoint holds and a resume restores (the scene's modules, the empty-space grid,
    frozen copies...)."""
    optimizer: torch.optim.Optimizer

    @property
    def total_steps(self) -> int:
        return sum(p.steps for p in self.phases)

    def phase(self, step: int) -> Phase:
        """The phase step `step` (0-based, across phases) belongs to; the last one past the end."""
        start = 0
        for p in self.phases:
            if step < start + p.steps:
                return p
            start += p.steps
        return self.phases[-1]

    def fit_steps(self, total: int, done: int = 0) -> None:
        """Fit the run into `total` steps (a time budget, engine/jobs/run.py), `done` of them taken.

        Phases that ended by step `done` keep their length; the current phase and the later ones share the
        steps left in proportion to the lengths the job gave them, and each phase the job gave steps keeps at
        least one (so total_steps may end a little above `total`). Learning rates and weights that read
        self.phases follow the new lengths; a method whose schedules read anything else (spec.steps, lengths
        computed in __init__) overrides this, calls super() and recomputes them.
        """
        if self.job_phases is None:
            self.job_phases = self.phases
        start, kept, shares = 0, [], []  # shares: (index, weight, least steps) of the phases still to run
        for i, (now, asked) in enumerate(zip(self.phases, self.job_phases)):
            if start + now.steps <= done:
                kept.append(now.steps)  # ended
            else:
                taken = max(0, done - start)  # > 0 only in the current phase, whose steps are then > 0
                kept.append(taken)
                weight = asked.steps * (1 - taken / now.steps) if taken else asked.steps
                shares.append((i, weight, int(taken == 0 and asked.steps > 0)))
            start += now.steps
        left = max(total - done, sum(least for _, _, least in shares))
        # In proportion to the weights; a phase held at its least steps leaves the rest to the others.
        floored: dict[int, int] = {}
        while True:
            free = [(i, w) for i, w, _ in shares if i not in floored]
            room, weights = left - sum(floored.values()), sum(w for _, w in free)
            exact = {i: room * w / weights if weights else 0.0 for i, w in free}
            low = {i: least for i, _, least in shares if i in exact and exact[i] < least}
            if not low:
                break
            floored.update(low)
        # Largest remainders, so the shares add up to exactly `left`.
        steps = {i: int(x) for i, x in exact.items()} | floored
        for i in sorted(exact, key=lambda i: int(exact[i]) - exact[i])[:left - sum(steps.values())]:
            steps[i] += 1
        self.phases = tuple(Phase(p.name, kept[i] + steps.get(i, 0)) for i, p in enumerate(self.phases))

    def learning_rate(self, step: int) -> float:
        raise NotImplementedError

    def divergence_hint(self, step: int) -> str:
        """What to lower when the loss became non-finite at `step`: the settings that drive this method's updates in
        that phase, with their job.json keys and values (the run loop adds "or try another seed" and the checkpoint
        kept). Default: the learning rate; a method names its own options (DreamFusion: guidance_scale, lr)."""
        return f"lower the learning rate (it was {self.learning_rate(step):.3g} at step {step})"

    def weights(self, step: int) -> dict[str, float]:
        """Loss name -> weight at this step; exactly the names step() returns."""
        raise NotImplementedError

    def step(self, step: int, generator: torch.Generator) -> StepOutput:
        """One optimisation step's losses and metrics; every random choice comes from `generator`."""
        raise NotImplementedError

    def regularizers(self) -> dict[str, tuple[torch.Tensor, float]]:
        """Losses the representation brings whatever the method (the tri-planes' total variation): name ->
        (unweighted loss, weight); the run loop adds them to step()'s losses and weights(step). Default: the
        scene's "field" module's own regularizers(), if it has any."""
        regularizers = getattr(self.scene.modules.get("field"), "regularizers", None)
        return regularizers() if regularizers is not None else {}

    def evaluate(self, job_dir) -> dict:
        """Metrics of the finished run (e.g. held-out PSNR), written to result/metrics.json; {} = none."""
        return {}

    def evaluation_queries(self) -> int:
        """About how many field queries evaluate() makes (held-out renders: pixels x samples per ray), so that a
        time budget keeps time for it; 0 = evaluate() is cheap."""
        return 0

    def representation(self) -> dict:
        """JSON that make_scene needs besides job.json to rebuild `scene` (e.g. settings taken from a source
        job); {} when job.json says it all."""
        return {}


def exponential_ramp(step: int, steps: int, start: float, end: float) -> float:
    """start -> end geometrically over `steps` steps, then end."""
    if steps <= 0 or step >= steps:
        return end
    return start * (end / start) ** (step / steps)
