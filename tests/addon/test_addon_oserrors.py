"""Operating-system errors (unwritable jobs folder, full disk, a job folder deleted or locked while the engine
runs, a missing engine) become failed jobs and panel reports that name the path and what to change.

The paths and runner tests need no Blender; those that take the `scene` fixture do.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from addon_support import FAKE_ROOT, drive, make_capture

from blender_text3d import jobspec, paths, runner, tasks

try:  # Blender's module, for the tests at the end (importing it makes addon_utils importable)
    import bpy
except ImportError:  # plain Python: the paths and runner tests still run
    bpy = None

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
SMALL = dict(steps=10, render_size=32, mesh_resolution=32, device="cpu")


@contextlib.contextmanager
def unwritable(folder: Path):
    """`folder` (made if missing) with nothing creatable in it, as the case's make.py does it: root ignores
    permission bits, so as root the immutable attribute (chattr +i), else chmod 555. Undone on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if AS_ROOT:
            done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
            assert done.returncode == 0, f"chattr +i {folder} failed: {done.stderr}"
        else:
            folder.chmod(0o555)
        with pytest.raises(OSError):  # it worked: nothing can be made in it any more
            (folder / "probe").mkdir()
        yield folder
    finally:
        if AS_ROOT:
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        if folder.exists():
            folder.chmod(0o755)


def disk_full_on(monkeypatch, name: str) -> list:
    """Make Path.write_text of files called `name` write half their text, then fail as a full disk does.
    Returns the paths it failed on."""
    real, failed = pathlib.Path.write_text, []

    def write_text(self, data, *args, **kwargs):
        if self.name != name:
            return real(self, data, *args, **kwargs)
        real(self, data[:len(data) // 2], *args, **kwargs)
        failed.append(self)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    return failed


def write_job(job_dir: Path, steps: int) -> Path:
    spec = jobspec.build_job(jobspec.Settings(prompt="a cup", steps=steps, render_size=32, mesh_resolution=32))
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.json").write_text(json.dumps(spec))
    return job_dir


def start_run(job_dir: Path, steps: int, **kwargs) -> runner.EngineRun:
    run = runner.EngineRun(sys.executable, write_job(job_dir, steps), engine_root=FAKE_ROOT, **kwargs)
    run.start()
    assert not run.done, run.state.error
    return run


def wait_for_step(run: runner.EngineRun, step: int = 1, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while run.state.step < step:
        assert not run.done and time.monotonic() < deadline, run.state
        run.poll()
        time.sleep(0.01)


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# --- paths: making a job folder, no Blender -------------------------------------------------------------

def test_unwritable_jobs_folder_is_a_folder_error_naming_it(tmp_path):
    with unwritable(tmp_path / "jobs") as jobs:
        with pytest.raises(paths.FolderError) as info:
            paths.create_job_dir(jobs, "a red chair", {"job.json": "{}"})
        assert list(jobs.iterdir()) == []
    err = info.value
    assert err.kind == "jobs_dir_unwritable"
    # The jobs folder, not the new job folder's name, is what the user can change.
    assert err.message == f"the jobs folder {jobs} cannot be written: " + (
        "operation not permitted (read-only or immutable)" if AS_ROOT else "permission denied")
    assert "Jobs Folder preference" in err.hint and "jobs_dir=" in err.hint
    assert err.as_error() == {"kind": err.kind, "message": err.message, "hint": err.hint}


def test_jobs_folder_under_an_unwritable_parent_names_where_it_failed(tmp_path):
    with unwritable(tmp_path / "share") as share:
        jobs = share / "text3d" / "jobs"
        with pytest.raises(paths.FolderError) as info:
            paths.create_job_dir(jobs, "a red chair", {"job.json": "{}"})
        assert list(share.iterdir()) == []
    assert info.value.kind == "jobs_dir_unwritable"
    assert info.value.message.startswith(f"the jobs folder {jobs} cannot be written: ")
    assert info.value.message.endswith(f" ({share / 'text3d'})")


def test_disk_full_while_writing_job_json_leaves_no_job_folder(tmp_path, monkeypatch):
    failed = disk_full_on(monkeypatch, "job.json")
    with pytest.raises(paths.FolderError) as info:
        paths.create_job_dir(tmp_path, "a red chair", {"job.json": json.dumps({"prompt": "a red chair" * 50})})
    (path,) = failed  # half of it was written before the disk filled up ...
    assert info.value.kind == "disk_full"
    assert info.value.message == f"the disk is full: cannot write {path} in the jobs folder {tmp_path}"
    assert "Free some space" in info.value.hint and "Jobs Folder" in info.value.hint
    assert list(tmp_path.iterdir()) == []  # ... and its folder went with it


def test_job_dir_problem_says_what_happened(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    assert paths.job_dir_problem(folder) is None
    with unwritable(folder):
        assert paths.job_dir_problem(folder) == "cannot be read or written any more (permission denied)"
    folder.rmdir()
    assert paths.job_dir_problem(folder) == "was deleted or moved"
    folder.write_text("a file in its place")
    assert paths.job_dir_problem(folder) == "is no longer a folder"


# --- runner: the engine and its folder, no Blender -------------------------------------------------------

def test_missing_engine_python_fails_before_anything_starts(tmp_path):
    for python in (tmp_path / "venv" / "bin" / "python", tmp_path, ""):
        run = runner.EngineRun(python, write_job(tmp_path / "job", 2))
        run.start()
        assert run.done and run.pid is None and run.state.status == "failed"
        assert run.state.error["kind"] == "engine_not_found"
        assert run.state.error["message"] == f"engine Python not found: {python or '(not set)'}"
        assert "Preferences > Add-ons > Text3D" in run.state.error["hint"]


def test_engine_python_that_cannot_be_run_says_why(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o644)  # not executable, for root too: execve needs an execute bit
    run = runner.EngineRun(python, write_job(tmp_path / "job", 2))
    run.start()
    assert run.state.status == "failed" and run.pid is None
    assert run.state.error["message"] == f"cannot start the engine Python {python}: permission denied"


def test_engine_commands_of_the_preferences_say_where_to_set_the_python(tmp_path):
    python = tmp_path / "python"
    task = tasks.list_models(str(python))
    assert task.status == "failed" and task._proc is None
    assert (task.error, task.hint) == (f"{python} not found", runner.HINT_ENGINE_PATH)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o644)
    task = tasks.download_model(str(python), "org/model")
    assert (task.error, task.hint) == (f"cannot start {python}: permission denied", runner.HINT_ENGINE_PATH)


def test_missing_engine_folder_fails_before_anything_starts(tmp_path):
    run = runner.EngineRun(sys.executable, write_job(tmp_path / "job", 2), engine_root=tmp_path / "gone")
    run.start()
    assert run.state.status == "failed" and run.pid is None
    assert run.state.error["kind"] == "engine_not_found" and str(tmp_path / "gone") in run.state.error["message"]


def test_job_folder_deleted_before_its_turn(tmp_path):
    job = write_job(tmp_path / "job", 2)
    shutil.rmtree(job)
    run = runner.EngineRun(sys.executable, job, engine_root=FAKE_ROOT)
    run.start()
    assert run.state.status == "failed" and run.pid is None
    assert run.state.error == {"kind": "job_dir_lost", "message": f"the job folder {job} was deleted or moved",
                               "hint": paths.HINT_JOB_DIR_LOST}
    assert not job.exists()  # nothing was made again (no stderr.txt)


def test_disk_full_before_the_engine_starts_fails_without_a_process(tmp_path, monkeypatch):
    job = write_job(tmp_path / "job", 2)

    def full_open(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(runner, "open", full_open, raising=False)  # the runner's own stderr.txt
    run = runner.EngineRun(sys.executable, job, engine_root=FAKE_ROOT)
    run.start()
    assert run.state.status == "failed" and run.pid is None
    assert run.state.error == {"kind": "disk_full", "message": f"the disk is full: cannot write {job / 'stderr.txt'} "
                               f"in the jobs folder {tmp_path}", "hint": paths.HINT_DISK_FULL}


def test_job_folder_deleted_while_running_stops_the_engine(tmp_path, fake):
    fake(step_s=0.05)
    # A long cancel grace: the engine must go at once, not after waiting for a cancel file it cannot see.
    run = start_run(tmp_path / "job", steps=10_000, cancel_grace_s=60.0, terminate_grace_s=5.0)
    wait_for_step(run)
    pid = run.pid
    shutil.rmtree(run.job_dir)
    t0 = time.monotonic()
    assert run.wait(timeout=20.0)
    assert time.monotonic() - t0 < 5.0
    assert run.state.status == "failed"
    assert run.state.error == {"kind": "job_dir_lost",
                               "message": f"the job folder {run.job_dir} was deleted or moved while the job ran",
                               "hint": paths.HINT_JOB_DIR_LOST}
    assert [name for name, _ in run.escalations] == ["terminate"]
    assert_gone(pid)


def test_job_folder_deleted_under_an_engine_that_ignores_sigterm_is_killed(tmp_path, fake):
    fake(mode="hang", step_s=0.02, ignore_term=True)
    run = start_run(tmp_path / "job", steps=10_000, cancel_grace_s=60.0, terminate_grace_s=0.5)
    wait_for_step(run)
    pid = run.pid
    shutil.rmtree(run.job_dir)
    assert run.wait(timeout=20.0)
    assert [name for name, _ in run.escalations] == ["terminate", "kill"]
    assert run.state.status == "failed" and run.state.error["kind"] == "job_dir_lost"
    assert_gone(pid)


def test_job_folder_locked_while_running_stops_the_engine(tmp_path, fake):
    fake(step_s=0.05)
    run = start_run(tmp_path / "job", steps=10_000, cancel_grace_s=60.0)
    wait_for_step(run)
    pid = run.pid
    with unwritable(run.job_dir):
        assert run.wait(timeout=20.0)
    assert run.state.status == "failed" and run.state.error["kind"] == "job_dir_lost"
    assert run.state.error["message"] == (f"the job folder {run.job_dir} cannot be read or written any more "
                                          "(permission denied) while the job ran")
    assert_gone(pid)


def test_events_jsonl_vanishing_does_not_matter(tmp_path, fake):
    """The runner follows stdout; events.jsonl is the engine's record for later (estimates, resume)."""
    fake(step_s=0.02)
    run = start_run(tmp_path / "job", steps=30)
    wait_for_step(run)
    (run.job_dir / "events.jsonl").unlink()
    assert run.wait(timeout=30.0)
    assert run.state.status == "succeeded" and run.state.step == 30


# --- the add-on in Blender: api, batch, operators -------------------------------------------------------

@pytest.fixture
def generate(scene, fake):
    """api.generate with the fake engine and small settings."""
    from blender_text3d import api

    def run(prompt, jobs_dir, **overrides):
        return api.generate(prompt, **{"engine_python": sys.executable, "engine_root": FAKE_ROOT,
                                       "jobs_dir": jobs_dir, **SMALL, **overrides})
    return run


def test_generate_in_an_unwritable_jobs_folder_is_a_failed_handle(generate, tmp_path):
    from blender_text3d import api
    from blender_text3d.jobs import MANAGER

    jobs_before, objects_before = list(MANAGER.jobs), set(bpy.data.objects)
    with unwritable(tmp_path / "jobs") as jobs:
        handle = generate("a red chair", jobs)
    assert handle.status == "failed" and handle.done and handle.job_dir is None and handle.pid is None
    assert handle.error["kind"] == "jobs_dir_unwritable"
    assert handle.error["message"].startswith(f"the jobs folder {jobs} cannot be written")
    assert "Jobs Folder preference" in handle.error["hint"]
    assert MANAGER.jobs == jobs_before and set(bpy.data.objects) == objects_before
    assert handle.wait(timeout=1.0) == "failed"  # waiting on it ends at once
    # Restyle makes its job folder the same way.
    capture = make_capture(tmp_path / "capture")
    with unwritable(tmp_path / "jobs") as jobs:
        handle = api.restyle(capture, "a bronze statue", jobs_dir=jobs, engine_python=sys.executable, **SMALL)
    assert handle.status == "failed" and handle.error["kind"] == "jobs_dir_unwritable"
    assert str(jobs) in handle.error["message"] and MANAGER.jobs == jobs_before


def test_batch_goes_on_past_prompts_whose_folders_cannot_be_made(scene, fake, tmp_path, monkeypatch):
    from blender_text3d import api

    run = dict(engine_python=sys.executable, engine_root=FAKE_ROOT, location=(0.0, 0.0, 0.0), **SMALL)
    with unwritable(tmp_path / "locked") as locked:
        handles = api.batch(["a red chair", "a blue lamp"], jobs_dir=locked, **run)
    assert [h.status for h in handles] == ["failed", "failed"]
    assert [h.prompt for h in handles] == ["a red chair", "a blue lamp"]
    assert all(h.error["kind"] == "jobs_dir_unwritable" and str(locked) in h.error["message"] for h in handles)
    # A full disk on the first prompt's job.json only: the second runs and is imported.
    real, calls = paths.create_job_dir, []

    def first_disk_full(*args):
        calls.append(args)
        if len(calls) == 1:
            raise paths.jobs_dir_error(OSError(errno.ENOSPC, "No space left on device", str(args[0] / "job.json")),
                                       args[0])
        return real(*args)

    monkeypatch.setattr(paths, "create_job_dir", first_disk_full)
    before = set(bpy.data.objects)
    handles = api.batch(["a red chair", "a blue lamp"], jobs_dir=tmp_path / "jobs", **run)
    assert [h.status for h in handles] == ["failed", "succeeded"]
    assert handles[0].error["kind"] == "disk_full" and "the disk is full" in handles[0].error["message"]
    assert [o.name for o in set(bpy.data.objects) - before] == ["a blue lamp"]


def test_disk_full_in_generate_leaves_no_job_folder(generate, tmp_path, monkeypatch):
    from blender_text3d.jobs import MANAGER

    jobs_before = list(MANAGER.jobs)
    failed = disk_full_on(monkeypatch, "job.json")
    handle = generate("a red chair", tmp_path)
    (path,) = failed
    assert handle.status == "failed" and handle.error["kind"] == "disk_full"
    assert handle.error["message"] == f"the disk is full: cannot write {path} in the jobs folder {tmp_path}"
    assert list(tmp_path.iterdir()) == [] and MANAGER.jobs == jobs_before


def test_job_folder_deleted_while_followed_removes_the_preview_and_stops_the_engine(generate, tmp_path, fake):
    fake(step_s=0.05)
    before = set(bpy.data.objects)
    # a preview mesh every 20 steps: the first after 1 s of the 10 s job
    handle = generate("a vanishing vase", tmp_path, steps=200, live_preview=True, cancel_grace_s=60.0)
    drive(handle, until=lambda h: h._job.preview_object is not None)
    pid, job_dir = handle.pid, handle.job_dir
    shutil.rmtree(job_dir)
    drive(handle, timeout=20)
    assert handle.status == "failed" and handle.result is None
    assert handle.error["kind"] == "job_dir_lost"
    assert handle.error["message"] == f"the job folder {job_dir} was deleted or moved while the job ran"
    assert set(bpy.data.objects) == before  # the live preview went too
    assert_gone(pid)


def test_generate_operator_reports_the_jobs_folder_and_the_preference(scene, tmp_path):
    from blender_text3d import props

    prefs = props.preferences()
    prefs.engine_python = sys.executable
    try:
        with unwritable(tmp_path / "jobs") as jobs:
            prefs.jobs_dir = str(jobs)
            with pytest.raises(RuntimeError) as info:
                bpy.ops.text3d.generate(prompt="a red chair", steps=2, render_size=16, mesh_resolution=16)
            assert list(jobs.iterdir()) == []
        text = str(info.value)
        assert text.startswith(f"Error: Text3D: the jobs folder {jobs} cannot be written")
        assert "Jobs Folder preference (Preferences > Add-ons > Text3D)" in text and "Traceback" not in text
        # A missing engine: its message and where to set it.
        prefs.jobs_dir = str(tmp_path)
        with pytest.raises(RuntimeError) as info:
            bpy.ops.text3d.generate(prompt="x", engine_python=str(tmp_path / "no" / "python"), wait=True)
        text = str(info.value)
        assert f"engine Python not found: {tmp_path / 'no' / 'python'}" in text
        assert "Set the engine Python in Preferences > Add-ons > Text3D" in text and "Traceback" not in text
        # The preferences' Refresh, with the same missing engine.
        prefs.engine_python = str(tmp_path / "no" / "python")
        with pytest.raises(RuntimeError) as info:
            bpy.ops.text3d.refresh_models(wait=True)
        assert str(info.value) == (f"Error: Text3D: {tmp_path / 'no' / 'python'} not found. "
                                   f"{runner.HINT_ENGINE_PATH}\n")
    finally:
        prefs.property_unset("engine_python")
        prefs.property_unset("jobs_dir")
        from blender_text3d import setup

        setup.unregister()  # forgets the failed Refresh's task: later tests start with none


def test_capture_into_an_unwritable_jobs_folder_names_it(scene, tmp_path):
    from blender_text3d import api

    cube = bpy.data.objects.new("a captured cube", bpy.data.meshes.new("a captured cube"))
    cube.data.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [], [(0, 1, 2), (0, 1, 3)])
    scene.collection.objects.link(cube)
    with unwritable(tmp_path / "jobs") as jobs:
        with pytest.raises(paths.FolderError) as info:
            api.capture_selected(views=1, size=8, objects=[cube], jobs_dir=jobs)
        assert list(jobs.iterdir()) == []
    assert info.value.kind == "jobs_dir_unwritable" and str(jobs) in info.value.message
