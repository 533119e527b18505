"""Settings -> job.json: presets, validation reasons, and agreement with the engine's parser."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from addon_support import REPO, make_capture

from blender_text3d import jobspec, paths, runner
from blender_text3d.jobspec import Settings, SettingsError, build_job

TOP_LEVEL_KEYS = {"spec_version", "method", "prompt", "negative_prompt", "seed", "steps", "device", "render",
                  "orbit", "models", "allow_downloads", "export", "preview_every", "checkpoint_every",
                  "preview_mesh_every", "inputs", "options", "budget_s"}


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
    other = build_job(Settings(prompt="a lamp", models={"clip": "c", "diffusion": "d", "perceptual": "p"}))
    assert other["models"] == {"clip": "c"}  # only the roles Dream Fields loads
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


def test_dreamfusion_guidance_settings_reach_the_options():
    job = build_job(Settings(prompt="a chair", method="dreamfusion"))
    assert "options" not in job  # unset: the engine's defaults (100, [0.02, 0.98])
    job = build_job(Settings(prompt="a chair", method="dreamfusion", guidance_scale=7.5, t_range_min=0.2,
                             t_range_max=0.5, options={"lambda_orientation": 10.0}))
    assert job["options"] == {"lambda_orientation": 10.0, "guidance_scale": 7.5, "t_range": [0.2, 0.5]}
    job = build_job(Settings(prompt="a chair", method="dreamfusion", t_range_max=0.5))
    assert job["options"] == {"t_range": [0.02, 0.5]}  # the other end keeps the engine's default
    job = build_job(Settings(prompt="a chair", method="dreamfusion", guidance_scale=0, t_range_min=0.3,
                             t_range_max=0.3))
    assert job["options"] == {"guidance_scale": 0.0, "t_range": [0.3, 0.3]}  # the bounds themselves are valid


@pytest.mark.parametrize("settings,key,reason", [
    (dict(guidance_scale=-1.0), "guidance_scale", ">= 0"),
    (dict(guidance_scale=float("inf")), "guidance_scale", "finite number"),
    (dict(t_range_min=0.6, t_range_max=0.5), "t_range_min", "greater than t_range_max"),
    (dict(t_range_max=1.0), "t_range_max", "[0, 1)"),
    (dict(t_range_min=-0.1), "t_range_min", "[0, 1)"),
    (dict(t_range_min="low"), "t_range_min", "finite number"),
    (dict(method="dream_fields", guidance_scale=50.0), "guidance_scale", "only dreamfusion and latent_edit use it"),
    (dict(method="dream_fields", t_range_max=0.5), "t_range_max", "only dreamfusion and latent_edit use it"),
    (dict(guidance_scale=50.0, options={"guidance_scale": 20.0}), "options.guidance_scale", "give it once"),
])
def test_invalid_guidance_settings(settings, key, reason):
    with pytest.raises(SettingsError) as info:
        build_job(Settings(**{"prompt": "a chair", "method": "dreamfusion", **settings}))
    assert info.value.key == key and reason in info.value.reason


@pytest.fixture
def capture(tmp_path):
    return make_capture(tmp_path / "statue", views=4)


@pytest.mark.parametrize("method,quality,expected", [
    ("reconstruct", "draft", (500, 64, 128, None)), ("reconstruct", "standard", (3000, 64, 256, None)),
    ("reconstruct", "high", (10000, 128, 256, None)), ("dietnerf", "draft", (500, 64, 128, None)),
    ("dietnerf", "standard", (3000, 64, 256, None)), ("dietnerf", "high", (10000, 128, 256, None)),
    ("nerf_art", "draft", (100, 64, 128, 500)), ("nerf_art", "standard", (400, 128, 256, 2000)),
    ("nerf_art", "high", (1000, 128, 256, 5000)), ("latent_edit", "draft", (150, 64, 128, 500)),
    ("latent_edit", "standard", (500, 64, 256, 2000)), ("latent_edit", "high", (1000, 128, 256, 5000))])
def test_capture_presets(capture, method, quality, expected):
    prompt = "a bronze statue" if jobspec.takes_prompt(method) else ""
    job = build_job(Settings(prompt=prompt, method=method, quality=quality, capture=str(capture)))
    assert (job["steps"], job["render"]["size"], job["export"]["resolution"],
            job.get("options", {}).get("reconstruct_steps")) == expected


def test_capture_jobs(capture, tmp_path):
    job = build_job(Settings(method="reconstruct", capture=str(capture / "transforms.json")))
    assert job == {"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture / "transforms.json")},
                   "seed": 0, "steps": 3000, "device": "auto", "render": {"size": 64}, "allow_downloads": False,
                   "export": {"resolution": 256}, "preview_every": 150, "preview_mesh_every": 300,
                   "budget_s": 600.0}  # the standard capture preset's budget: minutes on a CPU
    job = build_job(Settings(prompt=" a bronze statue ", method="nerf_art", capture=str(capture), quality="draft"))
    assert job["prompt"] == "a bronze statue" and job["inputs"] == {"capture": str(capture)}
    assert job["options"] == {"reconstruct_steps": 500} and job["preview_every"] == 30  # (500 + 100) / 20
    assert jobspec.job_title(job) == "statue: a bronze statue"
    assert jobspec.job_title(build_job(Settings(method="dietnerf", capture=str(capture)))) == "statue (dietnerf)"
    # The user's reconstruction steps, as a setting or as an option, replace the preset's.
    job = build_job(Settings(prompt="ice", method="nerf_art", capture=str(capture), reconstruct_steps=0))
    assert job["options"] == {"reconstruct_steps": 0} and job["preview_every"] == 20
    job = build_job(Settings(prompt="ice", method="nerf_art", capture=str(capture), options={"reconstruct_steps": 9}))
    assert job["options"] == {"reconstruct_steps": 9}
    # A finished reconstruction to restyle: no reconstruction steps at all.
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.json").write_text("{}")
    job = build_job(Settings(prompt="ice", method="nerf_art", capture=str(capture), source_job=str(tmp_path / "job")))
    assert job["inputs"] == {"capture": str(capture), "source_job": str(tmp_path / "job")} and "options" not in job
    assert set(job) <= TOP_LEVEL_KEYS


def test_budget_from_the_preset_or_the_user(capture):
    """job.json budget_s: the capture presets' (draft and standard), replaced by the user's seconds, cleared by 0;
    text presets have none."""
    def budget(**settings):
        return build_job(Settings(**settings)).get("budget_s")

    cap = {"method": "reconstruct", "capture": str(capture)}
    assert (budget(**cap, quality="draft"), budget(**cap), budget(**cap, quality="high")) == (180.0, 600.0, None)
    assert budget(**cap, budget_s=90) == 90.0 and budget(**cap, budget_s=0) is None
    assert budget(prompt="a chair") is None and budget(prompt="a chair", budget_s=300.5) == 300.5
    assert budget(prompt="a chair", quality="custom", steps=10, render_size=16, mesh_resolution=32, budget_s=60) == 60
    assert jobspec.preset("dietnerf", "draft").budget_s == 180.0 and jobspec.preset("dream_fields", "draft").budget_s is None
    for bad in (-1, "5 min", float("nan")):
        with pytest.raises(SettingsError) as err:
            build_job(Settings(prompt="a chair", budget_s=bad))
        assert err.value.key == "budget_s"


@pytest.mark.parametrize("settings,key,reason", [
    (dict(method="nerf_art", prompt=" "), "prompt", "describe the style"),
    (dict(method="reconstruct", prompt="a statue"), "prompt", "takes no prompt"),
    (dict(method="dietnerf", prompt="a statue"), "prompt", "takes no prompt"),
    (dict(method="reconstruct", capture=""), "capture", "is empty"),
    (dict(method="reconstruct", capture="NOWHERE"), "capture", "does not exist"),
    (dict(method="reconstruct", capture="EMPTY"), "capture", "has no transforms.json"),
    (dict(method="reconstruct", capture="NOFRAMES"), "capture", "has no frames"),
    (dict(method="dream_fields", prompt="a chair"), "capture", "generates from text"),
    (dict(method="reconstruct", source_job="JOB"), "source_job", "only nerf_art and latent_edit start from a "),
    (dict(method="nerf_art", prompt="ice", source_job="EMPTY"), "source_job", "not a job folder"),
    (dict(method="nerf_art", prompt="ice", source_job="JOB", reconstruct_steps=10), "reconstruct_steps",
     "the source job is the reconstruction"),
    (dict(method="dietnerf", reconstruct_steps=10), "reconstruct_steps",
     "only nerf_art and latent_edit reconstruct the capture first, not dietnerf"),
    (dict(method="latent_edit", prompt=" "), "prompt", "describe the edited object"),
    (dict(method="reconstruct", prompt="a statue"), "prompt", "nerf_art and latent_edit take one"),
    (dict(method="latent_edit", prompt="gold", source_job="NERF_ART_JOB"), "source_job",
     "is a nerf_art job; latent_edit starts from a finished latent_edit or reconstruct job"),
    (dict(method="nerf_art", prompt="gold", source_job="LATENT_EDIT_JOB"), "source_job",
     "is a latent_edit job; nerf_art starts from a finished reconstruct or dietnerf or nerf_art job"),
    (dict(method="latent_edit", prompt="gold", source_job="JOB", reconstruct_steps=10), "reconstruct_steps",
     "the source job is the reconstruction"),
    (dict(method="nerf_art", prompt="ice", reconstruct_steps=-1), "reconstruct_steps", "between 0"),
    (dict(method="nerf_art", prompt="ice", reconstruct_steps=5, options={"reconstruct_steps": 9}),
     "options.reconstruct_steps", "give it once"),
])
def test_invalid_capture_settings(capture, tmp_path, settings, key, reason):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noframes").mkdir()
    (tmp_path / "noframes" / "transforms.json").write_text('{"frames": []}')
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.json").write_text("{}")
    for method in ("nerf_art", "latent_edit"):
        (tmp_path / method).mkdir()
        (tmp_path / method / "job.json").write_text(json.dumps({"spec_version": 1, "method": method}))
    places = {"NOWHERE": tmp_path / "nowhere", "EMPTY": tmp_path / "empty", "NOFRAMES": tmp_path / "noframes",
              "JOB": tmp_path / "job", "NERF_ART_JOB": tmp_path / "nerf_art",
              "LATENT_EDIT_JOB": tmp_path / "latent_edit"}
    values = {"capture": str(capture), **settings}
    values = {k: str(places.get(v, v)) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(SettingsError) as info:
        build_job(Settings(**values))
    assert info.value.key == key and reason in info.value.reason


def test_latent_edit_jobs(capture, tmp_path):
    """latent_edit takes nerf_art's path (preset reconstruction, or a source job instead) and writes its own
    settings, keep_original and face, as options; unset, they are the engine's defaults."""
    job = build_job(Settings(prompt=" a man with a beard ", method="latent_edit", capture=str(capture),
                             quality="draft"))
    assert job["prompt"] == "a man with a beard" and job["inputs"] == {"capture": str(capture)}
    assert job["options"] == {"reconstruct_steps": 500} and job["preview_every"] == 32  # (500 + 150) / 20
    assert jobspec.job_title(job) == "statue: a man with a beard"
    job = build_job(Settings(prompt="gold", method="latent_edit", capture=str(capture), reconstruct_steps=5,
                             keep_original=2.5, face=True, options={"tune_steps": 3}))
    assert job["options"] == {"tune_steps": 3, "reconstruct_steps": 5, "keep_original": 2.5, "face": True}
    job = build_job(Settings(prompt="gold", method="latent_edit", capture=str(capture), keep_original=0, face=False))
    assert job["options"]["keep_original"] == 0.0 and job["options"]["face"] is False  # both ends are values
    assert isinstance(job["options"]["keep_original"], float)
    assert build_job(Settings(prompt="gold", method="latent_edit", capture=str(capture),
                              keep_original=100))["options"]["keep_original"] == 100.0
    # A finished inversion or tri-plane reconstruction to edit: no reconstruction steps at all.
    for method in ("latent_edit", "reconstruct"):
        (tmp_path / method).mkdir()
        (tmp_path / method / "job.json").write_text(json.dumps({"spec_version": 1, "method": method}))
        job = build_job(Settings(prompt="gold", method="latent_edit", capture=str(capture),
                                 source_job=str(tmp_path / method), keep_original=0.5))
        assert job["inputs"] == {"capture": str(capture), "source_job": str(tmp_path / method)}
        assert job["options"] == {"keep_original": 0.5}
    assert jobspec.prompt_words("latent_edit").label == "Edit" and jobspec.prompt_words("nerf_art").label == "Style"
    assert jobspec.option_users("keep_original") == ["latent_edit"] == jobspec.option_users("face")
    assert jobspec.option_users("reconstruct_steps") == ["nerf_art", "latent_edit"]


@pytest.mark.parametrize("settings,key,reason", [
    (dict(keep_original=-0.5), "keep_original", "must be between 0 and 100 (got -0.5)"),
    (dict(keep_original=101), "keep_original", "must be between 0 and 100 (got 101)"),
    (dict(keep_original=float("nan")), "keep_original", "finite number"),
    (dict(keep_original="lots"), "keep_original", "finite number"),
    (dict(keep_original=True), "keep_original", "finite number"),
    (dict(face=1), "face", "must be True or False (got 1)"),
    (dict(face="yes"), "face", "must be True or False"),
    (dict(method="nerf_art", keep_original=2.0), "keep_original",
     "only latent_edit takes it, not nerf_art; leave it unset or choose latent_edit"),
    (dict(method="nerf_art", face=False), "face", "only latent_edit takes it, not nerf_art"),
    (dict(method="reconstruct", prompt="", face=True), "face", "only latent_edit takes it, not reconstruct"),
    (dict(method="dietnerf", prompt="", keep_original=1.0), "keep_original", "not dietnerf"),
    (dict(method="dreamfusion", capture="", keep_original=1.0), "keep_original", "not dreamfusion"),
    (dict(keep_original=2.0, options={"keep_original": 3.0}), "options.keep_original", "give it once"),
    (dict(face=True, options={"face": True}), "options.face", "give it once"),
    # Passed through as an option, the engine's parser refuses it, named as the setting.
    (dict(options={"keep_original": 200.0}), "keep_original", "must be between 0 and 100 (got 200.0)"),
])
def test_invalid_latent_edit_settings(capture, settings, key, reason):
    values = {"prompt": "a man with a beard", "method": "latent_edit", "capture": str(capture), **settings}
    with pytest.raises(SettingsError) as info:
        build_job(Settings(**values))
    assert info.value.key == key and reason in info.value.reason, info.value


def _engine_accepts(jobs: list[dict]) -> list[str]:
    """Run the engine's own parser (engine/spec.py, stdlib only) on each job; '' = accepted."""
    code = ("import json, sys\nfrom engine.spec import parse_job\nfrom engine.errors import EngineError\nout = []\n"
            "for job in json.load(sys.stdin):\n    try:\n        parse_job(job); out.append('')\n"
            "    except EngineError as e:\n        out.append(e.message)\nprint(json.dumps(out))")
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(jobs), capture_output=True, text=True,
                          cwd=REPO, env=runner.child_env(REPO), check=True)
    return json.loads(proc.stdout)


def test_the_engine_parser_accepts_what_the_add_on_writes(capture, tmp_path):
    code = "from engine.methods import CARDS; print(' '.join(CARDS))"
    engine_methods = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                        env=runner.child_env(REPO), check=True).stdout.split())
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "job.json").write_text("{}")
    jobs = []
    assert engine_methods == set(jobspec.method_names())  # the add-on lists every method the engine runs
    for method in sorted(engine_methods):
        card = jobspec.engine_methods.CARDS[method]
        what = {"capture": str(capture)} if card.input == "capture" else {}
        if card.takes_prompt:
            what["prompt"] = "a bronze statue" if card.input == "capture" else "a chair"
        for quality in ("draft", "standard", "high"):
            jobs.append(build_job(Settings(method=method, quality=quality, **what)))
        jobs.append(build_job(Settings(method=method, steps=5, samples_per_ray=4,
                                       radius_min=1.76, radius_max=1000, elevation_min=-90, elevation_max=90,
                                       azimuth_min=-180, azimuth_max=180, fov_min=1, fov_max=150,
                                       texture_size=64, threshold="auto", formats=("npz", "glb"),
                                       device="mps", models={"clip": "ViT-B-16/openai", "perceptual": "vgg16"},
                                       allow_downloads=True, **what)))
    if "dreamfusion" in engine_methods:
        jobs.append(build_job(Settings(prompt="a chair", method="dreamfusion", guidance_scale=7.5, t_range_min=0.2,
                                       t_range_max=0.6)))
    if "nerf_art" in engine_methods:
        jobs.append(build_job(Settings(prompt="ice", method="nerf_art", capture=str(capture),
                                       source_job=str(tmp_path / "job"))))
        jobs.append(build_job(Settings(prompt="ice", method="nerf_art", capture=str(capture), reconstruct_steps=0)))
    if "latent_edit" in engine_methods:
        jobs.append(build_job(Settings(prompt="gold", method="latent_edit", capture=str(capture),
                                       source_job=str(tmp_path / "job"), keep_original=0.0, face=True)))
        jobs.append(build_job(Settings(prompt="gold", method="latent_edit", capture=str(capture), reconstruct_steps=0,
                                       keep_original=100, face=False, guidance_scale=50.0)))
    assert jobs, f"no method in common: add-on {jobspec.method_names()}, engine {engine_methods}"
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


def test_a_method_the_engine_registers_is_in_the_add_ons_lists():
    """The add-on's menus, presets and validation come from the engine's cards: a throwaway method registered
    with the engine (as tests/engine/test_add_a_method.py runs one) appears with no add-on change."""
    from dataclasses import dataclass

    engine = jobspec.engine_methods

    @dataclass(frozen=True)
    class ToyOptions:
        size: float = 0.5

        def validate(self, key):
            if not 0 < self.size < 1:
                raise jobspec.engine_errors.EngineError("invalid_job", f"{key}.size: must be in (0, 1) (got {self.size})")

    card = engine.MethodCard(
        name="toy_sphere", title="Toy Sphere", summary="A sphere (test only)", source="this test", input="text",
        takes_prompt=True, options=ToyOptions,
        defaults={"steps": 30, "render": {"size": 16, "samples_per_ray": 8},
                  "orbit": {"radius": (4.0, 4.0), "elevation_deg": (20.0, 20.0), "azimuth_deg": (0.0, 360.0),
                            "fov_deg": (40.0, 40.0)}},
        presets={"draft": engine.Quality(10, 16, 32), "standard": engine.Quality(30, 16, 64),
                 "high": engine.Quality(60, 32, 64)})
    engine.register(card)
    try:
        assert ("toy_sphere", "Toy Sphere", "A sphere (test only)") in jobspec.method_items("text")
        assert "toy_sphere" in jobspec.method_names() and "toy_sphere" not in jobspec.method_names("capture")
        job = build_job(Settings(method="toy_sphere", prompt="a ball", quality="high", options={"size": 0.25}))
        assert (job["steps"], job["render"], job["export"]) == (60, {"size": 32}, {"resolution": 64})
        with pytest.raises(SettingsError) as info:  # the method's own option rules, from its card
            build_job(Settings(method="toy_sphere", prompt="a ball", options={"size": 3.0}))
        assert info.value.key == "options.size" and "must be in (0, 1)" in info.value.reason
    finally:
        engine.unregister("toy_sphere")
    assert "toy_sphere" not in jobspec.method_names()
