"""The panel's estimate of how long a job takes, learnt from the job folders already run (blender_text3d/estimate.py).
Plain pytest: job folders written by hand with the events the engine writes."""
from __future__ import annotations

import json

import pytest
from addon_support import make_capture

from blender_text3d import estimate
from blender_text3d.estimate import Timing, duration

T0 = 1_800_000_000.0


@pytest.fixture
def capture(tmp_path):
    return make_capture(tmp_path / "statue", 12)


def reconstruct_job(capture, **overrides) -> dict:
    return {"spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)}, "steps": 3000,
            "device": "auto", "options": {"rays_per_step": 4096}, **overrides}


def write_run(jobs, name, job, step_s=0.14, steps=400, build_s=10.0, end_s=20.0, status="succeeded", fields=True,
              resumed_from=None):
    """A job folder as the engine leaves it: job.json and events.jsonl (started, progress every few steps,
    finished with its timings, or without them as engines before the time budget wrote it)."""
    folder = jobs / name
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps(job))
    events = []
    if resumed_from is not None:  # an earlier, slower run of the same folder
        events += [{"event": "started", "time": T0 - 1000}, {"event": "progress", "time": T0 - 990, "step": 1,
                                                             "elapsed_s": 1.0, "total": steps}]
        events += [{"event": "progress", "time": T0 - 900, "step": 11, "elapsed_s": 101.0, "total": steps},
                   {"event": "finished", "time": T0 - 900, "status": "cancelled", "step": 11}]
    events.append({"event": "started", "time": T0, "method": job["method"], "steps": job["steps"]})
    first = 1 if resumed_from is None else resumed_from + 1
    for step in range(first, steps + 1, 7):
        elapsed = 2 * step_s + (step - first) * step_s  # the first step: warm-up, twice as long
        events.append({"event": "progress", "time": T0 + build_s + elapsed, "step": step, "elapsed_s": elapsed,
                       "total": steps})
    end = events[-1]["time"]
    finished = {"event": "finished", "time": end + end_s, "status": status, "step": events[-1]["step"]}
    if fields:
        finished.update(elapsed_s=end + end_s - T0, build_s=build_s, step_s=step_s,
                        **({"end_s": end_s} if status == "succeeded" else {}))
    events.append(finished)
    (folder / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return folder


def test_no_estimate_before_a_job_of_the_method_ran_here(tmp_path, capture):
    assert estimate.estimate(reconstruct_job(capture), tmp_path / "none").text == \
        "no estimate yet: run a reconstruct job once on this machine"
    write_run(tmp_path, "20250101-000000-chair", {"spec_version": 1, "method": "dream_fields", "prompt": "a chair",
                                                  "steps": 10, "device": "auto"})
    write_run(tmp_path, "20250101-000001-statue", reconstruct_job(capture, device="cpu"))  # another device
    guess = estimate.estimate(reconstruct_job(capture), tmp_path)
    assert guess.seconds is None and guess.steps == 3000 and guess.text.startswith("no estimate yet")
    assert "on cuda:1 on this machine" in estimate.estimate(reconstruct_job(capture, device="cuda:1"), tmp_path).text


def test_estimate_from_the_last_job_of_the_method(tmp_path, capture):
    write_run(tmp_path, "20250101-000000-statue", reconstruct_job(capture), step_s=0.5)
    write_run(tmp_path, "20250102-000000-statue", reconstruct_job(capture), step_s=0.14)  # the newest counts
    guess = estimate.estimate(reconstruct_job(capture), tmp_path)
    # 10 s start-up + 3000 x 0.14 s + 20 s export (the export at 256 as before).
    assert guess.seconds == pytest.approx(10 + 3000 * 0.14 + 20) and guess.steps == 3000
    assert guess.source == "20250102-000000-statue"
    assert guess.text == "about 8 min for 3000 steps (0.14 s/step, from your last reconstruct job)"


def test_a_budget_says_how_many_steps_fit(tmp_path, capture):
    write_run(tmp_path, "20250101-000000-statue", reconstruct_job(capture))
    guess = estimate.estimate(reconstruct_job(capture, budget_s=300), tmp_path)
    # As the engine plans it: 300 s less start-up, the export with its safety factor and the margin, in steps.
    room = 300 - 10 - 1.25 * 20 - (0.03 * 300 + 0.5)
    assert guess.steps == int(room / 0.14) < 3000 and guess.seconds <= 300
    assert guess.text == f"about {guess.steps} of 3000 steps fit in 5 min (0.14 s/step, from your last reconstruct job)"
    roomy = estimate.estimate(reconstruct_job(capture, budget_s=3600), tmp_path)
    assert roomy.steps == 3000 and roomy.text.startswith("about 8 min for 3000 steps, within the 1 h 00 min budget")


def test_other_settings_are_scaled_by_the_work_per_step(tmp_path, capture):
    write_run(tmp_path, "20250101-000000-statue", reconstruct_job(capture, options={"rays_per_step": 1024},
                                                                   export={"resolution": 128}))
    guess = estimate.estimate(reconstruct_job(capture), tmp_path)  # 4096 rays, mesh 256
    assert guess.step_s == pytest.approx(4 * 0.14)
    assert guess.seconds == pytest.approx(10 + 3000 * 4 * 0.14 + 20 * 8)
    assert "scaled to these settings" in guess.text
    # Text methods: render size squared times samples per ray.
    chair = {"spec_version": 1, "method": "dream_fields", "prompt": "a chair", "steps": 100, "device": "auto",
             "render": {"size": 64, "samples_per_ray": 32}}
    write_run(tmp_path, "20250101-000001-chair", chair, step_s=0.2)
    bigger = {**chair, "render": {"size": 128, "samples_per_ray": 64}}
    assert estimate.estimate(bigger, tmp_path).step_s == pytest.approx(0.2 * 4 * 2)


def test_runs_of_older_engines_and_resumed_runs(tmp_path, capture):
    """Without the finished event's timings the progress events give them; a resumed folder counts its last run;
    a job still running (no finished event yet) or one that never stepped is not read."""
    write_run(tmp_path, "20250101-000000-old", reconstruct_job(capture), step_s=0.3, fields=False)
    timing = estimate.read_timing(tmp_path / "20250101-000000-old")
    assert timing.step_s == pytest.approx(0.3) and timing.build_s == pytest.approx(10 + 0.3)
    assert timing.end_s == pytest.approx(20) and timing.work == 4096 * 96 and timing.resolution == 256
    write_run(tmp_path, "20250102-000000-resumed", reconstruct_job(capture), step_s=0.2, resumed_from=11)
    assert estimate.read_timing(tmp_path / "20250102-000000-resumed").step_s == pytest.approx(0.2)
    running = write_run(tmp_path, "20250103-000000-running", reconstruct_job(capture), step_s=9.0)
    lines = (running / "events.jsonl").read_text().splitlines()
    (running / "events.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    broken = tmp_path / "20250104-000000-broken"
    broken.mkdir()
    (broken / "job.json").write_text("{")
    (broken / "events.jsonl").write_text('{"event": "finished", "status": "failed"}\n')
    assert [t.job for t in estimate.timings(tmp_path)] == ["20250102-000000-resumed", "20250101-000000-old"]
    assert estimate.estimate(reconstruct_job(capture), tmp_path).source == "20250102-000000-resumed"


def test_cancelled_runs_give_their_speed_and_a_finished_one_its_export(tmp_path, capture):
    write_run(tmp_path, "20250101-000000-done", reconstruct_job(capture), step_s=0.5, end_s=30.0)
    write_run(tmp_path, "20250102-000000-cancelled", reconstruct_job(capture), step_s=0.2, status="cancelled")
    assert estimate.read_timing(tmp_path / "20250102-000000-cancelled").end_s is None
    # The newest with an export: the cancelled run has none.
    assert estimate.estimate(reconstruct_job(capture), tmp_path).source == "20250101-000000-done"


def test_nerf_art_counts_its_reconstruction_steps(tmp_path, capture):
    job = {"spec_version": 1, "method": "nerf_art", "prompt": "bronze", "inputs": {"capture": str(capture)},
           "steps": 400, "device": "auto", "options": {"reconstruct_steps": 2000}}
    write_run(tmp_path, "20250101-000000-art", job, step_s=0.3)
    assert estimate.estimate(job, tmp_path).steps == 2400


def test_durations():
    assert [duration(s) for s in (0.2, 45, 89, 90, 420, 3599, 3600, 4800)] == \
        ["1 s", "45 s", "89 s", "2 min", "7 min", "1 h 00 min", "1 h 00 min", "1 h 20 min"]


def test_timing_is_read_again_only_when_the_events_change(tmp_path, capture, monkeypatch):
    write_run(tmp_path, "20250101-000000-statue", reconstruct_job(capture))
    reads = []
    read = estimate.read_timing
    monkeypatch.setattr(estimate, "read_timing", lambda folder: reads.append(folder) or read(folder))
    for _ in range(3):
        assert [t.job for t in estimate.timings(tmp_path)] == ["20250101-000000-statue"]
    assert len(reads) <= 1  # once, or not at all when another test read this very file (same mtime and size)
    assert isinstance(estimate.timings(tmp_path)[0], Timing)
