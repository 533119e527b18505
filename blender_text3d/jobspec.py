"""Panel or console settings -> a validated job.json dict (spec_version 1, docs/ARCHITECTURE.md).

No bpy: plain pytest covers it. The engine's parser (engine/spec.py) is the
authority; this side refuses what it can before any process starts, and names the
setting and the reason, so the panel can show it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import captures
from .engine_rules import errors as engine_errors
from .engine_rules import methods as engine_methods
from .engine_rules import spec as engine_spec

SPEC_VERSION = engine_spec.SPEC_VERSION


@dataclass(frozen=True)
class Quality:
    """One quality preset of a method, resolved with the user's overrides."""

    steps: int
    """Optimisation steps."""
    render_size: int
    """Training render size in pixels (a multiple of 8)."""
    mesh_resolution: int
    """Marching-cubes grid resolution of the exported mesh."""
    reconstruct_steps: int | None = None
    """Methods that reconstruct first (nerf_art, latent_edit): reconstruction steps before the style or edit
    steps; None = not applicable or the engine's default."""
    budget_s: float | None = None
    """Time budget in seconds (job.json `budget_s`): the engine fits the steps into it; None = no budget."""


# Everything about the methods (names, menus, presets, defaults) comes from the engine's method cards
# (engine/methods/NAME/__init__.py); the functions below read them each time, so a method the engine
# registers is in the add-on's lists.
QUALITIES = ("draft", "standard", "high", "custom")
MODEL_KEYS = engine_spec.MODEL_ROLES
FORMATS = engine_spec.EXPORT_FORMATS
# Previews per job, whatever its length: often enough to watch, rare enough to be cheap.
PREVIEW_IMAGES_PER_JOB = 20
PREVIEW_MESHES_PER_JOB = 10
# Orbit ranges as the panel's settings: (key in job.json orbit, min setting, max setting, lowest,
# highest, whether `lowest` itself is excluded). The limits are the engine's (engine/spec.py OrbitConfig).
ORBIT_RANGES = (
    ("radius", "radius_min", "radius_max", engine_spec.MIN_CAMERA_RADIUS, 1000.0, True),
    ("elevation_deg", "elevation_min", "elevation_max", -90.0, 90.0, False),
    ("azimuth_deg", "azimuth_min", "azimuth_max", -360.0, 360.0, False),
    ("fov_deg", "fov_min", "fov_max", 1.0, 150.0, False),
)
_DEVICE = re.compile(engine_spec.DEVICE_PATTERN)
EXIT_CODES = engine_errors.EXIT_CODES
"""`python -m engine run`'s exit codes (engine/errors.py)."""


@dataclass(frozen=True)
class PromptWords:
    """How the panel and the errors speak of a method's prompt."""

    label: str
    """The prompt field's label; its lower case names the method's own steps ("2000 + 400 style steps")."""
    button: str
    """The label of the button that starts the job."""
    describe: str
    """What the prompt describes, with an example (an empty prompt's error: "describe ...")."""


# Add-on wording, not engine rules: a capture method that takes a prompt restyles unless named here.
TEXT_PROMPT = PromptWords("Prompt", "Generate", "the object to generate")
STYLE_PROMPT = PromptWords("Style", "Restyle", "the style, e.g. 'a bronze statue'")
CAPTURE_PROMPTS = {"latent_edit": PromptWords("Edit", "Edit", "the edited object, e.g. 'a man with a beard'")}
RECONSTRUCT_PROMPT = PromptWords("", "Reconstruct", "")  # takes no prompt


def method_names(input: str | None = None) -> tuple[str, ...]:
    """The engine's methods in menu order; input "text" or "capture" keeps those that start from it."""
    return tuple(name for name, c in engine_methods.CARDS.items() if input is None or c.input == input)


def method_items(input: str) -> list[tuple[str, str, str]]:
    """(name, title, summary) of the methods that start from `input`: a Blender enum's items."""
    return [(c.name, c.title, c.summary) for c in engine_methods.CARDS.values() if c.input == input]


def is_capture_method(method: str) -> bool:
    return method in method_names("capture")


def takes_prompt(method: str) -> bool:
    """Whether the method reads a prompt (the object, or the style of a restyle)."""
    card = engine_methods.CARDS.get(method)
    return card is not None and card.takes_prompt


def prompt_words(method: str) -> PromptWords:
    """How the panel labels the method's prompt and button (PromptWords)."""
    card = engine_methods.CARDS.get(method)
    if card is None or card.input != "capture":
        return TEXT_PROMPT
    if not card.takes_prompt:
        return RECONSTRUCT_PROMPT
    return CAPTURE_PROMPTS.get(method, STYLE_PROMPT)


def option_names(method: str) -> frozenset[str]:
    """The names of the method's job.json options (its options dataclass's fields); empty for an unknown method."""
    card = engine_methods.CARDS.get(method)
    return frozenset(f.name for f in dataclasses.fields(card.options)) if card is not None else frozenset()


def option_users(name: str) -> list[str]:
    """The methods, in menu order, that have job.json options.<name>."""
    return [method for method in method_names() if name in option_names(method)]


def uses_diffusion(method: str) -> bool:
    """Whether a method is guided by a diffusion model: it takes a negative prompt, guidance scale and timesteps."""
    card = engine_methods.CARDS.get(method)
    return card is not None and "diffusion" in card.roles


def option_default(method: str, name: str) -> Any:
    """The engine's default of job.json options.<name> for `method` (its options dataclass)."""
    cls = engine_methods.CARDS[method].options
    field_ = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field_.default if field_.default is not dataclasses.MISSING else field_.default_factory()


def preset(method: str, quality: str) -> Quality | None:
    """The method's quality preset (None for "custom"); SettingsError naming the method or preset."""
    if method not in engine_methods.CARDS:
        raise SettingsError("method", f"unknown method {method!r}; choose one of {', '.join(method_names())}")
    if quality not in QUALITIES:
        raise SettingsError("quality", f"unknown preset {quality!r}; choose one of {', '.join(QUALITIES)}")
    p = engine_methods.CARDS[method].presets.get(quality)
    if p is None:
        return None
    return Quality(p.steps, p.render_size, p.mesh_resolution, p.options.get("reconstruct_steps"), p.budget_s)


class SettingsError(ValueError):
    """A setting that cannot make a valid job; names the setting and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    """Everything a job depends on. None = the quality preset's or the engine's default."""

    prompt: str = ""
    """The text the object should match (text methods), the style (nerf_art) or the edited object (latent_edit)."""
    negative_prompt: str = ""
    """What the object should not look like (methods with diffusion guidance)."""
    method: str = "dream_fields"
    """Method, an engine method card's name: text methods make an object from the prompt, capture methods start
    from a capture (method_names("text"), method_names("capture"))."""
    quality: str = "standard"
    """Preset for steps, render size and mesh resolution: draft, standard, high, or custom."""
    steps: int | None = None
    """Optimisation steps; None = from the quality preset."""
    render_size: int | None = None
    """Training render size in pixels, a multiple of 8; None = from the quality preset."""
    mesh_resolution: int | None = None
    """Marching-cubes grid of the exported mesh; None = from the quality preset."""
    samples_per_ray: int | None = None
    """Samples along each ray; None = the engine's default for the method."""
    seed: int = 0
    """Random seed; the same seed gives the same object on the same device."""
    radius_min: float | None = None
    """Nearest camera distance from the look-at point; None = method default."""
    radius_max: float | None = None
    """Farthest camera distance; None = method default."""
    elevation_min: float | None = None
    """Lowest camera elevation in degrees; None = method default."""
    elevation_max: float | None = None
    """Highest camera elevation in degrees; None = method default."""
    azimuth_min: float | None = None
    """Start of the azimuth range in degrees; None = method default."""
    azimuth_max: float | None = None
    """End of the azimuth range in degrees; None = method default."""
    fov_min: float | None = None
    """Narrowest vertical field of view in degrees; None = method default."""
    fov_max: float | None = None
    """Widest vertical field of view in degrees; None = method default."""
    texture_size: int | None = None
    """Baked albedo texture size in pixels, 0 = vertex colours only; None = engine default."""
    threshold: float | str | None = None
    """Density threshold of the surface, a number or "auto"; None = engine default."""
    formats: tuple[str, ...] | None = None
    """Exported files, a subset of FORMATS that includes "npz"; None = engine default."""
    live_preview: bool = True
    """Ask the engine for coarse intermediate meshes shown in the viewport."""
    device: str = "auto"
    """Where the engine runs: auto, cpu, cuda, cuda:N or mps."""
    models: Mapping[str, str] = field(default_factory=dict)
    """Guidance models by role (a key of MODEL_KEYS): hub id or local path; unset = engine default."""
    allow_downloads: bool = False
    """Whether the engine may download missing models."""
    guidance_scale: float | None = None
    """Classifier-free guidance scale of diffusion guidance (>= 0); None = engine default (100)."""
    t_range_min: float | None = None
    """Smallest diffusion timestep, a fraction in [0, 1); None = engine default (0.02)."""
    t_range_max: float | None = None
    """Largest diffusion timestep, a fraction in [t_range_min, 1); None = engine default (0.98)."""
    capture: str = ""
    """Capture methods: a capture folder with transforms.json, or the transforms file itself."""
    source_job: str = ""
    """Methods whose card names source methods (nerf_art, latent_edit): a finished job folder to start from (a
    reconstruction to restyle or edit) instead of reconstructing."""
    reconstruct_steps: int | None = None
    """Methods that reconstruct first (nerf_art, latent_edit): reconstruction steps before the style or edit
    steps; None = from the quality preset."""
    budget_s: float | None = None
    """Time budget in seconds: the engine fits the run, export included, into it on the machine it runs on (at
    most `steps`); 0 = no budget; None = the quality preset's (capture methods' draft and standard have one)."""
    keep_original: float | None = None
    """latent_edit: how strongly the edit holds to the original, 0 to 100 (multiplies the reconstruction and
    identity weights; 0 = a pure edit toward the prompt); None = the engine's default (1)."""
    face: bool | None = None
    """latent_edit: the capture is a face, so the identity loss uses a face recogniser (models.identity) instead
    of CLIP; None = the engine's default (False)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Method-specific settings, passed on as job.json options (the engine validates them)."""


SETTING_NAMES = tuple(f.name for f in dataclasses.fields(Settings))


def settings_from(values: Mapping[str, Any]) -> Settings:
    """Settings from a mapping of setting names; an unknown name is an error that names it."""
    for key in values:
        if key not in SETTING_NAMES:
            raise SettingsError(key, "unknown setting; known: " + ", ".join(SETTING_NAMES))
    return Settings(**values)


def resolved_quality(s: Settings) -> Quality:
    """Steps, render size and mesh resolution after applying the preset and overrides."""
    base = preset(s.method, s.quality)
    values = {}
    for key in ("steps", "render_size", "mesh_resolution"):
        value = getattr(s, key)
        if value is None and base is None:
            raise SettingsError(key, "the custom quality needs steps, render_size and mesh_resolution")
        values[key] = getattr(base, key) if value is None else value
    # The preset's reconstruction applies unless the steps are given (as a setting or an
    # option) or a source job is the reconstruction.
    given_as_option = isinstance(s.options, Mapping) and "reconstruct_steps" in s.options
    if s.reconstruct_steps is not None:
        values["reconstruct_steps"] = s.reconstruct_steps
    elif base is not None and not s.source_job and not given_as_option:
        values["reconstruct_steps"] = base.reconstruct_steps
    # The user's budget replaces the preset's; 0 clears it.
    budget = s.budget_s if s.budget_s is not None else (base.budget_s if base is not None else None)
    if budget is not None:
        budget = _check_number("budget_s", budget)
        if budget < 0:
            raise SettingsError("budget_s", f"must be a number of seconds, or 0 for no time budget (got {budget:g})")
    values["budget_s"] = budget or None
    return Quality(**values)


def build_job(s: Settings) -> dict:
    """The job.json dict for these settings, or SettingsError naming the first bad setting."""
    q = resolved_quality(s)
    inputs = _inputs(s)  # a capture job's first question: which capture
    _check_prompt(s)
    _check_int("steps", q.steps, 1, 1_000_000)
    _check_int("render_size", q.render_size, 8, 1024)
    if q.render_size % 8:
        raise SettingsError("render_size", f"must be a multiple of 8 (got {q.render_size})")
    _check_int("mesh_resolution", q.mesh_resolution, 16, 1024)
    _check_int("seed", s.seed, 0, 2**31 - 1)
    if not _DEVICE.match(str(s.device)):
        raise SettingsError("device", f"must be auto, cpu, cuda, cuda:N or mps (got {s.device!r})")

    job: dict[str, Any] = {"spec_version": SPEC_VERSION, "method": s.method}
    if inputs:
        job["inputs"] = inputs
    if s.prompt.strip():
        job["prompt"] = s.prompt.strip()
    job.update({"seed": s.seed, "steps": q.steps, "device": s.device, "render": {"size": q.render_size}})
    if q.budget_s:
        job["budget_s"] = q.budget_s
    if s.negative_prompt.strip():
        job["negative_prompt"] = s.negative_prompt.strip()
    if s.samples_per_ray is not None:
        _check_int("samples_per_ray", s.samples_per_ray, 4, 1024)
        job["render"]["samples_per_ray"] = s.samples_per_ray
    orbit = _orbit(s)
    if orbit:
        job["orbit"] = orbit
    # Only the roles the method loads: the preferences name a model for every role.
    roles = engine_methods.CARDS[s.method].roles
    models = {role: name for role, name in _models(s.models).items() if role in roles}
    if models:
        job["models"] = models
    job["allow_downloads"] = bool(s.allow_downloads)
    job["export"] = _export(s, q)
    # The engine counts a run that reconstructs first (NeRF-Art, latent editing) from its first reconstruction step.
    total = q.steps + (q.reconstruct_steps or 0)
    job["preview_every"] = max(1, total // PREVIEW_IMAGES_PER_JOB)
    job["preview_mesh_every"] = max(1, total // PREVIEW_MESHES_PER_JOB) if s.live_preview else 0
    options = _options(s, q)
    if options:
        job["options"] = options
    _engine_validates(job)
    return job


# job.json keys -> the settings that write them, so the engine's verdict names what the user set.
SETTING_OF_JOB_KEY = {
    "render.size": "render_size", "render.samples_per_ray": "samples_per_ray", "export.resolution": "mesh_resolution",
    "export.threshold": "threshold", "export.texture_size": "texture_size", "export.formats": "formats",
    "orbit.radius": "radius_min", "orbit.elevation_deg": "elevation_min", "orbit.azimuth_deg": "azimuth_min",
    "orbit.fov_deg": "fov_min", "inputs.capture": "capture", "inputs.source_job": "source_job",
    "options.guidance_scale": "guidance_scale", "options.t_range": "t_range_min",
    "options.reconstruct_steps": "reconstruct_steps", "options.keep_original": "keep_original",
    "options.face": "face",
}


def _engine_validates(job: dict) -> None:
    """The engine's own parser (engine/spec.py) is the authority: whatever the checks above let through,
    it refuses here, with its reason, under the setting's name (options.X for options passed through)."""
    try:
        engine_spec.parse_job(job)
    except engine_errors.EngineError as exc:
        key = exc.message.split(":", 1)[0]
        reason = exc.message.split(":", 1)[1].strip() if ":" in exc.message else exc.message
        raise SettingsError(SETTING_OF_JOB_KEY.get(key, key), reason) from None


def job_title(job: Mapping[str, Any]) -> str:
    """What the panel and the imported object call a job: its prompt, or its capture (and style)."""
    prompt = str(job.get("prompt", "")).strip()
    inputs = job.get("inputs")
    capture = inputs.get("capture") if isinstance(inputs, Mapping) else None
    if not capture:
        return prompt
    name = captures.capture_name(capture)
    return f"{name}: {prompt}" if prompt else f"{name} ({job.get('method', '')})"


def _check_prompt(s: Settings) -> None:
    if not isinstance(s.prompt, str):
        raise SettingsError("prompt", f"must be text (got {s.prompt!r})")
    card = engine_methods.CARDS[s.method]
    if card.takes_prompt and not s.prompt.strip():
        raise SettingsError("prompt", f"is empty; describe {prompt_words(s.method).describe}")
    if not card.takes_prompt and s.prompt.strip():
        takers = [n for n in method_names("capture") if engine_methods.CARDS[n].takes_prompt]
        raise SettingsError("prompt", f"{s.method} fits the capture's photos and takes no prompt; "
                            f"{_listing(takers)} {_verb('take', takers)} one")


def _inputs(s: Settings) -> dict:
    """inputs.capture (absolute) and inputs.source_job, checked to exist."""
    card = engine_methods.CARDS[s.method]
    starters = [n for n, c in engine_methods.CARDS.items() if c.source_methods]
    reconstructors = option_users("reconstruct_steps")
    if card.input != "capture":
        for key in ("capture", "source_job", "reconstruct_steps"):
            if getattr(s, key) not in ("", None):
                raise SettingsError(key, f"{s.method} generates from text; only {', '.join(method_names('capture'))} "
                                    "take it")
        return {}
    if not isinstance(s.capture, str) or not s.capture.strip():
        raise SettingsError("capture", "is empty; capture the selected objects or choose a capture folder")
    capture = Path(s.capture.strip()).expanduser().resolve()
    try:
        captures.cached_view_count(capture)
    except captures.CaptureError as exc:
        raise SettingsError("capture", str(exc)) from exc
    inputs = {"capture": str(capture)}
    if s.source_job:
        if not card.source_methods:
            raise SettingsError("source_job", f"only {_listing(starters)} {_verb('start', starters)} from a "
                                f"finished job, not {s.method}")
        source = Path(s.source_job.strip()).expanduser().resolve()
        if not (source / "job.json").is_file():
            raise SettingsError("source_job", f"{source} is not a job folder (no job.json)")
        source_method = _job_method(source / "job.json")
        if source_method is not None and source_method not in card.source_methods:
            raise SettingsError("source_job", f"{source} is a {source_method} job; {s.method} starts from a "
                                f"finished {' or '.join(card.source_methods)} job")
        if s.reconstruct_steps is not None:
            raise SettingsError("reconstruct_steps", "the source job is the reconstruction; leave it unset")
        inputs["source_job"] = str(source)
    if s.reconstruct_steps is not None and s.method not in reconstructors:
        raise SettingsError("reconstruct_steps", f"only {_listing(reconstructors)} "
                            f"{_verb('reconstruct', reconstructors)} the capture first, not {s.method}")
    return inputs


def _job_method(path: Path) -> str | None:
    """The method a job.json names; None when it names none or cannot be read (the engine then says why)."""
    try:
        method = json.loads(path.read_text(encoding="utf-8")).get("method")
    except (OSError, ValueError, AttributeError):
        return None
    return method if isinstance(method, str) else None


def _listing(names: list[str]) -> str:
    """"a", "a and b", "a, b and c"."""
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def _verb(verb: str, subjects: list[str]) -> str:
    """The verb agreeing with the listed subjects: "starts" for one, "start" for more."""
    return f"{verb}s" if len(subjects) == 1 else verb


def _options(s: Settings, q: Quality) -> dict:
    """job.json options: the named settings' and any others passed through, never both for one key."""
    if not isinstance(s.options, Mapping) or not all(isinstance(k, str) for k in s.options):
        raise SettingsError("options", f"must map option names to values (got {s.options!r})")
    named: dict[str, Any] = {}
    if s.guidance_scale is not None or s.t_range_min is not None or s.t_range_max is not None:
        if not uses_diffusion(s.method):
            key = next(k for k in ("guidance_scale", "t_range_min", "t_range_max") if getattr(s, k) is not None)
            users = [n for n in method_names() if uses_diffusion(n)]
            raise SettingsError(key, f"only {_listing(users)} {_verb('use', users)} it (method is {s.method})")
    if s.guidance_scale is not None:
        scale = _check_number("guidance_scale", s.guidance_scale)
        if scale < 0:
            raise SettingsError("guidance_scale", f"must be >= 0 (got {scale:g})")
        named["guidance_scale"] = scale
    if s.t_range_min is not None or s.t_range_max is not None:
        default = option_default(s.method, "t_range")  # the end left unset keeps the engine's default
        lo = default[0] if s.t_range_min is None else _check_number("t_range_min", s.t_range_min)
        hi = default[1] if s.t_range_max is None else _check_number("t_range_max", s.t_range_max)
        for key, value in (("t_range_min", lo), ("t_range_max", hi)):
            if not 0 <= value < 1:
                raise SettingsError(key, f"must be a fraction in [0, 1) (got {value:g})")
        if lo > hi:
            raise SettingsError("t_range_min", f"is greater than t_range_max ({lo:g} > {hi:g})")
        named["t_range"] = [lo, hi]
    if q.reconstruct_steps is not None:
        _check_int("reconstruct_steps", q.reconstruct_steps, 0, 1_000_000)
        named["reconstruct_steps"] = q.reconstruct_steps
    named.update(_edit_options(s))
    both = sorted(set(named) & set(s.options))
    if both:
        raise SettingsError(f"options.{both[0]}", "is also a setting of its own; give it once")
    return {**s.options, **named}


def _edit_options(s: Settings) -> dict:
    """options.keep_original and options.face, for the methods that have them (latent_edit)."""
    named = {}
    for key in ("keep_original", "face"):
        value = getattr(s, key)
        if value is None:
            continue
        users = option_users(key)
        if s.method not in users:
            raise SettingsError(key, f"only {_listing(users)} {_verb('take', users)} it, not {s.method}; "
                                "leave it unset or choose " + " or ".join(users))
        named[key] = value
    if "keep_original" in named:
        keep = _check_number("keep_original", named["keep_original"])
        if not 0 <= keep <= 100:
            raise SettingsError("keep_original", f"must be between 0 and 100 (got {keep:g}): 0 = a pure edit, "
                                "1 = the default, more = closer to the original")
        named["keep_original"] = keep
    if "face" in named and not isinstance(named["face"], bool):
        raise SettingsError("face", f"must be True or False (got {named['face']!r}): True when the capture is a face")
    return named


def _check_int(key: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(key, f"must be a whole number (got {value!r})")
    if not lo <= value <= hi:
        raise SettingsError(key, f"must be between {lo} and {hi} (got {value})")


def _check_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(key, f"must be a finite number (got {value!r})")
    return float(value)


def _orbit(s: Settings) -> dict:
    orbit = {}
    for key, lo_name, hi_name, lowest, highest, open_low in ORBIT_RANGES:
        lo, hi = getattr(s, lo_name), getattr(s, hi_name)
        if lo is None and hi is None:
            continue
        if lo is None or hi is None:
            missing = lo_name if lo is None else hi_name
            raise SettingsError(missing, f"set {lo_name} and {hi_name} together")
        lo, hi = _check_number(lo_name, lo), _check_number(hi_name, hi)
        for name, value in ((lo_name, lo), (hi_name, hi)):
            if not lowest <= value <= highest or (open_low and value == lowest):
                bracket = "(" if open_low else "["
                raise SettingsError(name, f"must be in {bracket}{lowest:g}, {highest:g}] (got {value:g})")
        if lo > hi:
            raise SettingsError(lo_name, f"is greater than {hi_name} ({lo:g} > {hi:g})")
        if hi - lo > 360 and key == "azimuth_deg":
            raise SettingsError(hi_name, f"the azimuth range spans more than 360 degrees ({lo:g} to {hi:g})")
        orbit[key] = [lo, hi]
    return orbit


def _models(models: Mapping[str, str]) -> dict:
    out = {}
    for key, value in dict(models or {}).items():
        if key not in MODEL_KEYS:
            raise SettingsError(f"models.{key}", f"unknown model role; known: {', '.join(MODEL_KEYS)}")
        if not isinstance(value, str):
            raise SettingsError(f"models.{key}", f"must be a hub id or a path (got {value!r})")
        if value.strip():
            out[key] = value.strip()
    return out


def _export(s: Settings, q: Quality) -> dict:
    export: dict[str, Any] = {"resolution": q.mesh_resolution}
    if s.threshold is not None:
        threshold = "auto" if s.threshold == "auto" else _check_number("threshold", s.threshold)
        if threshold != "auto" and threshold <= 0:
            raise SettingsError("threshold", f'must be "auto" or a density > 0 (got {threshold:g})')
        export["threshold"] = threshold
    if s.texture_size is not None:
        _check_int("texture_size", s.texture_size, 0, 8192)
        if 0 < s.texture_size < 64:
            raise SettingsError("texture_size", f"must be 0 (vertex colours only) or 64 to 8192 (got {s.texture_size})")
        export["texture_size"] = s.texture_size
    if s.formats is not None:
        formats = list(s.formats)
        unknown = [f for f in formats if f not in FORMATS]
        if unknown or "npz" not in formats:
            raise SettingsError("formats", f"must include 'npz' and only {', '.join(FORMATS)} (got {formats})")
        export["formats"] = formats
    return export
