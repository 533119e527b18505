"""Settings -> job.json: presets, validation reasons, and agreement with the engine's parser."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from addon_support import REPO

from blender_text3d import jobspec, paths, runner
from blender_text3d.jobspec import Settings, SettingsError, build_job

TOP_LEVEL_KEYS = {"spec_version", "method", "prompt", "negative_prompt", "seed", "steps", "device", "render",
                  "orbit", "models", "allow_downloads", "export", "preview_every", "checkpoint_every",
                  "preview_mesh_every", "inputs", "options"}


@pytest.mark.parametrize("quality,expected", [("draft", (300, 64, 128)), ("standard", (2000, 88, 256)),
                                              ("high", (10000, 168, 256))])
def test_dream_fields_presets(quality, expected):
    job = build_job(Settings(prompt="a chair", quality=quality))
    assert (job["steps"], job["render"]["size"], job["export"]["resolution"]) == expected


def test_minimal_job():
    job = build_job(Settings(prompt="  a chair "))
    assert job == {"spec_version": 1, "method": "dream_fields", "prompt": "a chair", "seed": 0, "steps": 2000,
                   "device": "auto", "render": {"size": 88}, "allow_downloads": False,
                   "export": {"resolution": 256}, "preview_every": 100, "preview_mesh_every": 200}
    assert set(job) <= TOP_LEVEL_KEYS


def test_overrides_beat_the_preset_and_everything_is_written():
    s = Settings(prompt="a lamp", quality="draft", steps=7, samples_per_ray=32, seed=3, radius_min=2.0,
                 radius_max=3.0, elevation_min=-10, elevation_max=45, azimuth_min=-180, azimuth_max=180,
                 fov_min=40, fov_max=70, texture_size=256, threshold=0.5, formats=("npz",), live_preview=False,
                 device="cuda:1", models={"clip": "ViT-B-16/openai", "diffusion": " "}, allow_downloads=True,
                 negative_prompt="blurry", options={"field": "mlp"})
    job = build_job(s)
    assert job["steps"] == 7 and job["render"] == {"size": 64, "samples_per_ray": 32}
    assert job["orbit"] == {"radius": [2.0, 3.0], "elevation_deg": [-10.0, 45.0], "azimuth_deg": [-180.0, 180.0],
                            "fov_deg": [40.0, 70.0]}
    assert job["export"] == {"resolution": 128, "threshold": 0.5, "texture_size": 256, "formats": ["npz"]}
    assert job["models"] == {"clip": "ViT-B-16/openai"}  # blank entries mean "engine default"
    assert job["preview_mesh_every"] == 0 and job["preview_every"] == 1
    assert job["negative_prompt"] == "blurry" and job["options"] == {"field": "mlp"}
    assert set(job) <= TOP_LEVEL_KEYS


@pytest.mark.parametrize("settings,key,reason", [
    (dict(prompt="   "), "prompt", "is empty"),
    (dict(method="nerf"), "method", "unknown method"),
    (dict(quality="ultra"), "quality", "unknown preset"),
    (dict(quality="custom", steps=5), "render_size", "custom quality needs"),
    (dict(steps=0), "steps", "between 1 and"),
    (dict(steps=2.5), "steps", "whole number"),
    (dict(render_size=30), "render_size", "multiple of 8"),
    (dict(mesh_resolution=8), "mesh_resolution", "between 16 and 1024"),
    (dict(seed=-1), "seed", "between 0"),
    (dict(device="gpu"), "device", "auto, cpu"),
    (dict(radius_min=5.0, radius_max=4.0), "radius_min", "greater than radius_max"),
    (dict(radius_min=1.0, radius_max=4.0), "radius_min", "(1.75, 1000]"),
    (dict(elevation_min=10.0), "elevation_max", "together"),
    (dict(azimuth_min=-300.0, azimuth_max=300.0), "azimuth_max", "more than 360"),
    (dict(fov_min=10.0, fov_max=170.0), "fov_max", "[1, 150]"),
    (dict(texture_size=32), "texture_size", "64 to 8192"),
    (dict(threshold=-1), "threshold", "> 0"),
    (dict(threshold="high"), "threshold", "finite number"),
    (dict(formats=("glb",)), "formats", "include 'npz'"),
    (dict(models={"unet": "x"}), "models.unet", "unknown model role"),
])
def test_invalid_settings_name_the_key_and_the_reason(settings, key, reason):
    with pytest.raises(SettingsError) as info:
        build_job(Settings(**{"prompt": "a chair", **settings}))
    assert info.value.key == key and reason in info.value.reason
    assert str(info.value).startswith(f"{key}: ")


def test_unknown_setting_is_named():
    with pytest.raises(SettingsError, match="stpes: unknown setting"):
        jobspec.settings_from({"prompt": "x", "stpes": 3})


def _engine_accepts(jobs: list[dict]) -> list[str]:
    """Run the engine's own parser (engine/spec.py, stdlib only) on each job; '' = accepted."""
    code = ("import json, sys\nfrom engine.spec import parse_job\nfrom engine.errors import EngineError\nout = []\n"
            "for job in json.load(sys.stdin):\n    try:\n        parse_job(job); out.append('')\n"
            "    except EngineError as e:\n        out.append(e.message)\nprint(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(jobs), capture_output=True, text=True,
                          cwd=REPO, env=runner.child_env(REPO), check=True)
    return json.loads(proc.stdout)


def test_the_engine_parser_accepts_what_the_add_on_writes():
    code = "from engine.options import METHOD_DEFAULTS; print(' '.join(METHOD_DEFAULTS))"
    engine_methods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                        env=runner.child_env(REPO), check=True).stdout.split())
    jobs = []
    for method in sorted(engine_methods & set(jobspec.METHODS)):
        for quality in ("draft", "standard", "high"):
            jobs.append(build_job(Settings(prompt="a chair", method=method, quality=quality)))
        jobs.append(build_job(Settings(prompt="a chair", method=method, steps=5, samples_per_ray=4,
                                       radius_min=1.76, radius_max=1000, elevation_min=-90, elevation_max=90,
                                       azimuth_min=-180, azimuth_max=180, fov_min=1, fov_max=150,
                                       texture_size=64, threshold="auto", formats=("npz", "glb"),
                                       device="mps", models={"clip": "ViT-B-16/openai"}, allow_downloads=True)))
    assert jobs, f"no method in common: add-on {jobspec.METHODS}, engine {engine_methods}"
    assert _engine_accepts(jobs) == [""] * len(jobs)


def test_text3d_home(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path))
    assert paths.text3d_home() == tmp_path
    assert paths.default_engine_python() == tmp_path / "engine-venv" / "bin" / "python"
    monkeypatch.delenv("TEXT3D_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.text3d_home() == tmp_path / "xdg" / "text3d"


def test_checkout_engine_root(tmp_path):
    assert paths.checkout_engine_root(tmp_path / "blender_text3d") is None
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "__main__.py").write_text("")
    assert paths.checkout_engine_root(tmp_path / "blender_text3d") == tmp_path
    assert paths.checkout_engine_root() == REPO


def test_new_job_dir_is_unique(tmp_path):
    a, b = paths.new_job_dir(tmp_path, "A red / chair!"), paths.new_job_dir(tmp_path, "A red / chair!")
    assert a != b and a.is_dir() and b.is_dir() and a.name.endswith("a-red-chair")
    assert paths.new_job_dir(tmp_path, "!!!").name.endswith("-job")
