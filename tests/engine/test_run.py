"""The run loop end to end: Dream Fields with tiny models, events, determinism, resume, cancel, errors; a time
budget (reconstruction of a rendered box)."""
import io
import json
import math
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.jobs.budget import Fit, TimeBudget
from engine.jobs.run import run_job
from engine.methods.base import Method, Phase
from engine.methods.dream_fields import method as dream_fields
from engine.methods.reconstruct import method as reconstruct
from capture_support import render_capture
from conftest import ROOT, TINY_OPTIONS, engine, engine_env, read_events, write_job


def assert_same_final_weights(a, b, steps: int) -> None:
    """Both job folders' last checkpoints are at `steps` and hold bit-identical weights (a fixed seed on the CPU)."""
    (step_a, wa), (step_b, wb) = final_weights(a), final_weights(b)
    assert step_a == step_b == steps and wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]


def final_weights(job_dir):
    meta = json.loads((job_dir / "checkpoints" / "latest.json").read_text())
    return meta["step"], load_file(str(job_dir / "checkpoints" / meta["tensors"]))


def test_dream_fields_run_end_to_end(tmp_path, tiny_models):
    # The field starts as a fog (density bias -1, not Dream Fields' default -3, which starts above the target),
    # so the transmittance loss has work to do.
    job = write_job(tmp_path / "job", tiny_models, steps=30, preview_every=10, checkpoint_every=10,
                    render={"size": 32, "samples_per_ray": 24},
                    options={"field": {**TINY_OPTIONS["field"], "density_bias": -1.0}})
    out = engine("run", job)
    assert out.returncode == 0, out.stderr[-3000:]
    stdout_events = [json.loads(line) for line in out.stdout.splitlines()]  # every stdout line is an event
    assert stdout_events == read_events(job)
    kinds = [e["event"] for e in stdout_events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and stdout_events[-1]["status"] == "succeeded"
    progress = [e for e in stdout_events if e["event"] == "progress"]
    assert progress[-1]["step"] == 30 and progress[-1]["total"] == 30
    assert all(e["elapsed_s"] >= 0 and e["eta_s"] >= 0 for e in progress)
    assert set(progress[0]["losses"]) == {"clip", "transmittance"}
    # Transmittance moves from where it starts toward its annealed target (0.88).
    first, last = progress[0]["metrics"], progress[-1]["metrics"]
    assert abs(last["transmittance"] - 0.88) < abs(first["transmittance"] - 0.88)
    previews = [e["path"] for e in stdout_events if e["event"] == "preview"]
    assert previews == ["previews/step_000010.png", "previews/step_000020.png", "previews/step_000030.png"]
    assert all((job / p).stat().st_size > 100 for p in previews)
    artifacts = {e["kind"]: e["path"] for e in stdout_events if e["event"] == "artifact"}
    assert artifacts["mesh"] == "result/mesh.npz" and artifacts["glb"] == "result/mesh.glb"
    mesh = np.load(job / "result" / "mesh.npz")
    assert mesh["vertices"].dtype == np.float32 and mesh["vertices"].shape[1] == 3 and len(mesh["vertices"]) > 0
    assert mesh["faces"].dtype == np.int32 and len(mesh["faces"]) > 0 and mesh["faces"].max() < len(mesh["vertices"])
    colours = mesh["vertex_colors"]
    assert colours.shape == mesh["vertices"].shape and colours.min() >= 0 and colours.max() <= 1
    assert (job / "log.txt").read_text().count("engine.outputs: mesh:") == 1
    # Without a budget the run takes every step; `finished` says how long it took, for the add-on's estimates.
    finished = stdout_events[-1]
    assert finished["step"] == 30 and "budget_cut" not in finished
    assert finished["elapsed_s"] > finished["build_s"] > 0 and finished["step_s"] > 0 and finished["end_s"] > 0
    assert json.loads((job / "checkpoints" / "latest.json").read_text())["schedule"] is None
    # 30 tiny steps leave a fog: the export says so, in the log and as a `log` event.
    warnings = [e for e in stdout_events if e["event"] == "log" and e["level"] == "warning"]
    assert any("mostly fog" in e["message"] for e in warnings)


def test_clip_similarity_rises_over_the_run(tmp_path, tiny_models):
    """The CLIP loss on a fixed set of views and crops is lower after optimising than before."""
    job = write_job(tmp_path / "job", tiny_models, steps=40, options={"transmittance_target": [0.4, 0.5]})
    assert run_job(job, False, io.StringIO()) == 0
    from engine.jobs.checkpoint import load_checkpoint
    from engine.spec import load_job

    spec = load_job(job)
    torch.manual_seed(spec.seed)
    method = dream_fields.build(spec, torch.device("cpu"))  # the same initial weights as the run

    def fixed_loss():
        with torch.no_grad():
            return sum(method.step(10_000 + i, torch.Generator().manual_seed(i)).losses["clip"].item() for i in range(8)) / 8

    before = fixed_loss()
    load_checkpoint(job, method.modules, None, torch.device("cpu"))
    after = fixed_loss()
    assert after < before - 0.01, (before, after)


def test_same_seed_same_weights_bit_for_bit(tmp_path, tiny_models):
    a = write_job(tmp_path / "a", tiny_models, steps=6)
    b = write_job(tmp_path / "b", tiny_models, steps=6)
    c = write_job(tmp_path / "c", tiny_models, steps=6, seed=4)
    for job in (a, b, c):
        assert run_job(job, False, io.StringIO()) == 0
    _, wa = final_weights(a)
    _, wb = final_weights(b)
    _, wc = final_weights(c)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert np.array_equal(np.load(a / "result/mesh.npz")["vertices"], np.load(b / "result/mesh.npz")["vertices"])


def cancel_at_step(module, job_dir, at: int, monkeypatch):
    """Make module.build's method write job_dir/cancel when it reaches step `at`; returns the original build."""
    build = module.build

    def build_cancelling(spec, device):
        method = build(spec, device)
        step = method.step

        def stepping(k, gen):
            if k == at:
                (job_dir / "cancel").write_text("")
            return step(k, gen)
        method.step = stepping
        return method

    monkeypatch.setattr(module, "build", build_cancelling)
    return build


def test_resume_after_cancel_reaches_the_same_weights(tmp_path, tiny_models, monkeypatch):
    straight = write_job(tmp_path / "straight", tiny_models, steps=10, checkpoint_every=3)
    assert run_job(straight, False, io.StringIO()) == 0
    resumed = write_job(tmp_path / "resumed", tiny_models, steps=10, checkpoint_every=3)

    cancel_at_step(dream_fields, resumed, 5, monkeypatch)
    assert run_job(resumed, False, io.StringIO()) == 8
    events = read_events(resumed)
    assert events[-1] == {**events[-1], "event": "finished", "status": "cancelled", "step": 6}
    assert final_weights(resumed)[0] == 6  # the cancel saved a checkpoint after the step in flight
    monkeypatch.undo()
    (resumed / "cancel").unlink()
    assert run_job(resumed, True, io.StringIO()) == 0
    assert_same_final_weights(straight, resumed, 10)


def test_resume_refuses_a_changed_job(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", tiny_models, steps=2)
    assert run_job(job, False, io.StringIO()) == 0
    write_job(job, tiny_models, steps=4, prompt="a blue chair")
    assert run_job(job, True, io.StringIO()) == 2
    error = [e for e in read_events(job) if e["event"] == "error"][-1]
    assert error["kind"] == "invalid_job" and "'prompt'" in error["message"]
    write_job(job, tiny_models, steps=4)  # more steps is a legitimate change
    assert run_job(job, True, io.StringIO()) == 0 and final_weights(job)[0] == 4
    # Fewer steps than the checkpoint took: refused, and the checkpoint keeps its step (it was once relabelled).
    write_job(job, tiny_models, steps=3)
    assert run_job(job, True, io.StringIO()) == 2
    error = [e for e in read_events(job) if e["event"] == "error"][-1]
    assert error["message"] == "--resume: the checkpoint is at step 4, beyond the job's 3 steps"
    assert "give at least 4 steps" in error["hint"] and final_weights(job)[0] == 4


@pytest.mark.parametrize("how", ["sigterm", "cancel_file"])
def test_cancel_stops_within_a_step(tmp_path, tiny_models, how):
    job = write_job(tmp_path / "job", tiny_models, steps=100000)
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(job)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=engine_env(), cwd=ROOT)
    for line in proc.stdout:
        if json.loads(line)["event"] == "progress":
            break
    asked = time.monotonic()
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        (job / "cancel").write_text("")
    rest = [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 8
    assert time.monotonic() - asked < 30
    assert rest[-1]["event"] == "finished" and rest[-1]["status"] == "cancelled"
    assert final_weights(job)[0] == rest[-1]["step"]
    assert not (job / "result").exists()


def failing_build(fail_at, exc):
    build = dream_fields.build

    def make(spec, device):
        method = build(spec, device)
        step = method.step

        def stepping(k, gen):
            out = step(k, gen)
            if k == fail_at:
                if exc is None:
                    out.losses["clip"] = out.losses["clip"] * float("nan")
                else:
                    raise exc
            return out
        method.step = stepping
        return method
    return make


def test_non_finite_loss_is_diverged_and_keeps_the_last_good_checkpoint(tmp_path, tiny_models, monkeypatch):
    job = write_job(tmp_path / "job", tiny_models, steps=10, checkpoint_every=2)
    monkeypatch.setattr(dream_fields, "build", failing_build(5, None))
    assert run_job(job, False, io.StringIO()) == 5
    events = read_events(job)
    error = [e for e in events if e["event"] == "error"][0]
    assert error["kind"] == "diverged" and "step 5" in error["message"] and "step 4" in error["hint"]
    assert events[-1]["status"] == "failed"
    step, weights = final_weights(job)
    assert step == 4 and all(torch.isfinite(v).all() for v in weights.values())


def test_out_of_memory_names_what_to_lower(tmp_path, tiny_models, monkeypatch):
    job = write_job(tmp_path / "job", tiny_models, steps=4)
    monkeypatch.setattr(dream_fields, "build", failing_build(1, torch.OutOfMemoryError("CUDA out of memory")))
    assert run_job(job, False, io.StringIO()) == 4
    error = [e for e in read_events(job) if e["event"] == "error"][0]
    assert error["kind"] == "out_of_memory" and "render.size" in error["hint"] and "samples_per_ray" in error["hint"]


def test_missing_model_is_model_missing_with_the_download_command(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", {"clip": str(tmp_path / "no-such-model")})
    out = engine("run", job)
    assert out.returncode == 3
    error = [e for e in read_events(job) if e["event"] == "error"][0]
    assert error["kind"] == "model_missing" and "no-such-model" in error["message"]
    job2 = write_job(tmp_path / "job2", {"clip": "ViT-B-16/openai"})
    out = engine("run", job2, env=engine_env(HF_HOME=str(tmp_path / "empty-hf"), HTTPS_PROXY="http://127.0.0.1:9"))
    assert out.returncode == 3, out.stderr[-2000:]
    error = [e for e in read_events(job2) if e["event"] == "error"][0]
    assert error["kind"] == "model_missing" and "python -m engine models download ViT-B-16/openai" in error["hint"]


def test_empty_surface_is_an_error_and_export_recovers(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", tiny_models, steps=3, export={"threshold": 1e6})
    out = engine("run", job)
    assert out.returncode == 7
    error = [e for e in read_events(job) if e["event"] == "error"][0]
    assert error["kind"] == "empty_surface" and "1e+06" in error["message"] or "1000000" in error["message"]
    assert not (job / "result" / "mesh.npz").exists()
    # The checkpoint was kept: re-export with the automatic threshold.
    out = engine("export", job, "--threshold", "auto")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["mesh"] == "result/mesh.npz"
    assert len(np.load(job / "result" / "mesh.npz")["faces"]) > 0


def test_invalid_job_fails_fast_naming_the_key(tmp_path):
    job = tmp_path / "job"
    job.mkdir()
    (job / "job.json").write_text(json.dumps({"spec_version": 1, "method": "dream_fields", "prompt": "x",
                                              "render": {"size": 90}}))
    t = time.monotonic()
    out = engine("run", job)
    assert out.returncode == 2 and time.monotonic() - t < 20
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["event"] for e in events] == ["error", "finished"]
    assert events[0]["kind"] == "invalid_job" and events[0]["message"].startswith("render.size:")


def test_render_turntable_and_cameras_round_trip(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", tiny_models, steps=3)
    assert run_job(job, False, io.StringIO()) == 0
    out = engine("render", job, "--out", tmp_path / "turn", "--turntable", 3, "--size", 32)
    assert out.returncode == 0, out.stderr[-2000:]
    transforms = json.loads((tmp_path / "turn" / "transforms.json").read_text())
    assert len(transforms["frames"]) == 3
    again = engine("render", job, "--out", tmp_path / "again", "--cameras", tmp_path / "turn" / "transforms.json")
    assert again.returncode == 0, again.stderr[-2000:]
    from PIL import Image

    for frame in transforms["frames"]:
        a = np.asarray(Image.open(tmp_path / "turn" / frame["file_path"]))
        b = np.asarray(Image.open(tmp_path / "again" / frame["file_path"]))
        assert a.shape == (32, 32, 3) and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_check_reports_torch_devices_and_models(tiny_models):
    out = engine("check", "--json", "--models", json.dumps(tiny_models))
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["torch"].startswith("2.") and report["devices"][0]["name"] == "cpu"
    assert report["models"]["clip"]["available"] is True
    assert "diffusion" in report["models"]


def test_help_documents_exit_codes():
    out = engine("--help")
    assert out.returncode == 0 and "exit codes" in out.stdout and "model_missing" in out.stdout


def test_old_flat_option_keys_run_resume_and_match_the_nested_ones(tmp_path, tiny_models):
    """A job.json of an older engine (flat field/empty-space keys) gives the same weights as today's nested keys,
    and a checkpoint whose saved job has the old layout resumes."""
    from engine.options import LEGACY_OPTION_KEYS

    flat = {"n_augments": 2, "field": "hashgrid", "hash_levels": 4, "hash_log2_size": 12, "hash_max_resolution": 64,
            "mlp_width": 16, "occupancy_resolution": 16, "occupancy_every": 2}
    nested = {"n_augments": 2, "field": {"backbone": "hashgrid", "hash_levels": 4, "hash_log2_size": 12,
                                         "hash_max_resolution": 64, "mlp_width": 16},
              "occupancy": {"resolution": 16, "every": 2}}
    a, b = write_job(tmp_path / "flat", tiny_models, steps=4), write_job(tmp_path / "nested", tiny_models, steps=4)
    for job, options in ((a, flat), (b, nested)):
        (job / "job.json").write_text(json.dumps({**json.loads((job / "job.json").read_text()), "options": options}))
    assert run_job(a, False, io.StringIO()) == 0 and run_job(b, False, io.StringIO()) == 0
    (_, wa), (_, wb) = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # An old engine's checkpoint recorded the job with flat options: --resume with more steps still accepts it.
    meta_path = a / "checkpoints" / "latest.json"
    meta = json.loads(meta_path.read_text())
    saved = meta["job"]["options"]
    old = {k: v for k, v in saved.items() if k not in ("field", "occupancy")}
    # Only the keys that had a flat form (density_bias and the tri-plane keys are newer: no flat-era job had them).
    old.update({k: v for k, v in saved["field"].items() if k in LEGACY_OPTION_KEYS}, field=saved["field"]["backbone"])
    old.update({f"occupancy_{k}": v for k, v in saved["occupancy"].items()})
    meta["job"]["options"] = old
    meta_path.write_text(json.dumps(meta))
    (a / "job.json").write_text(json.dumps({**json.loads((a / "job.json").read_text()), "steps": 6}))
    assert run_job(a, True, io.StringIO()) == 0
    assert final_weights(a)[0] == 6


# --- A time budget (job.json budget_s): a reconstruction of a rendered box, small enough for a 2-core CPU.
TINY_FIELD = {"hash_levels": 8, "hash_log2_size": 14, "hash_max_resolution": 128, "mlp_width": 32}
BUDGET_S = 20.0


def reconstruct_job(job_dir, capture, **overrides):
    job = {"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)}, "steps": 40, "seed": 0,
           "device": "cpu", "render": {"size": 32, "samples_per_ray": 48}, "export": {"resolution": 64},
           "preview_every": 0, "checkpoint_every": 0, "options": {"rays_per_step": 1024, "field": TINY_FIELD},
           **overrides}
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir


@pytest.fixture(scope="module")
def box_capture(tmp_path_factory):
    return render_capture(tmp_path_factory.mktemp("capture") / "box", n=12, size=32)


def test_a_budget_stops_the_run_in_time_with_its_mesh(tmp_path, box_capture):
    """100000 steps asked for, 20 s given: the run times its steps, fits as many as the budget holds besides
    the export, and ends, exported, within the budget. Measured on the 2-core CPU: ~120-270 steps (0.05-0.13 s
    each as the machine is shared), 16-17.5 s inside the run, 17.5-19 s for the whole process."""
    job = reconstruct_job(tmp_path / "job", box_capture, steps=100000, budget_s=BUDGET_S)
    t = time.monotonic()
    out = engine("run", job)
    wall = time.monotonic() - t
    assert out.returncode == 0, out.stderr[-3000:]
    assert 0.5 * BUDGET_S <= wall <= 1.25 * BUDGET_S, wall
    events = read_events(job)
    finished = events[-1]
    assert finished["status"] == "succeeded" and finished["budget_s"] == BUDGET_S and finished["budget_cut"] is True
    assert finished["elapsed_s"] <= BUDGET_S and finished["step_s"] > 0 and finished["end_s"] > 0
    # The progress bar's total: the job's until the steps are timed, then the fitted one, which the run reaches.
    progress = [e for e in events if e["event"] == "progress"]
    assert progress[0]["step"] == 1 and progress[0]["total"] == 100000
    assert progress[-1]["step"] == progress[-1]["total"] == finished["step"] < 100000
    logs = [e["message"] for e in events if e["event"] == "log"]
    plan = next(m for m in logs if re.match(r"budget 20 s: \d+ of 100000 steps fit \(", m))
    assert not any("overrun" in m for m in logs)
    assert "s/step measured" in plan and "reserved for export" in plan
    mesh = np.load(job / "result" / "mesh.npz")
    assert len(mesh["faces"]) > 0
    # The fit is recorded with the checkpoint, for --resume.
    schedule = json.loads((job / "checkpoints" / "latest.json").read_text())["schedule"]
    assert schedule["job_phases"] == [["reconstruct", 100000]] and schedule["fits"]


def test_a_budget_too_short_for_the_job_still_exports_and_says_it_overran(tmp_path, box_capture):
    """1 s cannot hold the start-up, a step and the export: the run takes one step, exports, and warns (log and
    event) with the time it took and the budget to give instead."""
    job = reconstruct_job(tmp_path / "job", box_capture, steps=1000, budget_s=1)
    out = engine("run", job)
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_events(job)
    finished = events[-1]
    assert finished["status"] == "succeeded" and finished["elapsed_s"] > 1 and finished["step"] >= 1
    warning = next(e for e in events if e["event"] == "log" and "overrun" in e["message"])
    assert warning["level"] == "warning" and "give this job at least" in warning["message"]
    assert "overrun" in (job / "log.txt").read_text()


@pytest.mark.parametrize("layout", ["latest.json", "schedule.json of engines before 2026-12"])
def test_resume_continues_the_budget_fitted_schedule(tmp_path, box_capture, monkeypatch, layout):
    """A budget that fits 12 of 40 steps after step 3 (made so by hand); the run is cancelled after step 6 and
    resumed: it ends at step 12 with the weights of the uninterrupted run, its learning-rate decay fitted to 12.
    The schedule is read from latest.json, or from the schedule.json an older engine wrote beside it."""
    monkeypatch.setattr(TimeBudget, "step_done", lambda self, done, total, now, phase: (
        Fit(12, done, 0.1, 1.0, False) if done == 3 else None))
    monkeypatch.setattr(TimeBudget, "must_stop", lambda self, now: False)
    straight = reconstruct_job(tmp_path / "straight", box_capture, budget_s=1000)
    assert run_job(straight, False, io.StringIO()) == 0
    resumed = reconstruct_job(tmp_path / "resumed", box_capture, budget_s=1000)
    build = cancel_at_step(reconstruct, resumed, 5, monkeypatch)
    assert run_job(resumed, False, io.StringIO()) == 8
    if layout != "latest.json":
        latest = resumed / "checkpoints" / "latest.json"
        meta = json.loads(latest.read_text())
        (resumed / "checkpoints" / "schedule.json").write_text(json.dumps({"step": meta["step"],
                                                                           **meta.pop("schedule")}))
        latest.write_text(json.dumps(meta))
    monkeypatch.setattr(reconstruct, "build", build)
    (resumed / "cancel").unlink()
    assert run_job(resumed, True, io.StringIO()) == 0
    assert_same_final_weights(straight, resumed, 12)
    last = [e for e in read_events(resumed) if e["event"] == "progress"][-1]
    assert last["total"] == 12 and last["lr"] == pytest.approx(1e-2 * 0.1 ** (11 / 12))  # decays over 12 steps
    # Changed steps are a new schedule: the recorded fit is dropped and all 44 steps run.
    monkeypatch.undo()
    reconstruct_job(resumed, box_capture, steps=44)
    assert run_job(resumed, True, io.StringIO()) == 0 and final_weights(resumed)[0] == 44


class Phased(Method):
    def __init__(self, *phases):
        self.phases = tuple(Phase(name, steps) for name, steps in phases)


def test_fit_steps_scales_the_phases_that_are_left():
    m = Phased(("reconstruct", 2000), ("style", 400))
    m.fit_steps(600)
    assert m.phases == (Phase("reconstruct", 500), Phase("style", 100)) and m.job_phases[0].steps == 2000
    # 300 steps in: the rest of the current phase and the next share what is left, as the job weighted them.
    m.fit_steps(700, done=300)
    assert m.phases == (Phase("reconstruct", 567), Phase("style", 133))
    # An ended phase keeps its length.
    m.fit_steps(600, done=570)
    assert m.phases == (Phase("reconstruct", 567), Phase("style", 33))
    # Every phase the job gave steps keeps one; an empty one stays empty.
    m = Phased(("invert", 500), ("edit", 150), ("tune", 0))
    m.fit_steps(1)
    assert [p.steps for p in m.phases] == [1, 1, 0] and m.total_steps == 2
    m = Phased(("generate", 100000))
    m.fit_steps(412, done=5)
    assert m.phases == (Phase("generate", 412),)


def steps_at(budget, done, total, t, step_s, until, phase=""):
    """Feed `budget` steps of step_s seconds from (done, t) until time `until`, applying its fits; returns
    (done, total, t, fits)."""
    fits = []
    while t + step_s <= until and done < total:
        done, t = done + 1, t + step_s
        fit = budget.step_done(done, total, t, phase)
        if fit is not None:
            fits.append(fit)
            total = fit.total
    return done, total, t, fits


def test_time_budget_fits_refits_and_stops():
    # 100 s from t=0, 10 s reserved for the export; 5 s of start-up, a 2 s warm-up step, then 1 s per step.
    budget = TimeBudget(100.0, started=0.0, reserve_s=10.0, cap=100000)
    assert budget.stop_by == pytest.approx(100 - 10 - (0.03 * 100 + 0.5))  # 86.5
    budget.begin(5.0)
    assert budget.step_done(1, 100000, 7.0) is None  # the warm-up step is not timed
    done, total, t, fits = steps_at(budget, 1, 100000, 7.0, 1.0, until=9.0)
    assert [(f.total, f.refit) for f in fits] == [(3 + math.floor(86.5 - 9.0), False)]  # 2 s measured: 80 steps
    assert fits[0].s_per_step == pytest.approx(1.0)
    # The machine slows to 2 s a step: fewer steps, so that the planned end stays at 86.5 s.
    done, total, t, fits = steps_at(budget, done, total, t, 2.0, until=40.0)
    assert fits and all(f.refit and f.total < 80 for f in fits)
    assert abs(t + (total - done) * 2.0 - 86.5) <= max(0.05 * 100, 4.0)
    # ... and speeds up to 0.5 s: steps come back.
    done, total2, t, fits = steps_at(budget, done, total, t, 0.5, until=70.0)
    assert fits and total2 > total
    # However the plan stands, no further step (as long as the last, 0.5 s) may run into the reserve (from 90 s).
    budget.step_done(done + 1, total2, 88.0)
    budget.step_done(done + 2, total2, 88.5)
    assert not budget.must_stop(89.4) and budget.must_stop(89.6)


def test_time_budget_never_fits_more_than_the_job_asks():
    budget = TimeBudget(100.0, started=0.0, reserve_s=1.0, cap=50)
    budget.begin(0.0)
    done, total, t, fits = steps_at(budget, 0, 50, 0.0, 0.1, until=3.05)
    assert [f.total for f in fits] == [50] and done == 30


def test_time_budget_times_a_new_phase_afresh():
    """NeRF-Art's style steps cost ten times its reconstruction steps: once the style phase's steps are timed (its
    first left out), the plan is refitted to them at once."""
    budget = TimeBudget(1000.0, started=0.0, reserve_s=10.0, cap=2400)
    budget.begin(0.0)
    done, total, t, fits = steps_at(budget, 0, 2400, 0.0, 0.1, until=20.0, phase="reconstruct")
    assert [f.refit for f in fits] == [False] and total == 2400  # all fit at 0.1 s a step
    done, total2, t, fits = steps_at(budget, done, total, t, 1.0, until=40.0, phase="style")
    # Timed over 10 s (2% of the budget, at most 10 s) after the first style step, which ended at t = 21.
    assert len(fits) == 1 and fits[0].refit and fits[0].s_per_step == pytest.approx(1.0)
    assert fits[0].left_s == pytest.approx(1000 - 10 - (0.03 * 1000 + 0.5) - 31, abs=0.5)
    assert total2 == fits[0].total == fits[0].done + math.floor(fits[0].left_s)


def test_time_budget_wins_back_steps_that_got_faster():
    """The CPU synthetic8 run: the grid empties and steps fall from ~1 s to ~0.1 s just after a refit made for the
    slow ones. The plan must not end early with the budget unspent; the run takes steps until the reserve."""
    budget = TimeBudget(300.0, started=0.0, reserve_s=36.0, cap=3000)
    budget.begin(3.0)
    done, total, t, fits = steps_at(budget, 0, 3000, 3.0, 1.0, until=150.0)
    assert fits and total < 300
    done, total, t, fits = steps_at(budget, done, total, t, 0.1, until=300.0)
    assert fits and total > 1000
    assert t >= budget.stop_by - 5.0  # before the fix: the plan ended at ~180 s of its 254.5
    assert not budget.must_stop(t - 0.1)


def test_time_budget_gives_a_smaller_reserve_to_the_steps():
    """The reserve is estimated again once a window (reserve_due); the end of the run got cheaper as training
    emptied space (CPU synthetic8: 36 s reserved, 3.7 s taken), and the plan takes the freed time."""
    budget = TimeBudget(300.0, started=0.0, reserve_s=36.0, cap=100000)
    budget.begin(3.0)
    done, total, t, fits = steps_at(budget, 0, 100000, 3.0, 1.0, until=20.0)
    assert fits and not budget.reserve_due(t)
    first_end = budget.stop_by
    done, total, t, fits = steps_at(budget, done, total, t, 1.0, until=31.0)
    assert budget.reserve_due(t)  # a window (30 s) after the start
    budget.set_reserve(6.0, t)
    assert budget.stop_by == pytest.approx(first_end + 30.0) and not budget.reserve_due(t + 29.0)
    done, total, t, fits = steps_at(budget, done, total, t, 1.0, until=300.0)
    assert fits and fits[-1].refit and t >= budget.stop_by - 5.0 and t > first_end + 25.0
    assert not budget.must_stop(t - 1.0)
