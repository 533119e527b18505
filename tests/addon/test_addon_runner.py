"""The runner against the fake engine: plain Python, no Blender."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from addon_support import FAKE_ROOT, REPO

from blender_text3d import jobspec, runner


def job_dir(tmp_path, steps=5, **settings):
    spec = jobspec.build_job(jobspec.Settings(prompt="a cup", steps=steps, render_size=32, mesh_resolution=32,
                                              **settings))
    (tmp_path / "job.json").write_text(json.dumps(spec))
    return tmp_path


def start(tmp_path, steps=5, **kwargs):
    run = runner.EngineRun(sys.executable, job_dir(tmp_path, steps), engine_root=FAKE_ROOT, **kwargs)
    run.start()
    return run


def wait_for_step(run, step=1, timeout=20.0):
    deadline = time.monotonic() + timeout
    while run.state.step < step:
        assert not run.done and time.monotonic() < deadline, run.state
        run.poll()
        time.sleep(0.01)


def test_parse_event_ignores_what_is_not_an_event():
    assert runner.parse_event('{"event": "log", "message": "hi"}\n') == {"event": "log", "message": "hi"}
    for line in ("", "hello", "[1, 2]", '{"event": 3}', '{"no_event": 1}', '{"event": "x"', "{not json}"):
        assert runner.parse_event(line) is None


def test_child_env_drops_blender_python_and_adds_engine_root(monkeypatch):
    for var in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE"):
        monkeypatch.setenv(var, "/blender/leftover")
    env = runner.child_env()
    assert not {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE"} & set(env)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert runner.child_env("/repo")["PYTHONPATH"] == "/repo"
    assert runner.engine_command("/py", "run", "/job") == ["/py", "-m", "engine", "run", "/job"]


def test_events_are_parsed_into_state(tmp_path, fake):
    run = start(tmp_path, steps=6)
    seen = []
    while not run.done:
        seen += run.poll()
        time.sleep(0.01)
    s = run.state
    assert s.status == "succeeded" and s.returncode == 0 and s.error is None
    assert (s.step, s.total) == (6, 6) and set(s.losses) == {"clip", "transmittance"}
    assert s.phase == "generate"
    assert s.info["method"] == "dream_fields" and s.preview.is_file()
    assert s.artifacts["mesh"] == tmp_path / "result" / "mesh.npz" and s.preview_mesh.is_file()
    assert [e["event"] for e in seen][0] == "started" and seen[-1] == {"event": "finished", "status": "succeeded"}


def test_garbage_and_unknown_events_are_tolerated(tmp_path, fake):
    fake(mode="garbage")
    run = start(tmp_path)
    events = []
    while not run.done:
        events += run.poll()
        time.sleep(0.01)
    assert run.state.status == "succeeded"
    kinds = [e["event"] for e in events]
    assert "from_the_future" in kinds  # passed on, not applied
    assert all(isinstance(e, dict) for e in events)


def test_cancel_file_stops_a_cooperative_engine(tmp_path, fake):
    fake(step_s=0.05)
    run = start(tmp_path, steps=10_000, cancel_grace_s=10.0)
    wait_for_step(run)
    t0 = time.monotonic()
    run.cancel()
    assert run.wait(timeout=10.0)
    assert run.state.status == "cancelled" and run.state.returncode == 8
    assert time.monotonic() - t0 < 2.0
    assert [name for name, _ in run.escalations] == ["cancel_file"]
    assert (tmp_path / "cancel").exists()


def test_cancel_escalates_to_terminate(tmp_path, fake):
    fake(mode="hang", step_s=0.02)  # ignores the cancel file, stops on SIGTERM
    run = start(tmp_path, steps=10_000, cancel_grace_s=0.5, terminate_grace_s=5.0)
    wait_for_step(run)
    run.cancel()
    assert run.wait(timeout=10.0)
    names = dict(run.escalations)
    assert list(names) == ["cancel_file", "terminate"]
    assert 0.5 <= names["terminate"] < 1.0
    assert run.state.status == "cancelled"


def test_cancel_escalates_to_kill(tmp_path, fake):
    fake(mode="hang", step_s=0.02, ignore_term=True)
    run = start(tmp_path, steps=10_000, cancel_grace_s=0.3, terminate_grace_s=0.4)
    wait_for_step(run)
    run.cancel()
    assert run.wait(timeout=10.0)
    names = dict(run.escalations)
    assert list(names) == ["cancel_file", "terminate", "kill"]
    assert 0.3 <= names["terminate"] < 0.6 and 0.7 <= names["kill"] < 1.0
    assert run.state.status == "cancelled" and run.state.returncode == -signal.SIGKILL


def test_crash_is_reported_with_the_log_tail(tmp_path, fake):
    fake(mode="crash")
    run = start(tmp_path, steps=6)
    assert run.wait(timeout=20.0)
    s = run.state
    assert s.status == "failed" and s.returncode == 1
    assert s.error["kind"] == "internal" and "before it finished" in s.error["message"]
    assert "about to crash" in s.error["log_tail"] and "RuntimeError: fake crash" in s.error["log_tail"]


def test_killed_engine_is_a_crash(tmp_path, fake):
    fake(step_s=0.05)
    run = start(tmp_path, steps=10_000)
    wait_for_step(run)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait(timeout=10.0)
    assert run.state.status == "failed" and run.state.error["kind"] == "engine_crashed"
    assert str(-signal.SIGKILL) in run.state.error["message"]


def test_engine_error_event_is_kept(tmp_path, fake):
    fake(mode="error", error_kind="model_missing")
    run = start(tmp_path)
    assert run.wait(timeout=20.0)
    assert run.state.status == "failed" and run.state.returncode == 3
    assert run.state.error["kind"] == "model_missing" and run.state.error["hint"] == "make it with make-tiny"


@pytest.mark.parametrize("python", ["/nonexistent/python", ""])
def test_wrong_engine_path_fails_without_a_process(tmp_path, python):
    run = runner.EngineRun(python, job_dir(tmp_path))
    run.start()
    assert run.done and run.pid is None
    assert run.state.error["kind"] == "engine_not_found" and run.state.error["hint"]


def test_python_without_the_engine_reports_stderr(tmp_path):
    run = runner.EngineRun(sys.executable, job_dir(tmp_path))  # no engine_root: no `engine` package
    run.start()
    assert run.wait(timeout=20.0)
    assert run.state.status == "failed" and "No module named engine" in run.state.error["log_tail"]


def test_stop_all_stops_running_engines(tmp_path, fake):
    fake(mode="hang", step_s=0.02)
    run = start(tmp_path, steps=10_000)
    wait_for_step(run)
    runner.stop_all()
    assert run.done and run.state.status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(run.pid, 0)


def test_check_engine(fake):
    assert runner.check_engine(sys.executable, FAKE_ROOT) == {
        "ok": True, "report": {"ok": True, "engine": "fake", "devices": ["cpu"]}, "error": ""}
    assert runner.check_engine("/nonexistent/python")["ok"] is False


def test_runner_jobspec_paths_tasks_import_without_bpy():
    code = ("import sys; import blender_text3d.runner, blender_text3d.jobspec, blender_text3d.paths, "
            "blender_text3d.tasks; "
            "bad = {'bpy', 'torch'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env=runner.child_env(REPO))


def test_the_log_tail_shows_each_logged_line_once_and_what_only_stderr_has(tmp_path):
    """The engine logs to log.txt and to stderr: the tail gives the log, then the traceback stderr adds."""
    (tmp_path / "log.txt").write_text("INFO engine.run: started\nERROR engine.run: model_missing: no model\n")
    (tmp_path / "stderr.txt").write_text("INFO engine.run: started\nERROR engine.run: model_missing: no model\n"
                                         "Traceback (most recent call last):\nRuntimeError: boom\n")
    tail = runner.EngineRun(sys.executable, tmp_path).log_tail().splitlines()
    assert tail == ["INFO engine.run: started", "ERROR engine.run: model_missing: no model",
                    "Traceback (most recent call last):", "RuntimeError: boom"]
