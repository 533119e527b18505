"""The panel and the engine agree, both ways: every method the engine's cards name is in the panel's menus,
and every panel setting, for every method and preset, makes a job the engine's own parser accepts."""
from __future__ import annotations

import bpy  # noqa: F401 - the panel's property groups need Blender
from addon_support import make_capture

from blender_text3d import jobspec, props


def test_every_engine_method_is_in_the_panel(addon):
    panel = {name for name, _, _ in props.METHOD_ITEMS} | {name for name, _, _ in props.RESTYLE_METHOD_ITEMS}
    assert panel == set(jobspec.engine_methods.CARDS)
    assert {name for name, _, _ in props.METHOD_ITEMS} == set(jobspec.method_names("text"))
    assert {name for name, _, _ in props.RESTYLE_METHOD_ITEMS} == set(jobspec.method_names("capture"))


def _engine_accepts(job: dict) -> None:
    jobspec.engine_spec.parse_job(job)  # raises the engine's invalid_job, naming the key


PANEL_PROPERTIES = ("prompt", "negative_prompt", "style_prompt", "capture_path", "method", "quality", "custom_orbit",
                    "texture_size", "guidance_scale", "t_range_min", "t_range_max", "restyle_method", "restyle_quality",
                    "keep_original", "face", "custom_budget", "budget_minutes", "restyle_custom_budget",
                    "restyle_budget_minutes")


def test_every_panel_setting_makes_a_job_the_engine_accepts(scene, tmp_path):
    s = scene.text3d
    try:
        _check_every_setting(s, tmp_path)
    finally:  # the scene is shared with the other tests
        for name in PANEL_PROPERTIES:
            s.property_unset(name)


def _check_every_setting(s, tmp_path) -> None:
    capture = make_capture(tmp_path / "capture", views=4)
    s.prompt, s.negative_prompt, s.style_prompt, s.capture_path = "a red chair", "blurry", "a bronze statue", str(capture)
    s.keep_original, s.face = 4.0, True  # set: they go to the methods that have them, and only to those
    checked = 0
    for method, _, _ in props.METHOD_ITEMS:
        for quality, _, _ in props.QUALITY_ITEMS:
            for custom_orbit in (False, True):
                s.method, s.quality, s.custom_orbit, s.texture_size = method, quality, custom_orbit, 256
                s.custom_budget, s.budget_minutes = custom_orbit, 1.5  # a budget of the user's, or the preset's
                if jobspec.uses_diffusion(method):
                    s.guidance_scale, s.t_range_min, s.t_range_max = 7.5, 0.1, 0.9
                job = jobspec.build_job(jobspec.Settings(**props.panel_settings(s)))
                _engine_accepts(job)
                assert job["method"] == method and job["render"]["size"] % 8 == 0
                preset = jobspec.preset(method, quality)
                assert job.get("budget_s") == (90.0 if custom_orbit else preset and preset.budget_s)
                checked += 1
    for method, _, _ in props.RESTYLE_METHOD_ITEMS:
        for quality, _, _ in props.QUALITY_ITEMS[:3]:
            s.restyle_method, s.restyle_quality = method, quality
            s.restyle_custom_budget, s.restyle_budget_minutes = quality == "high", 0.5
            job = jobspec.build_job(jobspec.Settings(**props.restyle_settings(s)))
            _engine_accepts(job)
            preset = jobspec.preset(method, quality).budget_s
            assert job.get("budget_s") == (30.0 if quality == "high" else preset)
            assert job["inputs"]["capture"] == str(capture.resolve())
            assert ("prompt" in job) == jobspec.takes_prompt(method)
            edit = {k: v for k, v in job.get("options", {}).items() if k in ("keep_original", "face")}
            assert edit == ({"keep_original": 4.0, "face": True} if method == "latent_edit" else {})
            checked += 1
    assert checked == len(props.METHOD_ITEMS) * 8 + len(props.RESTYLE_METHOD_ITEMS) * 3
