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
    """The run's phases in order; the loop runs sum(p.steps) steps, counted from 0 across phases."""
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

    def learning_rate(self, step: int) -> float:
        raise NotImplementedError

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

    def representation(self) -> dict:
        """JSON that make_scene needs besides job.json to rebuild `scene` (e.g. settings taken from a source
        job); {} when job.json says it all."""
        return {}


def exponential_ramp(step: int, steps: int, start: float, end: float) -> float:
    """start -> end geometrically over `steps` steps, then end."""
    if steps <= 0 or step >= steps:
        return end
    return start * (end / start) ** (step / steps)
