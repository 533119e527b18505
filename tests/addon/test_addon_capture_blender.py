"""Captures in real headless Blender: Capture Selected, Import Capture, and Restyle with the fake engine."""
from __future__ import annotations

import json
import math
import sys

import bpy
import numpy as np
import pytest
from addon_support import FAKE_ROOT, drive, make_capture, read_json, write_png
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from blender_text3d import api, captures, jobspec, paths, props
from blender_text3d.jobs import MANAGER
from blender_text3d.scene_capture import NothingToCapture

# Render settings Capture Selected changes, each set here to a value it does not use, so that
# restoring them is seen (an EXR's 32-bit depth is not valid for the PNG it writes).
SCENE_STATE = {"render.engine": "CYCLES", "render.resolution_x": 50, "render.resolution_y": 40,
               "render.resolution_percentage": 50, "render.pixel_aspect_x": 2.0, "render.use_border": True,
               "render.film_transparent": False, "render.use_compositing": True, "render.use_sequencer": True,
               "render.use_stamp": True, "render.filepath": "//elsewhere_", "render.image_settings.file_format":
               "OPEN_EXR", "render.image_settings.color_depth": "32", "render.image_settings.color_mode": "RGB",
               "view_settings.view_transform": "AgX", "cycles.samples": 7}


def _owner(scene, key):
    *path, name = key.split(".")
    owner = scene
    for part in path:
        owner = getattr(owner, part)
    return owner, name


def scene_state(scene) -> dict:
    state = {key: getattr(*_owner(scene, key)) for key in SCENE_STATE}
    state["camera"] = scene.camera
    state["objects"] = {o.name: o.hide_render for o in scene.objects}
    state["datablocks"] = (set(bpy.data.objects.keys()), set(bpy.data.cameras.keys()))
    return state


@pytest.fixture
def unusual_render_settings(scene):
    saved = {key: getattr(*_owner(scene, key)) for key in SCENE_STATE}
    for key, value in SCENE_STATE.items():
        setattr(*_owner(scene, key), value)
    yield
    for key, value in saved.items():
        setattr(*_owner(scene, key), value)


def box(name, location=(0.0, 0.0, 0.0), size=(1.0, 1.0, 1.0)):
    """A box mesh object of the given size centred at location, in the scene."""
    mesh = bpy.data.meshes.new(name)
    corners = [(x * size[0] / 2, y * size[1] / 2, z * size[2] / 2) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    mesh.from_pydata(corners, [], [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    bpy.context.scene.collection.objects.link(obj)
    return obj


def select_only(*objects):
    for obj in bpy.context.scene.objects:  # the view layer's list still holds objects other tests removed
        obj.select_set(False)
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = objects[0] if objects else None


def test_capture_selected_writes_a_capture_and_restores_the_scene(scene, tmp_path, unusual_render_settings):
    cube = box("captured cube", location=(1.0, 2.0, 0.5), size=(1.0, 1.0, 1.0))
    other = box("bystander", location=(5.0, 0.0, 0.0))
    select_only(cube)
    before = scene_state(scene)
    seen = []

    def record(render_scene, *_):
        seen.append((render_scene.camera.matrix_world.copy(), other.hide_render, cube.hide_render,
                     render_scene.render.film_transparent))

    bpy.app.handlers.render_pre.append(record)
    try:
        assert bpy.ops.text3d.capture_selected(views=6, size=32, directory=str(tmp_path / "cap")) == {"FINISHED"}
    finally:
        bpy.app.handlers.render_pre.remove(record)

    folder = tmp_path / "cap"
    assert scene.text3d.capture_path == str(folder)
    data = read_json(folder / "transforms.json")
    assert (data["w"], data["h"], data["cx"], data["cy"]) == (32, 32, 16.0, 16.0)
    assert data["camera_angle_x"] == pytest.approx(math.radians(40))
    assert data["text3d_bounds"] == [[0.5, 1.5, 0.0], [1.5, 2.5, 1.0]]
    assert [f["file_path"] for f in data["frames"]] == [f"images/frame_{i:03d}.png" for i in range(6)]
    # The matrices written are those the renders used, exactly; only the cube rendered, on transparent film.
    assert len(seen) == 6
    assert [f["transform_matrix"] for f in data["frames"]] == [[list(row) for row in m] for m, *_ in seen]
    assert all(o_hidden and not c_hidden and transparent for _, o_hidden, c_hidden, transparent in seen)
    for frame in data["frames"]:
        image = bpy.data.images.load(str(folder / frame["file_path"]))
        try:
            assert tuple(image.size) == (32, 32) and image.channels == 4
            alpha = np.array(image.pixels[:]).reshape(32, 32, 4)[..., 3]
        finally:
            bpy.data.images.remove(image)
        assert alpha[16, 16] == 1.0 and alpha[0, 0] == 0.0 and alpha[-1, -1] == 0.0  # the cube, centred
    assert len(captures.read_cameras(folder)) == 6  # a capture the add-on (and the engine) can read
    assert scene_state(scene) == before  # settings, camera, visibility; the temporary camera is gone


def test_capture_selected_refuses_what_it_cannot_capture(scene, tmp_path):
    select_only()
    assert not bpy.ops.text3d.capture_selected.poll()
    empty = bpy.data.objects.new("an empty", None)
    scene.collection.objects.link(empty)
    flat = bpy.data.objects.new("no geometry", bpy.data.meshes.new("no geometry"))
    scene.collection.objects.link(flat)
    before = scene_state(scene)
    for obj, message in ((empty, "no selected object has geometry"), (flat, "have no size")):
        select_only(obj)
        with pytest.raises(RuntimeError, match=message):
            bpy.ops.text3d.capture_selected(views=2, size=16, directory=str(tmp_path / "cap"))
    assert not (tmp_path / "cap").exists() and scene_state(scene) == before
    with pytest.raises(NothingToCapture):
        api.capture_selected(objects=[empty], jobs_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before a folder was made


def test_capture_selected_api_with_cycles_and_a_ring(scene, tmp_path):
    cube = box("cycles cube")
    folder = api.capture_selected(views=2, size=16, engine="CYCLES", samples=1, layout="ring", objects=[cube],
                                  jobs_dir=tmp_path)
    assert folder.parent == tmp_path / "captures" and folder.name.endswith("cycles-cube")
    assert captures.view_count(folder) == 2
    elevations = [math.degrees(math.asin(f["transform_matrix"][2][2]))
                  for f in read_json(folder / "transforms.json")["frames"]]
    assert elevations == pytest.approx([captures.RING_ELEVATION_DEG] * 2)


def test_import_capture_creates_one_camera_per_frame(scene, tmp_path):
    folder = make_capture(tmp_path / "lion", views=5)
    data = read_json(folder / "transforms.json")
    bpy.ops.ed.undo_push(message="before import")
    # As the file browser runs it: with an undo push (a script's call has none unless asked).
    assert bpy.ops.text3d.import_capture("EXEC_DEFAULT", True, filepath=str(folder)) == {"FINISHED"}
    collection = bpy.data.collections["lion"]
    assert collection.name in scene.collection.children and scene.text3d.capture_path == str(folder)
    cameras = sorted(collection.objects, key=lambda o: o.name)
    assert [o.name for o in cameras] == [f"frame_{i:03d}" for i in range(5)]
    assert all(o.type == "CAMERA" for o in cameras)
    for obj, frame in zip(cameras, data["frames"]):
        np.testing.assert_allclose(np.array(obj.matrix_world), frame["transform_matrix"], atol=1e-6)
        assert obj.data.lens == pytest.approx(data["fl_x"] * 36 / data["w"])
        assert (obj.data.shift_x, obj.data.shift_y) == (0.0, 0.0)
        assert obj["text3d_image"] == str(folder / frame["file_path"])
    bpy.ops.ed.undo()  # one undo step takes the collection and its cameras away
    assert "lion" not in bpy.data.collections and "frame_000" not in bpy.data.objects


def test_imported_intrinsics_project_as_the_pinhole_model(scene, tmp_path):
    """A camera with an off-centre principal point and a wide image sees a point where
    u = cx + fx X / Z, v = cy - fy Y / Z (pixels from the top left) puts it."""
    width, height, fx, cx, cy = 64, 40, 50.0, 27.0, 23.0
    write_png(tmp_path / "odd" / "f.png", width, height)
    (tmp_path / "odd" / "transforms.json").write_text(json.dumps({
        "fl_x": fx, "fl_y": fx, "cx": cx, "cy": cy, "w": width, "h": height,
        "frames": [{"file_path": "f.png", "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                [0, 0, 0, 1]]}]}))
    assert bpy.ops.text3d.import_capture(filepath=str(tmp_path / "odd" / "transforms.json")) == {"FINISHED"}
    (camera,) = bpy.data.collections["odd"].objects
    render = scene.render
    saved = (render.resolution_x, render.resolution_y, render.resolution_percentage)
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
    try:
        for point in ((0.3, -0.2, -2.0), (-0.5, 0.4, -3.0), (0.0, 0.0, -1.0)):
            x, y, depth = world_to_camera_view(scene, camera, Vector(point))
            u, v = cx + fx * point[0] / -point[2], cy - fx * point[1] / -point[2]
            assert (x * width, (1 - y) * height) == pytest.approx((u, v), abs=1e-4)
    finally:
        render.resolution_x, render.resolution_y, render.resolution_percentage = saved


def test_import_of_a_bad_capture_adds_nothing(scene, tmp_path):
    folder = make_capture(tmp_path / "bad", views=3)
    data = read_json(folder / "transforms.json")
    data["frames"][1]["transform_matrix"] = [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]
    (folder / "transforms.json").write_text(json.dumps(data))
    before = (set(bpy.data.collections), set(bpy.data.objects), set(bpy.data.cameras))
    with pytest.raises(RuntimeError, match=r"frames\[1\].*not a rotation"):
        bpy.ops.text3d.import_capture(filepath=str(folder))
    assert (set(bpy.data.collections), set(bpy.data.objects), set(bpy.data.cameras)) == before
    assert scene.text3d.capture_path != str(folder)


@pytest.fixture
def fake_prefs(scene, fake, tmp_path, monkeypatch):
    """The preferences pointed at the fake engine and a jobs folder of the test."""
    monkeypatch.setattr(paths, "checkout_engine_root", lambda: FAKE_ROOT)
    prefs = props.preferences()
    prefs.engine_python, prefs.jobs_dir = sys.executable, str(tmp_path / "jobs")
    yield prefs
    prefs.property_unset("engine_python")
    prefs.property_unset("jobs_dir")
    for key in ("capture_path", "style_prompt", "restyle_method", "restyle_quality", "keep_original", "face"):
        scene.text3d.property_unset(key)


def test_restyle_operator_runs_nerf_art_and_imports_where_the_capture_was(fake_prefs, scene, tmp_path):
    folder = make_capture(tmp_path / "statue", views=4, bounds=((1, 2, 3), (3, 3, 4)))
    s = scene.text3d
    s.capture_path, s.style_prompt, s.restyle_method = str(folder), "a bronze statue", "nerf_art"
    scene.cursor.location = (9.0, 9.0, 9.0)  # not where a restyled capture goes
    before = set(bpy.data.objects)
    assert bpy.ops.text3d.restyle(steps=4, reconstruct_steps=6, render_size=32, mesh_resolution=32,
                                  wait=True) == {"FINISHED"}
    job = MANAGER.jobs[-1]
    assert job.status == "succeeded" and job.run.state.total == 10  # reconstruction + style steps
    assert job.spec["inputs"] == {"capture": str(folder)} and job.spec["prompt"] == "a bronze statue"
    assert job.spec["options"] == {"reconstruct_steps": 6}
    (obj,) = [o for o in bpy.data.objects if o not in before]
    assert obj.name == "statue: a bronze statue" and obj["text3d_capture"] == str(folder)
    assert tuple(obj.location) == (0.0, 0.0, 0.0)
    verts = np.array([v.co for v in obj.data.vertices])
    np.testing.assert_allclose((verts.min(0) + verts.max(0)) / 2, (2, 2.5, 3.5), atol=1e-3)  # the capture's box
    assert verts.max(0)[0] - verts.min(0)[0] == pytest.approx(2.0, abs=1e-2)


def test_restyle_operator_runs_latent_edit_and_imports_where_the_capture_was(fake_prefs, scene, tmp_path):
    """Edit (latent) from the panel's Restyle section: its prompt, the panel's Keep the Original, the operator's
    Face, the reconstruction counted before the edit steps, and the mesh back where the captured objects were."""
    folder = make_capture(tmp_path / "bust", views=4, bounds=((-3, 1, 0), (-1, 2, 2)))
    s = scene.text3d
    s.capture_path, s.style_prompt, s.restyle_method, s.keep_original = str(folder), "a man with a beard", \
        "latent_edit", 0.5
    scene.cursor.location = (9.0, 9.0, 9.0)  # not where an edited capture goes
    before = set(bpy.data.objects)
    assert bpy.ops.text3d.restyle(steps=3, reconstruct_steps=5, render_size=32, mesh_resolution=32, face=True,
                                  wait=True) == {"FINISHED"}
    job = MANAGER.jobs[-1]
    assert job.status == "succeeded" and job.run.state.total == 8  # inversion + edit steps
    assert job.spec["method"] == "latent_edit" and job.spec["prompt"] == "a man with a beard"
    assert job.spec["inputs"] == {"capture": str(folder)}
    assert job.spec["options"] == {"reconstruct_steps": 5, "keep_original": 0.5, "face": True}
    (obj,) = [o for o in bpy.data.objects if o not in before]
    assert obj.name == "bust: a man with a beard" and obj["text3d_capture"] == str(folder)
    assert obj["text3d_method"] == "latent_edit" and tuple(obj.location) == (0.0, 0.0, 0.0)
    verts = np.array([v.co for v in obj.data.vertices])
    np.testing.assert_allclose((verts.min(0) + verts.max(0)) / 2, (-2, 1.5, 1), atol=1e-3)  # the capture's box
    assert verts.max(0)[2] - verts.min(0)[2] == pytest.approx(2.0, abs=1e-2)
    # Keep the Original and Face belong to latent_edit: another method refuses them, by operator or API, and
    # Generate (text methods) has no such properties.
    assert {"keep_original", "face"} <= set(bpy.ops.text3d.restyle.get_rna_type().properties.keys())
    assert not {"keep_original", "face"} & set(bpy.ops.text3d.generate.get_rna_type().properties.keys())
    with pytest.raises(RuntimeError, match="keep_original: only latent_edit takes it, not nerf_art"):
        bpy.ops.text3d.restyle(method="nerf_art", keep_original=2.0)
    with pytest.raises(jobspec.SettingsError, match="face: only latent_edit takes it, not reconstruct"):
        api.restyle(folder, method="reconstruct", face=True)
    with pytest.raises(jobspec.SettingsError, match="describe the edited object"):
        api.restyle(folder, "", "latent_edit")
    handle = api.restyle(folder, "a bronze bust", "latent_edit", keep_original=0.0, face=False, steps=2,
                         reconstruct_steps=1, render_size=32, mesh_resolution=32, wait=True, timeout=60)
    assert handle.status == "succeeded" and handle.progress == (3, 3)
    assert json.loads((handle.job_dir / "job.json").read_text())["options"] == {
        "reconstruct_steps": 1, "keep_original": 0.0, "face": False}


def test_restyle_api_reconstructs_with_the_preview_at_the_origin(fake_prefs, scene, tmp_path, fake):
    fake(step_s=0.02)
    folder = make_capture(tmp_path / "vase", views=4)
    with pytest.raises(jobspec.SettingsError, match="takes no prompt"):
        api.restyle(folder, "a vase", method="reconstruct")
    with pytest.raises(jobspec.SettingsError, match="describe the style"):
        api.restyle(folder)
    handle = api.restyle(folder, method="reconstruct", steps=20, render_size=32, mesh_resolution=32)
    assert handle.title == "vase (reconstruct)"
    drive(handle, until=lambda h: h._job.preview_object is not None)
    assert tuple(handle._job.preview_object.location) == (0.0, 0.0, 0.0)
    drive(handle)
    assert handle.status == "succeeded" and tuple(handle.result.location) == (0.0, 0.0, 0.0)
    assert handle.progress == (20, 20)
