"""The add-on in real headless Blender (bpy module), against the fake engine."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import bpy
import numpy as np
import pytest
from addon_support import FAKE_ROOT, drive

from blender_text3d import api, jobs, jobspec, paths, props
from blender_text3d.jobs import MANAGER

SMALL = dict(steps=10, render_size=32, mesh_resolution=32, device="cpu")


@pytest.fixture
def generate(scene, tmp_path, fake):
    """api.generate with the fake engine, small settings and a job folder per test."""
    def run(prompt, **overrides):
        return api.generate(prompt, **{"engine_python": sys.executable, "engine_root": FAKE_ROOT,
                                       "jobs_dir": tmp_path, **SMALL, **overrides})
    return run


def new_objects(before):
    return [o for o in bpy.data.objects if o not in before]


def test_register_and_unregister_twice(addon):
    import addon_utils

    for _ in range(2):
        addon_utils.disable("blender_text3d", default_set=True)
        assert not hasattr(bpy.types.Scene, "text3d") and not hasattr(bpy.types, "VIEW3D_PT_text3d")
        assert addon_utils.enable("blender_text3d", default_set=True) is not None
        assert hasattr(bpy.types.Scene, "text3d") and hasattr(bpy.types, "VIEW3D_PT_text3d")
        assert "generate" in dir(bpy.ops.text3d) and jobs._on_load_pre in bpy.app.handlers.load_pre
    assert props.preferences() is not None


def test_panel_settings_and_preferences_defaults(scene):
    s = scene.text3d
    assert (s.prompt, s.negative_prompt, s.method, s.quality, s.seed) == ("", "", "dream_fields", "standard", 0)
    assert (s.steps, s.render_size, s.mesh_resolution, s.texture_size) == (2000, 88, 256, 0)
    assert s.live_preview and not s.custom_orbit
    assert [getattr(s, k) for k in props.ORBIT_KEYS] == [4.0, 4.0, 30.0, 30.0, 0.0, 360.0, 33.0, 33.0]
    prefs = props.preferences()
    assert (prefs.engine_python, prefs.device, prefs.downloads, prefs.jobs_dir) == ("", "auto", "FOLLOW", "")
    assert props.engine_python(prefs) == str(paths.default_engine_python())
    # Presets and method defaults stay None: the job gets the preset's values and no orbit.
    job = jobspec.build_job(api.settings_for("a chair"))
    assert (job["steps"], job["render"]["size"], job["export"]["resolution"]) == (2000, 88, 256)
    assert "orbit" not in job and job["allow_downloads"] == bpy.app.online_access


def test_panel_custom_values_reach_the_job(scene):
    s = scene.text3d
    s.quality, s.steps, s.render_size, s.mesh_resolution = "custom", 12, 48, 64
    s.custom_orbit, s.radius_min, s.radius_max = True, 3.0, 5.0
    try:
        job = jobspec.build_job(api.settings_for("a chair"))
        assert (job["steps"], job["render"]["size"], job["export"]["resolution"]) == (12, 48, 64)
        assert job["orbit"]["radius"] == [3.0, 5.0] and job["orbit"]["fov_deg"] == [33.0, 33.0]
    finally:
        for key in ("quality", "steps", "render_size", "mesh_resolution", "custom_orbit", "radius_min", "radius_max"):
            s.property_unset(key)


def test_generate_imports_one_object_with_albedo_material(generate, scene):
    before = set(bpy.data.objects)
    scene.cursor.location = (1.0, 2.0, 3.0)
    bpy.ops.ed.undo_push(message="before generate")
    handle = generate("a red chair", seed=7)
    assert handle.status == "running"
    drive(handle)
    assert handle.status == "succeeded" and handle.error is None
    (obj,) = new_objects(before)
    assert obj is handle.result and obj.name == "a red chair"
    assert tuple(obj.location) == (1.0, 2.0, 3.0)
    assert dict(obj.items()) == {"text3d_prompt": "a red chair", "text3d_method": "dream_fields", "text3d_seed": 7,
                                 "text3d_job_dir": str(handle.job_dir)}
    attr = obj.data.color_attributes["albedo"]
    assert (attr.data_type, attr.domain) == ("FLOAT_COLOR", "POINT")
    colors = np.empty(len(attr.data) * 4, np.float32)
    attr.data.foreach_get("color", colors)
    expected = np.load(handle.job_dir / "result" / "mesh.npz")["vertex_colors"]
    np.testing.assert_allclose(colors.reshape(-1, 4)[:, :3], expected)
    bsdf = obj.active_material.node_tree.nodes["Principled BSDF"]
    source = bsdf.inputs["Base Color"].links[0].from_node
    assert source.bl_idname == "ShaderNodeVertexColor" and source.layer_name == "albedo"
    # One undo step takes the whole import back.
    name = obj.name
    bpy.ops.ed.undo()
    assert name not in bpy.data.objects


def test_live_preview_object_is_updated_in_place_then_replaced(generate, scene, fake):
    fake(step_s=0.05)
    before = set(bpy.data.objects)
    handle = generate("a blue lamp", live_preview=True)
    seen_objects, seen_sizes = set(), set()

    def watch(h):
        obj = h._job.preview_object
        if obj is not None:
            seen_objects.add(obj.as_pointer())
            seen_sizes.add(len(obj.data.vertices))
            assert len([o for o in bpy.data.objects if "text3d_preview" in o]) == 1
        return h.done

    drive(handle, until=watch)
    assert len(seen_objects) == 1 and len(seen_sizes) > 1  # one object, its mesh rebuilt
    (obj,) = new_objects(before)
    assert obj is handle.result and "text3d_preview" not in obj


def test_texture_is_used_when_the_mesh_has_one(generate, fake):
    fake(texture=True)
    handle = generate("a checker cube")
    drive(handle)
    obj = handle.result
    tex = obj.active_material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].links[0].from_node
    assert tex.bl_idname == "ShaderNodeTexImage" and tex.image.packed_file is not None
    assert obj.data.uv_layers.active.name == "UVMap"
    pixels = np.array(tex.image.pixels[:]).reshape(4, 4, 4)
    assert pixels[-1, :, :3].min() == 1.0 and pixels[0, :, :3].max() == 0.0  # npz row 0 is the image's top


def test_cancel_adds_nothing_and_stops_the_engine(generate, fake):
    fake(step_s=0.05)
    before = set(bpy.data.objects)
    handle = generate("a slow vase", steps=200)  # a preview mesh every 20 steps, 1 s of the 10 s job
    drive(handle, until=lambda h: h._job.preview_object is not None)
    pid = handle.pid
    assert bpy.ops.text3d.cancel() == {"FINISHED"}
    drive(handle, timeout=20)
    assert handle.status == "cancelled" and handle.result is None
    assert new_objects(before) == []  # the preview object went too
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_cancelled_job_resumes_from_its_checkpoint_from_the_panel(generate, fake):
    """Resume (the panel's play button on a cancelled job): the engine runs with --resume from the step its
    cancel kept, the job goes to the end of the queue, and the result is imported. Jobs that must not be
    resumed say why."""
    fake(step_s=0.02)
    before = set(bpy.data.objects)
    handle = generate("a paused teapot", steps=60)
    drive(handle, until=lambda h: h.progress[0] >= 5)
    handle.cancel()
    drive(handle, timeout=20)
    assert handle.status == "cancelled" and (handle.job_dir / "cancel").is_file()
    kept = json.loads((handle.job_dir / "checkpoints" / "latest.json").read_text())["step"]
    assert kept >= 5
    waiting = generate("a waiting cup", steps=200)  # runs now; the resumed job queues behind it
    assert bpy.ops.text3d.resume(job_id=handle._job.id) == {"FINISHED"}
    assert handle.status == "queued" and MANAGER.queued == [handle._job] and not (handle.job_dir / "cancel").exists()
    with pytest.raises(ValueError, match="has not ended"):
        waiting.resume()
    waiting.cancel()
    drive(handle, timeout=30)
    assert handle.status == "succeeded" and handle.result is not None
    assert new_objects(before) == [handle.result]
    lines = [json.loads(line) for line in (handle.job_dir / "events.jsonl").read_text().splitlines()]
    assert [e["resume"] for e in lines if e["event"] == "started"] == [False, True]
    assert f"resumed from step {kept}" in [e.get("message") for e in lines]
    assert [e["step"] for e in lines if e["event"] == "progress"][-(60 - kept):] == list(range(kept + 1, 61))
    # A succeeded job, one that failed for its own reasons and one still running are refused, by name.
    with pytest.raises(ValueError, match="already succeeded"):
        handle.resume()
    fake(mode="error", error_kind="model_missing")
    failed = generate("a missing model")
    drive(failed)
    with pytest.raises(ValueError, match=r"failed \(model_missing\): the same settings would fail again"):
        failed.resume()
    assert bpy.ops.text3d.resume(job_id=failed._job.id) == {"CANCELLED"}


def test_killed_engine_is_an_error_with_a_message(generate):
    before = set(bpy.data.objects)
    handle = generate("a doomed mug", steps=10_000)
    drive(handle, until=lambda h: h.progress[0] >= 1)
    os.kill(handle.pid, signal.SIGKILL)
    drive(handle)
    assert handle.status == "failed" and handle.error["kind"] == "engine_crashed"
    assert "before it finished" in handle.error["message"] and "fake engine started" in handle.error["log_tail"]
    assert new_objects(before) == []


def test_engine_crash_reports_the_log_tail(generate, fake):
    fake(mode="crash")
    handle = generate("a cracked bowl")
    drive(handle)
    assert handle.status == "failed" and "RuntimeError: fake crash" in handle.error["log_tail"]
    assert handle.result is None


def test_wrong_engine_path_is_an_error(generate, tmp_path):
    before = set(bpy.data.objects)
    handle = generate("a lost teapot", engine_python=tmp_path / "no" / "python")
    drive(handle)
    assert handle.status == "failed" and handle.error["kind"] == "engine_not_found"
    assert "Preferences" in handle.error["hint"] and new_objects(before) == []


def test_engine_error_event_is_shown_with_its_hint(generate, fake):
    fake(mode="error", error_kind="a_kind_from_the_future")
    handle = generate("a chair")
    drive(handle)
    assert handle.error == {"kind": "a_kind_from_the_future", "message": "no model here",
                            "hint": "make it with make-tiny", "log_tail": handle.error["log_tail"]}


@pytest.mark.parametrize("settings,key", [(dict(prompt=""), "prompt"),
                                          (dict(radius_min=5.0, radius_max=4.0), "radius_min"),
                                          (dict(render_size=30), "render_size"),
                                          (dict(stepz=3), "stepz")])
def test_invalid_settings_are_refused_before_anything_starts(generate, tmp_path, settings, key):
    n_jobs = len(MANAGER.jobs)
    prompt = settings.pop("prompt", "a chair")
    with pytest.raises(jobspec.SettingsError) as info:
        generate(prompt, **settings)
    assert info.value.key == key
    assert len(MANAGER.jobs) == n_jobs and list(tmp_path.iterdir()) == []


def test_batch_of_three_with_one_invalid(generate, tmp_path, scene):
    before = set(bpy.data.objects)
    handles = api.batch(["a red chair", "", "a blue lamp"], engine_python=sys.executable, engine_root=FAKE_ROOT,
                        jobs_dir=tmp_path, location=(0.0, 0.0, 0.0), wait=True, **SMALL)
    assert [h.status for h in handles] == ["succeeded", "failed", "succeeded"]
    assert handles[1].error["kind"] == "invalid_settings" and "prompt" in handles[1].error["message"]
    objects = new_objects(before)
    assert len(objects) == 2 and {o.name for o in objects} == {"a red chair", "a blue lamp"}
    locations = {tuple(h.result.location) for h in (handles[0], handles[2])}
    assert locations == {(0.0, 0.0, 0.0), (0.0, -api.GRID_SPACING, 0.0)}  # slots 0 and 2 of a 2x2 grid


def test_jobs_queue_and_run_one_at_a_time(generate, fake):
    fake(step_s=0.02)
    first, second = generate("first"), generate("second")
    assert (first.status, second.status) == ("running", "queued")
    assert MANAGER.queued == [second._job]
    second.cancel()
    assert second.status == "cancelled" and second.pid is None
    third = generate("third")
    drive(third)
    assert (first.status, third.status) == ("succeeded", "succeeded")


def test_operator_generate_waits_in_background_blender(scene, fake, tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "checkout_engine_root", lambda: FAKE_ROOT)
    prefs = props.preferences()
    prefs.engine_python, prefs.jobs_dir = sys.executable, str(tmp_path)
    try:
        assert bpy.ops.text3d.generate(prompt="an operator cup", steps=5, render_size=32, mesh_resolution=32,
                                       wait=True) == {"FINISHED"}
        assert "an operator cup" in bpy.data.objects
        job = MANAGER.jobs[-1]
        assert job.spec["steps"] == 5 and job.spec["render"]["size"] == 32 and job.status == "succeeded"
        with pytest.raises(RuntimeError, match="prompt: is empty"):
            bpy.ops.text3d.generate(prompt=" ", wait=True)
        with pytest.raises(RuntimeError, match="engine Python not found"):
            bpy.ops.text3d.generate(prompt="x", engine_python="/nonexistent/python", wait=True)
        bpy.ops.text3d.check_engine(wait=True)
        from blender_text3d.setup import SETUP
        assert SETUP.check["ok"] and SETUP.check["report"]["engine"] == "fake"
    finally:
        prefs.property_unset("engine_python")
        prefs.property_unset("jobs_dir")


def test_import_job_operator(generate, tmp_path):
    handle = generate("a reimported chair")
    drive(handle)
    before = set(bpy.data.objects)
    assert bpy.ops.text3d.import_job(directory=str(handle.job_dir)) == {"FINISHED"}
    (obj,) = new_objects(before)
    assert obj["text3d_job_dir"] == str(handle.job_dir) and obj["text3d_prompt"] == "a reimported chair"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="cannot read"):
        bpy.ops.text3d.import_job(directory=str(tmp_path / "empty"))


def test_loading_a_file_stops_running_engines(generate, fake, tmp_path):
    fake(mode="hang", step_s=0.02)
    handle = generate("a job left behind", steps=10_000)
    drive(handle, until=lambda h: h.progress[0] >= 1)
    pid = handle.pid
    path = str(tmp_path / "other.blend")
    bpy.ops.wm.save_as_mainfile(filepath=path, copy=True)
    t0 = time.monotonic()
    bpy.ops.wm.open_mainfile(filepath=path)
    assert time.monotonic() - t0 < 10
    assert handle.status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
