"""api.batch on a Ray cluster inside Blender: every job runs at once through one `engine batch` process (the fake
engine's), is followed beside this machine's queue and imported as it ends."""
from __future__ import annotations

import json
import sys

import bpy
import pytest
from addon_support import FAKE_ROOT

from blender_text3d import api, props
from blender_text3d.jobs import MANAGER

SMALL = dict(steps=10, render_size=32, mesh_resolution=32, device="cpu")


def test_a_ray_batch_runs_every_job_at_once_and_imports_each(scene, fake, tmp_path):
    fake(step_s=0.02, argv_file=str(tmp_path / "argv.json"))
    before = set(bpy.data.objects)
    handles = api.batch(["a red chair", "", "a blue lamp"], backend="ray", address="127.0.0.1:6379",
                        engine_python=sys.executable, engine_root=FAKE_ROOT, jobs_dir=tmp_path,
                        location=(0.0, 0.0, 0.0), wait=False, **SMALL)
    assert handles[1].status == "failed" and handles[1].error["kind"] == "invalid_settings"
    # Both valid jobs run side by side (no local queue), followed by the one manager.
    assert [h.status for h in (handles[0], handles[2])] == ["running", "running"] and not MANAGER.queued
    assert handles[0].pid == handles[2].pid  # the batch process; the engines run on the cluster
    for h in handles:
        h.wait(timeout=30)
    assert [h.status for h in handles] == ["succeeded", "failed", "succeeded"]
    objects = [o for o in bpy.data.objects if o not in before]
    assert {o.name for o in objects} == {"a red chair", "a blue lamp"}
    assert {tuple(h.result.location) for h in (handles[0], handles[2])} == {(0.0, 0.0, 0.0),
                                                                             (0.0, -api.GRID_SPACING, 0.0)}
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:3] == ["batch", "--backend", "ray"] and argv[argv.index("--address") + 1] == "127.0.0.1:6379"


def test_the_preference_chooses_the_cluster_and_a_missing_ray_fails_each_job_with_a_hint(scene, fake, tmp_path):
    prefs = props.preferences()
    prefs.batch_backend, prefs.ray_address = "RAY", "head:6379"
    try:
        fake(batch_mode="unavailable")
        handles = api.batch(["a cup", "a mug"], engine_python=sys.executable, engine_root=FAKE_ROOT,
                            jobs_dir=tmp_path, wait=True, **SMALL)
    finally:
        prefs.batch_backend, prefs.ray_address = "LOCAL", ""
    assert [h.status for h in handles] == ["failed", "failed"]
    assert {h.error["kind"] for h in handles} == {"backend_unavailable"}
    assert "--with ray" in handles[0].error["hint"]


def test_an_unknown_backend_is_refused_before_anything_is_made(scene, tmp_path):
    with pytest.raises(ValueError, match="slurm"):
        api.batch(["a cup"], backend="slurm", jobs_dir=tmp_path)
    assert not list(tmp_path.iterdir())
