"""job.json (spec_version 1) -> frozen dataclasses, validated once at the boundary.

Imports neither torch nor any model library, so a bad job is refused in milliseconds and
the add-on shares the rules. Every error is `invalid_job` and names the key (dotted path)
and the value. Each method's defaults, options and needs come from its card
(engine/methods/NAME/__init__.py); the option sections methods share from engine/options.py.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from .errors import EngineError, invalid_job
from .methods import CARDS, get_card
from .models.registry import DEFAULT_MODELS
from .options import BACKBONES, LEGACY_OPTION_KEYS

SPEC_VERSION = 1
RENDER_SIZE_MULTIPLE = 8
EXPORT_FORMATS = ("npz", "glb")
DEVICE_PATTERN = r"^(auto|cpu|cuda|cuda:\d+|mps)$"
"""job.json `device`: the values the engine understands."""
_DEVICE_RE = re.compile(DEVICE_PATTERN)
MIN_CAMERA_RADIUS = 1.75
"""orbit.radius must exceed this: the cube [-1,1]^3's corners are 1.73 from its centre, and a camera inside
the cube sees the field from within."""
MODEL_ROLES = tuple(DEFAULT_MODELS)
"""job.json `models` keys: the roles a method's card may name (engine/models/registry.py)."""


@dataclass(frozen=True)
class RenderConfig:
    size: int
    """Square render size in pixels during optimisation; a multiple of 8."""
    samples_per_ray: int
    """Stratified samples along each ray inside the object cube."""

    def validate(self, key: str) -> None:
        _check(self.size % RENDER_SIZE_MULTIPLE == 0 and 8 <= self.size <= 1024, f"{key}.size", self.size,
               f"must be a multiple of {RENDER_SIZE_MULTIPLE} between 8 and 1024")
        _check(4 <= self.samples_per_ray <= 1024, f"{key}.samples_per_ray", self.samples_per_ray,
               "must be between 4 and 1024")


@dataclass(frozen=True)
class OrbitConfig:
    radius: tuple[float, float]
    """Camera distance from look_at, [min, max], in units of the object cube's half side."""
    elevation_deg: tuple[float, float]
    """Camera elevation above the XY plane, [min, max] degrees, within [-90, 90]."""
    azimuth_deg: tuple[float, float]
    """Camera azimuth, [min, max] degrees; 0 = front (camera on -Y), 90 = right (camera on +X)."""
    fov_deg: tuple[float, float]
    """Field of view of the square image, [min, max] degrees."""
    look_at: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """World point the cameras look at; the object is made in the cube [-1,1]^3 around it."""

    def validate(self, key: str) -> None:
        for name in ("radius", "elevation_deg", "azimuth_deg", "fov_deg"):
            lo, hi = getattr(self, name)
            _check(lo <= hi, f"{key}.{name}", [lo, hi], "min is greater than max")
        _check(self.radius[0] > MIN_CAMERA_RADIUS, f"{key}.radius", list(self.radius),
               f"min must be > {MIN_CAMERA_RADIUS} so the camera stays outside the object cube [-1,1]^3")
        _check(-90 <= self.elevation_deg[0] and self.elevation_deg[1] <= 90, f"{key}.elevation_deg",
               list(self.elevation_deg), "must lie within [-90, 90]")
        _check(self.azimuth_deg[1] - self.azimuth_deg[0] <= 360, f"{key}.azimuth_deg", list(self.azimuth_deg),
               "spans more than 360 degrees")
        _check(1 <= self.fov_deg[0] and self.fov_deg[1] <= 150, f"{key}.fov_deg", list(self.fov_deg),
               "must lie within [1, 150]")


@dataclass(frozen=True)
class ExportConfig:
    resolution: int = 256
    """Marching-cubes grid resolution per axis over the object cube."""
    threshold: float | str = "auto"
    """Density iso-level, or "auto": where one render sample is half opaque, ln(2) * samples_per_ray / 2
    (a field that never gets that dense is fog: its 99.5th percentile density, with a warning)."""
    texture_size: int = 0
    """Side of the baked UV albedo texture; 0 = vertex colours only."""
    formats: tuple[str, ...] = EXPORT_FORMATS
    """Files to write into result/: "npz" (always, the add-on reads it) and "glb"."""
    max_faces: int = 250_000
    """A larger mesh is decimated (quadric edge collapse) to about this many triangles before it is
    coloured and unwrapped (xatlas slows down sharply past ~250k faces); 0 = never."""

    def validate(self, key: str) -> None:
        _check(16 <= self.resolution <= 1024, f"{key}.resolution", self.resolution, "must be between 16 and 1024")
        if isinstance(self.threshold, str):
            _check(self.threshold == "auto", f"{key}.threshold", self.threshold, 'must be a number or "auto"')
        else:
            _check(self.threshold > 0, f"{key}.threshold", self.threshold, "must be > 0")
        _check(self.texture_size == 0 or 64 <= self.texture_size <= 8192, f"{key}.texture_size",
               self.texture_size, "must be 0 (vertex colours only) or between 64 and 8192")
        for f in self.formats:
            _check(f in EXPORT_FORMATS, f"{key}.formats", f, f"unknown format; known: {list(EXPORT_FORMATS)}")
        _check("npz" in self.formats, f"{key}.formats", list(self.formats), '"npz" is required (the add-on reads it)')
        _check(self.max_faces == 0 or self.max_faces >= 100, f"{key}.max_faces", self.max_faces,
               "must be 0 (never decimate) or at least 100")


@dataclass(frozen=True)
class InputsConfig:
    capture: str | None = None
    """Path of a capture: a folder with transforms.json (or NeRF-synthetic transforms_train.json), or the
    JSON file itself (capture methods only); relative to the job folder. Checked when the job runs
    (capture_invalid)."""
    source_job: str | None = None
    """A finished job folder whose latest checkpoint this job starts from (methods whose card names
    source_methods, e.g. NeRF-Art restyling a reconstruction), relative to the job folder; null = start
    from the capture."""

    def validate(self, key: str) -> None:
        for name in ("capture", "source_job"):
            value = getattr(self, name)
            _check(value is None or value.strip() != "", f"{key}.{name}", value, "must be a non-empty path or null")


@dataclass(frozen=True)
class JobSpec:
    method: str
    """Which method runs: a key of engine.methods.CARDS."""
    prompt: str
    """Text prompt (text methods) or style prompt (restyling methods)."""
    negative_prompt: str
    """What to steer away from (guidance that supports it)."""
    seed: int
    """Seed of every random choice; a fixed seed gives the same result on the CPU."""
    steps: int
    """Optimisation steps."""
    device: str
    """"auto", "cpu", "cuda", "cuda:N" or "mps"."""
    render: RenderConfig
    orbit: OrbitConfig
    models: dict[str, str]
    """Guidance models by role ("clip", "diffusion", ...): open_clip NAME/TAG, hub id or local path (relative
    to the job folder when it exists there)."""
    allow_downloads: bool
    """False = never touch the network; a missing model is a model_missing error."""
    export: ExportConfig
    preview_every: int
    """Write a PNG preview every this many steps (0 = never)."""
    checkpoint_every: int
    """Write a checkpoint every this many steps (0 = only on cancel and at the end)."""
    preview_mesh_every: int
    """Write a coarse intermediate mesh every this many steps (0 = never)."""
    inputs: InputsConfig
    options: Any
    """Method-specific settings: the frozen dataclass of the method's card (engine/methods/NAME/__init__.py)."""
    budget_s: float | None = None
    """Wall-clock seconds the run may take, from its start to its exported mesh, on the machine it runs on: the
    run fits its steps into it (at most `steps`) and stops in time to export; null = no budget, run every step."""
    spec_version: int = SPEC_VERSION

    def to_dict(self) -> dict:
        """The fully resolved job, defaults included (written to checkpoints for resume checks)."""
        return _to_jsonable(self)


# Job keys that may change between a run and its --resume: they do not alter the optimisation (a budget only
# shortens it; the resumed run keeps the schedule the checkpoint recorded).
RESUMABLE_CHANGES = ("steps", "device", "export", "preview_every", "checkpoint_every", "preview_mesh_every",
                     "budget_s")


def saved_job(saved: dict) -> dict:
    """A job as a checkpoint (or a `started` event) saved it, read as today's parser reads it: checkpoints of
    older engines saved the job in its old layout (flat options). Unchanged when it no longer parses."""
    try:
        return parse_job(saved).to_dict()
    except EngineError:
        return saved


def job_changes(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """The job keys that differ between a checkpoint's job (`saved`, as checkpoints/latest.json holds it; see
    saved_job) and the job now (`current`, JobSpec.to_dict()): [(key, saved value, current value)], sorted by
    key."""
    saved = saved_job(saved)
    return [(key, saved.get(key), current.get(key)) for key in sorted(set(saved) | set(current))
            if saved.get(key) != current.get(key)]


def changes_refusing_resume(saved: dict, current: dict) -> list[tuple[str, Any, Any]]:
    """job_changes outside RESUMABLE_CHANGES: [] when `run --resume` may continue from that checkpoint."""
    return [change for change in job_changes(saved, current) if change[0] not in RESUMABLE_CHANGES]


def load_job(job_dir: Path) -> JobSpec:
    """Read and validate JOB_DIR/job.json."""
    path = Path(job_dir) / "job.json"
    if not path.is_file():
        raise EngineError("invalid_job", f"no job.json in {job_dir}",
                          "write a job.json (docs/ARCHITECTURE.md, 'The job folder') or check the path")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EngineError("invalid_job", f"job.json is not valid JSON: {e}", "fix the syntax of job.json") from None
    return resolve_paths(parse_job(raw), Path(job_dir))


def resolve_paths(spec: JobSpec, job_dir: Path) -> JobSpec:
    """The job with its relative paths read against its job folder, so that a folder prepared on one machine
    runs on another (a batch on a cluster) whatever the working directory: `inputs.capture` and
    `inputs.source_job` when relative, and each `models` value that names a file or folder inside the job
    folder's reach (others stay as written: hub ids and open_clip NAME/TAG). Paths become absolute."""
    def against(value: str | None) -> str | None:
        if value is None or Path(value).expanduser().is_absolute() or value.startswith("~"):
            return value
        return os.path.abspath(job_dir / value)

    models = {role: against(name) if (job_dir / name).exists() else name for role, name in spec.models.items()}
    inputs = dataclasses.replace(spec.inputs, capture=against(spec.inputs.capture),
                                 source_job=against(spec.inputs.source_job))
    return dataclasses.replace(spec, inputs=inputs, models=models)


def parse_job(raw: Any) -> JobSpec:
    """Validate a job.json object; errors name the offending key and value."""
    if not isinstance(raw, dict):
        raise invalid_job("job.json", type(raw).__name__, "must be a JSON object")
    for key in ("spec_version", "method"):
        if key not in raw:
            raise invalid_job(key, None, "is required", hint=f'add "{key}" to job.json')
    _check(raw["spec_version"] == SPEC_VERSION and type(raw["spec_version"]) is int, "spec_version",
           raw["spec_version"], f"this engine reads spec_version {SPEC_VERSION}")
    method = raw["method"]
    if not isinstance(method, str):
        raise invalid_job("method", method, "must be a string", hint=f"available methods: {sorted(CARDS)}")
    card = get_card(method)
    defaults = card.defaults

    known = {f.name for f in fields(JobSpec)}
    for key in raw:
        if key not in known:
            raise invalid_job(key, raw[key], "unknown key", hint=f"known keys: {sorted(known)}")

    values: dict[str, Any] = {}
    hints = typing.get_type_hints(JobSpec)
    for f in fields(JobSpec):
        name = f.name
        if name in ("render", "orbit", "export", "inputs"):
            section_cls = hints[name]
            values[name] = _parse_section(section_cls, raw.get(name, {}), name, defaults.get(name, {}))
        elif name == "options":
            values[name] = _parse_section(card.options, upgrade_options(raw.get(name, {}), card.options), name, {})
        elif name == "models":
            values[name] = _parse_models(raw.get(name, {}))
        elif name in raw:
            values[name] = _coerce(hints[name], raw[name], name)
        elif name in defaults:
            values[name] = defaults[name]
        elif name in _TOP_DEFAULTS:
            values[name] = _TOP_DEFAULTS[name]
        elif name != "spec_version":
            raise invalid_job(name, None, "is required", hint=f'add "{name}" to job.json')
    spec = JobSpec(**values)
    _validate_top(spec, needs_prompt=card.takes_prompt)
    if card.input == "capture":
        _check(spec.inputs.capture is not None, "inputs.capture", None,
               f"method {method} needs a capture: a folder with transforms.json")
    else:
        _check(spec.inputs.capture is None and spec.inputs.source_job is None, "inputs", raw.get("inputs"),
               f"method {method} takes no inputs")
    if spec.inputs.source_job is not None:
        starts = [name for name, c in CARDS.items() if c.source_methods]
        _check(bool(card.source_methods), "inputs.source_job", spec.inputs.source_job,
               f"only {' and '.join(starts)} start{'s' if len(starts) == 1 else ''} from a job")
    return spec


def upgrade_options(raw: Any, options_cls: type) -> Any:
    """job.json options written for engines before the nested sections -> today's keys, for a method whose
    options dataclass is `options_cls`.

    Flat field and empty-space keys (`hash_levels`, `occupancy_resolution`, ...) move into
    `field` / `occupancy`; Dream Fields' `"field": "mlp"` becomes `field.backbone`; NeRF-Art's
    `lambda_weight_reg` is `style_lambda_distortion`. Only keys whose new home the method has move
    (others stay, to be refused as unknown under the name the job used). A key given both ways is an
    error naming the new one.
    """
    if not isinstance(raw, dict):
        return raw
    homes = {f.name for f in fields(options_cls)}
    out = dict(raw)
    if isinstance(out.get("field"), str):
        if out["field"] not in BACKBONES:
            raise invalid_job("options.field", out["field"], 'must be an object, e.g. {"backbone": "hashgrid"}',
                              hint='set options.field.backbone to "hashgrid" or "mlp"')
        out["field"] = {"backbone": out["field"]}
    for old, path in LEGACY_OPTION_KEYS.items():
        if old not in out or path[0] not in homes:
            continue
        value = out.pop(old)
        target = out
        if len(path) == 2:
            current = out.get(path[0], {})
            if not isinstance(current, dict):
                raise invalid_job(f"options.{path[0]}", current, "must be a JSON object")
            target = out[path[0]] = dict(current)
        new = "options." + ".".join(path)
        if path[-1] in target:
            raise invalid_job(new, target[path[-1]], f"is also given under its old name options.{old}",
                              hint=f"give it once, as {new}")
        target[path[-1]] = value
    return out


def job_warnings(raw: dict) -> list[str]:
    """What a valid job.json asks for that the method will not do, or says the old way: settings it ignores
    (a prompt for a method without one, a model role it does not load) and option keys of older engines."""
    card = get_card(raw["method"])
    warnings = []
    if not card.takes_prompt and str(raw.get("prompt", "")).strip():
        warnings.append(f"prompt is ignored: {card.name} takes no prompt")
    if "diffusion" not in card.roles and str(raw.get("negative_prompt", "")).strip():
        warnings.append(f"negative_prompt is ignored: {card.name} has no diffusion guidance")
    for role in raw.get("models", {}):
        if role not in card.roles:
            warnings.append(f"models.{role} is not used by {card.name} (it loads: {', '.join(card.roles) or 'none'})")
    options = raw.get("options", {})
    homes = {f.name for f in fields(card.options)}
    for old, path in LEGACY_OPTION_KEYS.items():
        if old in options and path[0] in homes:
            warnings.append(f"options.{old} is the old name of options.{'.'.join(path)}; it still works")
    if isinstance(options.get("field"), str):
        warnings.append(f'options.field "{options["field"]}" is the old form of options.field.backbone; it still works')
    return warnings


_TOP_DEFAULTS: dict[str, Any] = {
    "negative_prompt": "",
    "seed": 0,
    "device": "auto",
    "allow_downloads": False,
    "preview_every": 100,
    "checkpoint_every": 500,
    "preview_mesh_every": 0,
    "prompt": "",
    "budget_s": None,
}


def _validate_top(spec: JobSpec, needs_prompt: bool) -> None:
    if needs_prompt:
        _check(spec.prompt.strip() != "", "prompt", spec.prompt, f"method {spec.method} needs a non-empty prompt")
    _check(0 <= spec.seed < 2**63, "seed", spec.seed, "must be between 0 and 2^63-1")
    _check(1 <= spec.steps <= 1_000_000, "steps", spec.steps, "must be between 1 and 1000000")
    _check(bool(_DEVICE_RE.match(spec.device)), "device", spec.device, 'must be "auto", "cpu", "cuda", "cuda:N" or "mps"')
    for name in ("preview_every", "checkpoint_every", "preview_mesh_every"):
        _check(getattr(spec, name) >= 0, name, getattr(spec, name), "must be >= 0")
    _check(spec.budget_s is None or spec.budget_s > 0, "budget_s", spec.budget_s,
           "must be a number of seconds > 0, or null for no time budget")


def _parse_models(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise invalid_job("models", raw, "must be an object mapping a role to a model name")
    for role, name in raw.items():
        if role not in MODEL_ROLES:
            raise invalid_job(f"models.{role}", name, "unknown model role",
                              hint="known roles: " + ", ".join(f'"{r}"' for r in MODEL_ROLES))
        if not isinstance(name, str) or not name.strip():
            raise invalid_job(f"models.{role}", name, "must be a non-empty string (hub id, NAME/TAG or local path)")
    return dict(raw)


def _parse_section(cls: type, raw: Any, key: str, defaults: dict) -> Any:
    """Build a section dataclass from its JSON object: unknown keys and wrong types are errors."""
    if not isinstance(raw, dict):
        raise invalid_job(key, raw, "must be a JSON object")
    names = {f.name: f for f in fields(cls)}
    for k in raw:
        if k not in names:
            raise invalid_job(f"{key}.{k}", raw[k], "unknown key", hint=f"known keys of {key}: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in names.items():
        if name in raw and dataclasses.is_dataclass(hints[name]):
            # A nested section (options.field, options.occupancy): its defaults are the method's.
            nested = _default(f)
            base = {} if nested is MISSING else {g.name: getattr(nested, g.name) for g in fields(nested)}
            values[name] = _parse_section(hints[name], raw[name], f"{key}.{name}", base)
        elif name in raw:
            values[name] = _coerce(hints[name], raw[name], f"{key}.{name}")
        elif name in defaults:
            values[name] = defaults[name]
        elif _default(f) is not MISSING:
            continue
        else:
            raise invalid_job(f"{key}.{name}", None, "is required")
    obj = cls(**values)
    obj.validate(key)
    return obj


def _default(f: dataclasses.Field) -> Any:
    """A dataclass field's default, from `default` or `default_factory`; MISSING when it has none."""
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else MISSING


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; tuples come from JSON lists."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for alt in args:
            if alt is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(alt, value, key)
            except EngineError as e:
                errors.append(e)
        names = " or ".join("null" if a is type(None) else _type_name(a) for a in args)
        raise invalid_job(key, value, f"must be {names}")
    if origin is tuple:
        if not isinstance(value, list):
            raise invalid_job(key, value, f"must be a list of {len(args) if args[-1] is not Ellipsis else 'any number of'} values")
        if args[-1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise invalid_job(key, value, f"must be a list of {len(args)} values")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is bool:
        if not isinstance(value, bool):
            raise invalid_job(key, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_job(key, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid_job(key, value, "must be a number")
        if value != value or value in (float("inf"), float("-inf")):
            raise invalid_job(key, value, "must be a finite number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise invalid_job(key, value, "must be a string")
        return value
    raise TypeError(f"spec field {key} has an unsupported annotation {tp!r}")


def _type_name(tp: Any) -> str:
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _check(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise invalid_job(key, value, why)


def _to_jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_jsonable(v) for k, v in obj.items()}
    return obj
