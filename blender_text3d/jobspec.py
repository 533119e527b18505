"""Panel or console settings -> a validated job.json dict (spec_version 1, DESIGN.md).

No bpy: plain pytest covers it. The engine's parser (engine/spec.py) is the
authority; this side refuses what it can before any process starts, and names the
setting and the reason, so the panel can show it.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import captures

SPEC_VERSION = 1


@dataclass(frozen=True)
class Quality:
    """One quality preset of a method."""

    steps: int
    """Optimisation steps."""
    render_size: int
    """Training render size in pixels (a multiple of 8)."""
    mesh_resolution: int
    """Marching-cubes grid resolution of the exported mesh."""
    reconstruct_steps: int | None = None
    """nerf_art: reconstruction steps before the style steps; None = not applicable or the engine's default."""


# Methods the add-on can start, each with its quality presets.
# Dream Fields: the paper's low and medium render/crop sizes (88 and 168 px) and its
# 10k-step schedule for "high"; "standard" stops at 2k steps, where the official code's
# renders already read as the prompt. Draft is a quick look (a few minutes on a GPU).
# DreamFusion: 64 px renders as in stable-dreamfusion/threestudio (the engine upsamples
# to the VAE's 512), 10k steps as in the paper for "high", twice the render for it.
# Capture methods draw rays from the photos; render_size is the preview size (and NeRF-Art's
# style renders). Reconstruction: instant-ngp looks good after a few thousand steps.
# NeRF-Art: `steps` are the style steps (the official code's ~400 for "standard"), after
# reconstruct_steps of reconstruction.
QUALITY: dict[str, dict[str, Quality]] = {
    "dream_fields": {
        "draft": Quality(steps=300, render_size=64, mesh_resolution=128),
        "standard": Quality(steps=2000, render_size=88, mesh_resolution=256),
        "high": Quality(steps=10000, render_size=168, mesh_resolution=256),
    },
    "dreamfusion": {
        "draft": Quality(steps=1000, render_size=64, mesh_resolution=128),
        "standard": Quality(steps=5000, render_size=64, mesh_resolution=256),
        "high": Quality(steps=10000, render_size=128, mesh_resolution=256),
    },
    "reconstruct": {
        "draft": Quality(steps=500, render_size=64, mesh_resolution=128),
        "standard": Quality(steps=3000, render_size=64, mesh_resolution=256),
        "high": Quality(steps=10000, render_size=128, mesh_resolution=256),
    },
    "dietnerf": {
        "draft": Quality(steps=500, render_size=64, mesh_resolution=128),
        "standard": Quality(steps=3000, render_size=64, mesh_resolution=256),
        "high": Quality(steps=10000, render_size=128, mesh_resolution=256),
    },
    "nerf_art": {
        "draft": Quality(steps=100, render_size=64, mesh_resolution=128, reconstruct_steps=500),
        "standard": Quality(steps=400, render_size=128, mesh_resolution=256, reconstruct_steps=2000),
        "high": Quality(steps=1000, render_size=128, mesh_resolution=256, reconstruct_steps=5000),
    },
}
METHODS = tuple(QUALITY)
TEXT_METHODS = ("dream_fields", "dreamfusion")
"""Methods that make an object from a prompt."""
CAPTURE_METHODS = ("reconstruct", "dietnerf", "nerf_art")
"""Methods that start from a capture (inputs.capture)."""
DIFFUSION_METHODS = ("dreamfusion",)
"""Methods guided by a diffusion model: they take a negative prompt, guidance scale and timestep range."""
# DreamFusion's timestep range when only one end is set (engine/options.py DreamFusionOptions).
T_RANGE_DEFAULT = (0.02, 0.98)
QUALITIES = ("draft", "standard", "high", "custom")
MODEL_KEYS = ("clip", "clip_eval", "diffusion", "perceptual")
FORMATS = ("npz", "glb")
# Previews per job, whatever its length: often enough to watch, rare enough to be cheap.
PREVIEW_IMAGES_PER_JOB = 20
PREVIEW_MESHES_PER_JOB = 10
# Orbit ranges, as the engine checks them (engine/spec.py OrbitConfig): (key in job.json
# orbit, min setting, max setting, lowest, highest, whether `lowest` itself is excluded).
# The radius must exceed 1.75 so the camera stays outside the object cube [-1,1]^3.
ORBIT_RANGES = (
    ("radius", "radius_min", "radius_max", 1.75, 1000.0, True),
    ("elevation_deg", "elevation_min", "elevation_max", -90.0, 90.0, False),
    ("azimuth_deg", "azimuth_min", "azimuth_max", -360.0, 360.0, False),
    ("fov_deg", "fov_min", "fov_max", 1.0, 150.0, False),
)
_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+|mps)$")


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
    """The text the object should match (text methods), or the style (nerf_art)."""
    negative_prompt: str = ""
    """What the object should not look like (methods with diffusion guidance)."""
    method: str = "dream_fields"
    """Method, a key of QUALITY: TEXT_METHODS make an object from the prompt, CAPTURE_METHODS from a capture."""
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
    """nerf_art: a finished reconstruct or dietnerf job folder to restyle instead of reconstructing."""
    reconstruct_steps: int | None = None
    """nerf_art: reconstruction steps before the style steps; None = from the quality preset."""
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
    if s.method not in QUALITY:
        raise SettingsError("method", f"unknown method {s.method!r}; choose one of {', '.join(METHODS)}")
    if s.quality not in QUALITIES:
        raise SettingsError("quality", f"unknown preset {s.quality!r}; choose one of {', '.join(QUALITIES)}")
    preset = QUALITY[s.method].get(s.quality)
    values = {}
    for key in ("steps", "render_size", "mesh_resolution"):
        value = getattr(s, key)
        if value is None and preset is None:
            raise SettingsError(key, "the custom quality needs steps, render_size and mesh_resolution")
        values[key] = getattr(preset, key) if value is None else value
    # The preset's reconstruction applies unless the steps are given (as a setting or an
    # option) or a source job is the reconstruction.
    given_as_option = isinstance(s.options, Mapping) and "reconstruct_steps" in s.options
    if s.reconstruct_steps is not None:
        values["reconstruct_steps"] = s.reconstruct_steps
    elif preset is not None and not s.source_job and not given_as_option:
        values["reconstruct_steps"] = preset.reconstruct_steps
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
    if s.negative_prompt.strip():
        job["negative_prompt"] = s.negative_prompt.strip()
    if s.samples_per_ray is not None:
        _check_int("samples_per_ray", s.samples_per_ray, 4, 1024)
        job["render"]["samples_per_ray"] = s.samples_per_ray
    orbit = _orbit(s)
    if orbit:
        job["orbit"] = orbit
    models = _models(s.models)
    if models:
        job["models"] = models
    job["allow_downloads"] = bool(s.allow_downloads)
    job["export"] = _export(s, q)
    # The engine counts a NeRF-Art run's steps from the first reconstruction step.
    total = q.steps + (q.reconstruct_steps or 0)
    job["preview_every"] = max(1, total // PREVIEW_IMAGES_PER_JOB)
    job["preview_mesh_every"] = max(1, total // PREVIEW_MESHES_PER_JOB) if s.live_preview else 0
    options = _options(s, q)
    if options:
        job["options"] = options
    return job


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
    if s.method == "nerf_art" and not s.prompt.strip():
        raise SettingsError("prompt", "is empty; describe the style, e.g. 'a bronze statue'")
    if s.method in CAPTURE_METHODS and s.method != "nerf_art" and s.prompt.strip():
        raise SettingsError("prompt", f"{s.method} fits the capture's photos and takes no prompt; "
                            "nerf_art restyles with one")
    if s.method in TEXT_METHODS and not s.prompt.strip():
        raise SettingsError("prompt", "is empty; describe the object to generate")


def _inputs(s: Settings) -> dict:
    """inputs.capture (absolute) and inputs.source_job, checked to exist."""
    if s.method not in CAPTURE_METHODS:
        for key in ("capture", "source_job", "reconstruct_steps"):
            if getattr(s, key) not in ("", None):
                raise SettingsError(key, f"{s.method} generates from text; only {', '.join(CAPTURE_METHODS)} "
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
        if s.method != "nerf_art":
            raise SettingsError("source_job", f"only nerf_art restyles a finished job, not {s.method}")
        source = Path(s.source_job.strip()).expanduser().resolve()
        if not (source / "job.json").is_file():
            raise SettingsError("source_job", f"{source} is not a job folder (no job.json)")
        if s.reconstruct_steps is not None:
            raise SettingsError("reconstruct_steps", "the source job is the reconstruction; leave it unset")
        inputs["source_job"] = str(source)
    if s.reconstruct_steps is not None and s.method != "nerf_art":
        raise SettingsError("reconstruct_steps", f"only nerf_art reconstructs before restyling, not {s.method}")
    return inputs


def _options(s: Settings, q: Quality) -> dict:
    """job.json options: the named settings' and any others passed through, never both for one key."""
    if not isinstance(s.options, Mapping) or not all(isinstance(k, str) for k in s.options):
        raise SettingsError("options", f"must map option names to values (got {s.options!r})")
    named: dict[str, Any] = {}
    if s.guidance_scale is not None or s.t_range_min is not None or s.t_range_max is not None:
        if s.method not in DIFFUSION_METHODS:
            key = next(k for k in ("guidance_scale", "t_range_min", "t_range_max") if getattr(s, k) is not None)
            raise SettingsError(key, f"only {', '.join(DIFFUSION_METHODS)} uses it (method is {s.method})")
    if s.guidance_scale is not None:
        scale = _check_number("guidance_scale", s.guidance_scale)
        if scale < 0:
            raise SettingsError("guidance_scale", f"must be >= 0 (got {scale:g})")
        named["guidance_scale"] = scale
    if s.t_range_min is not None or s.t_range_max is not None:
        lo = T_RANGE_DEFAULT[0] if s.t_range_min is None else _check_number("t_range_min", s.t_range_min)
        hi = T_RANGE_DEFAULT[1] if s.t_range_max is None else _check_number("t_range_max", s.t_range_max)
        for key, value in (("t_range_min", lo), ("t_range_max", hi)):
            if not 0 <= value < 1:
                raise SettingsError(key, f"must be a fraction in [0, 1) (got {value:g})")
        if lo > hi:
            raise SettingsError("t_range_min", f"is greater than t_range_max ({lo:g} > {hi:g})")
        named["t_range"] = [lo, hi]
    if q.reconstruct_steps is not None:
        _check_int("reconstruct_steps", q.reconstruct_steps, 0, 1_000_000)
        named["reconstruct_steps"] = q.reconstruct_steps
    both = sorted(set(named) & set(s.options))
    if both:
        raise SettingsError(f"options.{both[0]}", "is also a setting of its own; give it once")
    return {**s.options, **named}


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
