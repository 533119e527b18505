"""The panel and preferences draw code, run against a recording layout: background Blender
has no window to draw into, but property names, operator ids and icons can be checked."""
from __future__ import annotations

import json
import sys
import types

import bpy
import pytest
from addon_support import FAKE_ROOT, drive, make_capture

from blender_text3d import api, jobspec, props, ui
from blender_text3d.jobs import MANAGER

ICONS = set(bpy.types.UILayout.bl_rna.functions["label"].parameters["icon"].enum_items.keys())
PROP_KEYWORDS = set(bpy.types.UILayout.bl_rna.functions["prop"].parameters.keys())


class Layout:
    """Records what a draw function asks for, and checks every name against Blender's."""

    def __init__(self, texts: list, ops: list | None = None, props: list | None = None, labels: dict | None = None):
        self.texts = texts
        self.ops = [] if ops is None else ops  # (idname, text, properties set on the button)
        self.props = [] if props is None else props  # names of the properties drawn
        self.labels = {} if labels is None else labels  # property name -> the text it is drawn with (None: its own)

    def _child(self, *args, **kwargs):
        return Layout(self.texts, self.ops, self.props, self.labels)

    row = column = box = _child

    def prop(self, data, name, text=None, **kwargs):
        assert name in data.bl_rna.properties, f"no property {name!r} on {data}"
        assert set(kwargs) <= PROP_KEYWORDS, kwargs
        self.props.append(name)
        self.labels[name] = text

    def label(self, text="", icon="NONE"):
        assert icon in ICONS, icon
        self.texts.append(text)

    def operator(self, idname, text="", icon="NONE"):
        assert icon in ICONS, icon
        module, name = idname.split(".")
        assert name in dir(getattr(bpy.ops, module)), idname
        button = types.SimpleNamespace()
        self.ops.append((idname, text, button))
        return button

    def progress(self, factor, type, text):
        assert 0.0 <= factor <= 1.0
        self.texts.append(text)

    def template_icon(self, icon_value, scale):
        self.texts.append(f"icon {icon_value}")


def draw_all(context) -> list[str]:
    texts = []
    for panel in ui.classes:
        fake_panel = types.SimpleNamespace(layout=Layout(texts))
        if hasattr(panel, "draw_header"):
            panel.draw_header(fake_panel, context)
        panel.draw(fake_panel, context)
    return texts


def test_panels_draw_in_every_job_state(scene, tmp_path, fake):
    assert "Generate" not in draw_all(bpy.context)  # the button is an operator, not a label
    scene.text3d.prompt = ""
    assert any("prompt: is empty" in t for t in draw_all(bpy.context))  # the reason is shown
    scene.text3d.property_unset("prompt")

    fake(step_s=0.05)
    common = dict(engine_python=sys.executable, engine_root=FAKE_ROOT, jobs_dir=tmp_path, render_size=32,
                  mesh_resolution=32)
    running = api.generate("a drawn chair", steps=200, **common)
    queued = api.generate("a waiting lamp", steps=5, **common)
    drive(running, until=lambda h: h.progress[0] >= 3 and h._job.preview_image is not None)
    assert tuple(running._job.preview_image.image_size) == (8, 8)  # the fake engine's PNG
    texts = draw_all(bpy.context)
    assert "a drawn chair" in texts and "a waiting lamp" in texts
    assert any("/200  ETA" in t for t in texts) and any(t.startswith("clip:") for t in texts)
    assert any(t.startswith("Generate ") and "/200" in t for t in texts)  # the method's phase

    running.cancel()
    queued.cancel()
    drive(running)
    failed = api.generate("a broken cup", steps=5, **{**common, "engine_python": tmp_path / "none"})
    drive(failed)
    texts = draw_all(bpy.context)
    assert any("engine_not_found" in t for t in texts) and any("Preferences" in t for t in texts)
    MANAGER.clear_finished()


@pytest.mark.parametrize("result", [{}, {"running": True},
                                    {"ok": False, "report": None, "error": "engine Python not found: /x"},
                                    {"ok": True, "error": "", "report": {
                                        "torch": "2.x", "devices": [{"name": "cpu"}, {"name": "cuda:0"}],
                                        "models": {"clip": {"name": "ViT-B-16/openai", "available": False}}}}])
def test_preferences_draw(addon, result, monkeypatch):
    from blender_text3d import props

    from blender_text3d.setup import SETUP

    monkeypatch.setattr(SETUP, "check", result)
    texts = []
    ui.draw_preferences(props.preferences(), Layout(texts))
    if result.get("ok"):
        assert "Engine ready" in texts and {"torch: 2.x", "devices: cpu, cuda:0"} <= set(texts)
        assert "models clip: ViT-B-16/openai MISSING" in texts
    elif "error" in result:
        assert "Engine not usable" in texts


def draw_panel(panel, context) -> Layout:
    layout = Layout([])
    panel.draw(types.SimpleNamespace(layout=layout), context)
    return layout


def test_dreamfusion_settings_appear_only_for_dreamfusion(scene):
    s = scene.text3d
    diffusion = {"negative_prompt", "guidance_scale", "t_range_min", "t_range_max"}
    try:
        assert not diffusion & set(draw_panel(ui.VIEW3D_PT_text3d, bpy.context).props)
        s.method = "dreamfusion"
        assert diffusion <= set(draw_panel(ui.VIEW3D_PT_text3d, bpy.context).props)
        assert (s.guidance_scale, round(s.t_range_min, 6), round(s.t_range_max, 6)) == (100.0, 0.02, 0.98)
        assert "options" not in jobspec.build_job(api.settings_for("a chair"))  # unchanged: the engine's defaults
        s.guidance_scale, s.t_range_max = 7.5, 0.5
        assert jobspec.build_job(api.settings_for("a chair"))["options"] == {"guidance_scale": 7.5,
                                                                            "t_range": [0.02, 0.5]}
        s.method = "dream_fields"  # hidden, so they must not act
        assert "options" not in jobspec.build_job(api.settings_for("a chair"))
    finally:
        for key in ("method", *diffusion):
            s.property_unset(key)


def test_restyle_section(scene, tmp_path):
    s = scene.text3d
    try:
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert {"capture_path", "restyle_method", "style_prompt", "restyle_quality"} <= set(layout.props)
        assert any(t.startswith("capture: is empty; capture the selected") for t in layout.texts)
        assert [op[0] for op in layout.ops] == ["text3d.capture_selected", "text3d.import_capture", "text3d.restyle"]
        s.capture_path = str(make_capture(tmp_path / "few", views=4))
        s.style_prompt = "a bronze statue"
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert "4 views" in layout.texts and any("DietNeRF is made for" in t for t in layout.texts)
        assert "500 + 100 style steps, 64 px, mesh 128" not in layout.texts  # standard, not draft
        assert "2000 + 400 style steps, 128 px, mesh 256" in layout.texts
        assert layout.ops[-1][1] == "Restyle"
        s.restyle_method = "dietnerf"
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert "style_prompt" not in layout.props and layout.ops[-1][1] == "Reconstruct"
        assert not any("DietNeRF is made for" in t for t in layout.texts)
        assert "3000 steps, 64 px, mesh 256, at most 10 min" in layout.texts  # the preset's time budget
        s.capture_path = str(tmp_path)
        assert "has no transforms.json" in " ".join(draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context).texts)
    finally:
        for key in ("capture_path", "style_prompt", "restyle_method"):
            s.property_unset(key)


def test_restyle_section_for_latent_edit(scene, tmp_path):
    """Edit (latent) is in the method menu; its prompt is labelled as an edit, its Keep the Original slider and
    Face checkbox show, and they reach job.json only for latent_edit, only once set."""
    s = scene.text3d
    items = {item.identifier: item.name for item in s.bl_rna.properties["restyle_method"].enum_items}
    assert items["latent_edit"] == "Edit (latent)" and items["nerf_art"] == "Restyle"
    keep = s.bl_rna.properties["keep_original"]
    assert (keep.default, keep.soft_min, keep.soft_max, keep.hard_min, keep.hard_max) == (1.0, 0.0, 4.0, 0.0, 100.0)
    assert s.bl_rna.properties["face"].default is False
    try:
        s.capture_path = str(make_capture(tmp_path / "bust", views=12))
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert not {"keep_original", "face"} & set(layout.props)  # nerf_art: hidden
        s.restyle_method = "latent_edit"
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert {"style_prompt", "keep_original", "face", "restyle_quality"} <= set(layout.props)
        assert layout.props.index("style_prompt") < layout.props.index("keep_original") < layout.props.index("face")
        assert layout.labels["style_prompt"] == "Edit" and layout.labels["keep_original"] is None  # its own name
        assert any(t.startswith("prompt: is empty; describe the edited object") for t in layout.texts)
        assert "2000 + 500 edit steps, 64 px, mesh 256" in layout.texts and layout.ops[-1][1] == "Edit"
        s.style_prompt = "a man with a beard"
        job = jobspec.build_job(api.restyle_settings_for())
        assert job["method"] == "latent_edit" and job["prompt"] == "a man with a beard"
        assert job["options"] == {"reconstruct_steps": 2000}  # unset: the engine's defaults
        s.keep_original, s.face = 2.5, True
        job = jobspec.build_job(api.restyle_settings_for())
        assert job["options"] == {"reconstruct_steps": 2000, "keep_original": 2.5, "face": True}
        assert not any(t.startswith(("keep_original", "face")) for t in draw_panel(ui.VIEW3D_PT_text3d_restyle,
                                                                                     bpy.context).texts)
        # Another method, from the panel or by the caller, never gets them.
        assert "options" not in jobspec.build_job(api.restyle_settings_for(method="reconstruct", prompt=""))
        assert jobspec.build_job(api.restyle_settings_for(method="nerf_art"))["options"] == {"reconstruct_steps": 2000}
        s.restyle_method = "nerf_art"
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert not {"keep_original", "face"} & set(layout.props) and layout.labels["style_prompt"] == "Style"
        assert "2000 + 400 style steps, 128 px, mesh 256" in layout.texts and layout.ops[-1][1] == "Restyle"
        assert jobspec.build_job(api.restyle_settings_for())["options"] == {"reconstruct_steps": 2000}
    finally:
        for key in ("capture_path", "style_prompt", "restyle_method", "keep_original", "face"):
            s.property_unset(key)


def test_time_budget_and_estimate_in_the_panel(scene, tmp_path, monkeypatch):
    """Each section has its time budget (the preset's until the user sets minutes, 0 = none) and, under it, how
    long the job should take on this machine, learnt from the jobs folder."""
    monkeypatch.setattr(props, "jobs_dir", lambda prefs: tmp_path)
    s = scene.text3d
    try:
        s.prompt = "a chair"
        layout = draw_panel(ui.VIEW3D_PT_text3d, bpy.context)
        assert {"custom_budget", "budget_minutes"} <= set(layout.props) and layout.labels["custom_budget"] == "Budget"
        assert "no estimate yet: run a dream_fields job once on this machine" in " ".join(layout.texts)
        assert "budget_s" not in jobspec.build_job(api.settings_for())  # Dream Fields' presets have none
        s.custom_budget, s.budget_minutes = True, 2.5
        assert jobspec.build_job(api.settings_for())["budget_s"] == 150.0
        # A finished job of the method on this device: the estimate says how many steps fit.
        job = jobspec.build_job(api.settings_for())
        (tmp_path / "20250101-000000-a-chair").mkdir()
        (tmp_path / "20250101-000000-a-chair" / "job.json").write_text(json.dumps({**job, "budget_s": None}))
        (tmp_path / "20250101-000000-a-chair" / "events.jsonl").write_text(
            '{"event": "started", "time": 1}\n{"event": "finished", "time": 99, "status": "succeeded", "step": 2000, '
            '"elapsed_s": 98, "build_s": 5, "step_s": 0.04, "end_s": 10}\n')
        def estimate_line() -> str:
            # After the prompt's token count and the preset's line.
            return " ".join(draw_panel(ui.VIEW3D_PT_text3d, bpy.context).texts[2:])

        # 5 s start-up, 2000 x 0.04 s, 10 s export: 95 s.
        assert estimate_line() == ("about 2 min for 2000 steps, within the 3 min budget (0.04 s/step, from your last "
                                   "dream_fields job)")
        s.budget_minutes = 1.0
        fit = int((60 - 5 - 1.25 * 10 - (0.03 * 60 + 0.5)) / 0.04)  # as the engine plans it
        assert estimate_line() == (f"about {fit} of 2000 steps fit in 60 s (0.04 s/step, from your last "
                                   "dream_fields job)")
        s.budget_minutes = 0.0
        assert "budget_s" not in jobspec.build_job(api.settings_for())
        assert estimate_line() == "about 2 min for 2000 steps (0.04 s/step, from your last dream_fields job)"
        # Restyle: the standard capture preset's 10 minutes, until the user sets their own.
        s.capture_path, s.restyle_method = str(make_capture(tmp_path / "cap", views=12)), "reconstruct"
        layout = draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context)
        assert {"restyle_custom_budget", "restyle_budget_minutes"} <= set(layout.props)
        assert "3000 steps, 64 px, mesh 256, at most 10 min" in layout.texts
        assert "no estimate yet: run a reconstruct job once on this machine" in " ".join(layout.texts)
        assert jobspec.build_job(api.restyle_settings_for())["budget_s"] == 600.0
        s.restyle_custom_budget, s.restyle_budget_minutes = True, 0.0
        assert "budget_s" not in jobspec.build_job(api.restyle_settings_for())
        assert "3000 steps, 64 px, mesh 256" in draw_panel(ui.VIEW3D_PT_text3d_restyle, bpy.context).texts
        assert api.restyle_settings_for(budget_s=42).budget_s == 42  # the API's keyword beats the panel
    finally:
        for key in ("prompt", "custom_budget", "budget_minutes", "capture_path", "restyle_method",
                    "restyle_custom_budget", "restyle_budget_minutes"):
            s.property_unset(key)


def test_restyle_button_in_the_panel_polls_the_restyle_settings(scene, tmp_path):
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "UI")
    s = scene.text3d
    try:
        with bpy.context.temp_override(window=window, area=area, region=region):
            assert not bpy.ops.text3d.restyle.poll()  # no capture
            s.capture_path = str(make_capture(tmp_path / "cap", views=12))
            assert not bpy.ops.text3d.restyle.poll()  # no style prompt
            s.restyle_method = "reconstruct"
            assert bpy.ops.text3d.restyle.poll()
    finally:
        for key in ("capture_path", "restyle_method"):
            s.property_unset(key)


def test_generate_button_in_the_panel_polls_the_panel_settings(scene):
    window = bpy.context.window_manager.windows[0]
    area = next(a for a in window.screen.areas if a.type == "VIEW_3D")
    region = next(r for r in area.regions if r.type == "UI")
    with bpy.context.temp_override(window=window, area=area, region=region):
        assert not bpy.ops.text3d.generate.poll()  # empty prompt: greyed out, with the reason
        scene.text3d.prompt = "a chair"
        assert bpy.ops.text3d.generate.poll()
    scene.text3d.property_unset("prompt")
    assert bpy.ops.text3d.generate.poll()  # scripts pass their own prompt
    assert not bpy.ops.text3d.cancel.poll()  # nothing to cancel
