"""Panel settings (Scene.text3d), the add-on preferences' values, and their mapping to jobspec.Settings.

The preferences class is preferences.py's, which draws through ui; the functions here take the
preferences as an argument, so neither this module nor ui imports it.

No `from __future__ import annotations` here: Blender reads property annotations as objects.
"""
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import jobspec, paths

# The methods, their names and tooltips come from the engine's method cards (engine/methods/).
METHOD_ITEMS = jobspec.method_items("text")
RESTYLE_METHOD_ITEMS = jobspec.method_items("capture")
QUALITY_ITEMS = [
    ("draft", "Draft", "Few steps, small renders: a quick look"),
    ("standard", "Standard", "A usable object"),
    ("high", "High", "The papers' full schedules; slow"),
    ("custom", "Custom", "Set steps, render size and mesh resolution yourself"),
]
# The panel's orbit, used once Custom Orbit is on, starts at Dream Fields' camera, the
# engine's default for it (engine/options.py): radius 4, elevation 30, full turn, FOV 33.
ORBIT_DEFAULTS = {"radius_min": 4.0, "radius_max": 4.0, "elevation_min": 30.0, "elevation_max": 30.0,
                  "azimuth_min": 0.0, "azimuth_max": 360.0, "fov_min": 33.0, "fov_max": 33.0}
ORBIT_KEYS = tuple(ORBIT_DEFAULTS)
QUALITY_KEYS = ("steps", "render_size", "mesh_resolution")
DEFAULT_METHOD, DEFAULT_RESTYLE_METHOD = "dream_fields", "nerf_art"
_standard = jobspec.preset(DEFAULT_METHOD, "standard")


def _dreamfusion_default(option: str):
    """DreamFusion's default of an option its widgets start at (the engine's DreamFusionOptions)."""
    return jobspec.option_default("dreamfusion", option)


# The Restyle section's settings of the methods that have them as options (latent_edit's LatentEditOptions).
EDIT_KEYS = ("keep_original", "face")
BUDGET_DEFAULT_MIN = 10.0
BUDGET_DESCRIPTION = ("Minutes the job may take on this machine, export included: the engine fits its steps into "
                      "them and stops in time; 0 = no budget, every step runs")


class Text3DSettings(bpy.types.PropertyGroup):
    """What the next job asks for (Scene.text3d)."""

    prompt: StringProperty(name="Prompt", description="The text the object should match")
    negative_prompt: StringProperty(name="Negative Prompt",
                                    description="What the object should not look like (DreamFusion)")
    method: EnumProperty(name="Method", items=METHOD_ITEMS, default=DEFAULT_METHOD,
                         description="Text-to-3D method")
    quality: EnumProperty(name="Quality", items=QUALITY_ITEMS, default="standard",
                          description="Preset for steps, render size and mesh resolution")
    steps: IntProperty(name="Steps", description="Optimisation steps (Custom quality)",
                       default=_standard.steps, min=1, soft_max=20000)
    render_size: IntProperty(name="Render Size", description="Training render size in pixels, a multiple "
                             "of 8 (Custom quality)", default=_standard.render_size, min=8, max=1024, step=8)
    mesh_resolution: IntProperty(name="Mesh Resolution", description="Marching-cubes grid of the exported "
                                 "mesh (Custom quality)", default=_standard.mesh_resolution, min=16, max=1024)
    seed: IntProperty(name="Seed", description="Random seed; the same seed gives the same object", min=0)
    custom_budget: BoolProperty(name="Time Budget", default=False,
                                description="Set the time budget yourself instead of taking the quality preset's")
    budget_minutes: FloatProperty(name="Minutes", default=BUDGET_DEFAULT_MIN, min=0.0, soft_max=120.0,
                                  description=BUDGET_DESCRIPTION)
    live_preview: BoolProperty(name="Live Preview", default=True,
                               description="Show a coarse mesh in the viewport while the job runs")
    custom_orbit: BoolProperty(name="Custom Orbit", default=False,
                               description="Use the camera orbit below instead of the method's defaults")
    radius_min: FloatProperty(name="Radius Min", description="Nearest camera distance", unit="LENGTH",
                              default=ORBIT_DEFAULTS["radius_min"], min=1.76, soft_max=20.0)
    radius_max: FloatProperty(name="Radius Max", description="Farthest camera distance", unit="LENGTH",
                              default=ORBIT_DEFAULTS["radius_max"], min=1.76, soft_max=20.0)
    elevation_min: FloatProperty(name="Elevation Min", description="Lowest camera elevation in degrees",
                                 default=ORBIT_DEFAULTS["elevation_min"], min=-90.0, max=90.0)
    elevation_max: FloatProperty(name="Elevation Max", description="Highest camera elevation in degrees",
                                 default=ORBIT_DEFAULTS["elevation_max"], min=-90.0, max=90.0)
    azimuth_min: FloatProperty(name="Azimuth Min", description="Start of the azimuth range in degrees",
                               default=ORBIT_DEFAULTS["azimuth_min"], min=-360.0, max=360.0)
    azimuth_max: FloatProperty(name="Azimuth Max", description="End of the azimuth range in degrees",
                               default=ORBIT_DEFAULTS["azimuth_max"], min=-360.0, max=360.0)
    fov_min: FloatProperty(name="FOV Min", description="Narrowest vertical field of view in degrees",
                           default=ORBIT_DEFAULTS["fov_min"], min=1.0, max=150.0)
    fov_max: FloatProperty(name="FOV Max", description="Widest vertical field of view in degrees",
                           default=ORBIT_DEFAULTS["fov_max"], min=1.0, max=150.0)
    texture_size: IntProperty(name="Texture Size", description="Baked albedo texture in pixels; "
                              "0 = vertex colours only", default=0, min=0, max=8192)
    guidance_scale: FloatProperty(name="Guidance Scale", default=_dreamfusion_default("guidance_scale"), min=0.0,
                                  soft_max=200.0,
                                  description="Classifier-free guidance scale (DreamFusion): the paper's 100; "
                                  "7.5, as for images, gives blobs")
    t_range_min: FloatProperty(name="Timestep Min", default=_dreamfusion_default("t_range")[0], min=0.0, max=0.999,
                               description="Smallest diffusion timestep, a fraction of the scheduler's (DreamFusion)")
    t_range_max: FloatProperty(name="Timestep Max", default=_dreamfusion_default("t_range")[1], min=0.0, max=0.999,
                               description="Largest diffusion timestep, a fraction of the scheduler's (DreamFusion)")
    capture_path: StringProperty(name="Capture", subtype="DIR_PATH",
                                 description="Capture folder with transforms.json (Capture Selected or "
                                 "Import Capture fill it in)")
    restyle_method: EnumProperty(name="Method", items=RESTYLE_METHOD_ITEMS, default=DEFAULT_RESTYLE_METHOD,
                                 description="What to do with the capture")
    style_prompt: StringProperty(name="Style", description="Restyle: the style the restyled object should have; "
                                 "Edit (latent): the edited object")
    restyle_quality: EnumProperty(name="Quality", items=QUALITY_ITEMS[:3], default="standard",
                                  description="Preset for steps, render size and mesh resolution")
    restyle_custom_budget: BoolProperty(name="Time Budget", default=False,
                                        description="Set the time budget yourself instead of taking the quality "
                                        "preset's")
    restyle_budget_minutes: FloatProperty(name="Minutes", default=BUDGET_DEFAULT_MIN, min=0.0, soft_max=120.0,
                                          description=BUDGET_DESCRIPTION)
    keep_original: FloatProperty(name="Keep the Original", default=jobspec.option_default("latent_edit",
                                 "keep_original"), min=0.0, max=100.0, soft_min=0.0, soft_max=4.0,
                                 description="Edit (latent): how strongly the edit holds to the original; "
                                 "multiplies the reconstruction and identity losses (0 = a pure edit toward the "
                                 "prompt, higher = closer to the capture)")
    face: BoolProperty(name="Face", default=jobspec.option_default("latent_edit", "face"),
                       description="Edit (latent): the capture is a face, so a face recogniser (not CLIP) holds "
                       "the edit to the same identity")


def panel_settings(s: Text3DSettings) -> dict:
    """The jobspec settings the panel stands for: presets and method defaults stay None."""
    values = {k: getattr(s, k) for k in ("prompt", "negative_prompt", "method", "quality", "seed",
                                         "live_preview", "texture_size")}
    if s.quality == "custom":
        values.update({k: getattr(s, k) for k in QUALITY_KEYS})
    if s.custom_orbit:
        values.update({k: getattr(s, k) for k in ORBIT_KEYS})
    if s.custom_budget:
        values["budget_s"] = budget_seconds(s.budget_minutes)
    if jobspec.uses_diffusion(s.method):
        # Left to the engine's defaults until the user sets them; the range goes as a pair,
        # since the panel shows both ends.
        if s.is_property_set("guidance_scale"):
            values["guidance_scale"] = _float32(s.guidance_scale)
        if s.is_property_set("t_range_min") or s.is_property_set("t_range_max"):
            values.update(t_range_min=_float32(s.t_range_min), t_range_max=_float32(s.t_range_max))
    else:
        values["negative_prompt"] = ""  # hidden in the panel, so it must not act
    return values


def restyle_settings(s: Text3DSettings, method: str | None = None) -> dict:
    """The jobspec settings of the panel's Restyle section, for `method` (None = the section's own)."""
    method = method or s.restyle_method
    values = {"capture": bpy.path.abspath(s.capture_path) if s.capture_path else "",
              "method": method, "quality": s.restyle_quality,
              "prompt": s.style_prompt if jobspec.takes_prompt(method) else "",  # hidden otherwise
              **{k: getattr(s, k) for k in ("seed", "live_preview", "texture_size")}}
    if s.restyle_custom_budget:
        values["budget_s"] = budget_seconds(s.restyle_budget_minutes)
    # Only for a method that has them (shown only then), and left to the engine's defaults until set.
    for key in EDIT_KEYS:
        if key in jobspec.option_names(method) and s.is_property_set(key):
            value = getattr(s, key)
            values[key] = _float32(value) if isinstance(value, float) else value
    return values


def budget_seconds(minutes: float) -> float:
    """A budget property's minutes as the job's seconds (to a tenth: the property is a float32); 0 = none."""
    return round(minutes * 60, 1)


def _float32(value: float) -> float:
    """A float property's value as typed: Blender stores float32, so 0.02 reads back as 0.0199999995."""
    return float(f"{value:.6g}")


def preferences() -> bpy.types.AddonPreferences | None:
    """The add-on's preferences, None when it is registered without being enabled."""
    addon = bpy.context.preferences.addons.get(__package__)
    return addon.preferences if addon else None


def engine_python(prefs: bpy.types.AddonPreferences | None) -> str:
    """The configured engine Python, else the one install/ creates."""
    if prefs and prefs.engine_python:
        return bpy.path.abspath(prefs.engine_python)
    return str(paths.default_engine_python())


def jobs_dir(prefs: bpy.types.AddonPreferences | None) -> Path:
    """The configured jobs folder, else one in the extension's user folder (or TEXT3D_HOME)."""
    if prefs and prefs.jobs_dir:
        return Path(bpy.path.abspath(prefs.jobs_dir))
    try:
        return Path(bpy.utils.extension_path_user(__package__, path="jobs", create=True))
    except ValueError:  # enabled as a legacy add-on, not as an extension
        return paths.text3d_home() / "jobs"


def preference_settings(prefs: bpy.types.AddonPreferences | None) -> dict:
    """The jobspec settings that come from the preferences."""
    allow = not downloads_refusal(prefs)
    if prefs is None:
        return {"allow_downloads": allow}
    models = {"clip": prefs.clip_model, "diffusion": prefs.diffusion_model, "perceptual": prefs.perceptual_model}
    return {"device": prefs.device, "models": {k: v for k, v in models.items() if v.strip()},
            "allow_downloads": allow}


def downloads_refusal(prefs: bpy.types.AddonPreferences | None) -> str:
    """Why the engine may not download models, with how to allow it; '' when it may."""
    mode = prefs.downloads if prefs else "FOLLOW"
    if mode == "NEVER":
        return "Downloads are set to Never: set Downloads to Allow in Preferences > Add-ons > Text3D"
    if mode == "FOLLOW" and not bpy.app.online_access:
        return ("Blender's Allow Online Access is off: turn it on in Preferences > System > Network, "
                "or set Downloads to Allow in Preferences > Add-ons > Text3D")
    return ""


classes = (Text3DSettings,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.text3d = bpy.props.PointerProperty(type=Text3DSettings)


def unregister():
    del bpy.types.Scene.text3d
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
