"""Fixtures for the add-on tests: run with the Blender-side venv (bpy module), e.g.

    /root/.cache/text3d/blender-venv/bin/python -m pytest tests/addon -q

bpy is imported lazily, so the runner and jobspec tests also run without Blender.
Blender's user folders and TEXT3D_HOME point into a temporary folder for the session:
nothing touches the real preferences or ~/.local/share.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
from addon_support import REPO  # puts the repository on sys.path

from blender_text3d import paths  # imports no bpy

# The real engine for end-to-end tests, resolved before TEXT3D_HOME is redirected below.
ENGINE_PYTHON = os.environ.get("TEXT3D_ENGINE_PYTHON") or str(paths.default_engine_python())

_SANDBOX = tempfile.mkdtemp(prefix="text3d-addon-tests-")
os.environ["TEXT3D_HOME"] = str(Path(_SANDBOX) / "home")
os.environ.setdefault("BLENDER_USER_RESOURCES", str(Path(_SANDBOX) / "blender"))


@pytest.fixture
def fake(monkeypatch):
    """Configure the fake engine for this test: fake(mode="crash", step_s=0.1, ...)."""
    def configure(**behaviour):
        monkeypatch.setenv("TEXT3D_FAKE_ENGINE", json.dumps(behaviour))
    configure()
    return configure


@pytest.fixture(scope="session")
def addon():
    """The add-on enabled the way Blender enables a legacy add-on found on sys.path."""
    import addon_utils

    module = addon_utils.enable("blender_text3d", default_set=True)
    assert module is not None, "enabling blender_text3d failed (see the traceback above)"
    yield module
    addon_utils.disable("blender_text3d", default_set=True)


@pytest.fixture
def scene(addon):
    """The scene, with a fresh job list, and no objects left behind by the test."""
    import bpy

    from blender_text3d.jobs import MANAGER

    before = set(bpy.data.objects)
    yield bpy.context.scene
    MANAGER.stop_all()
    MANAGER.clear_finished()
    for obj in set(bpy.data.objects) - before:
        bpy.data.objects.remove(obj)


@pytest.fixture(scope="session")
def engine_python():
    """The real engine's interpreter; a missing one fails (never skips) the end-to-end tests."""
    if not Path(ENGINE_PYTHON).is_file():
        pytest.fail(f"no engine Python at {ENGINE_PYTHON}: set TEXT3D_ENGINE_PYTHON or create "
                    "TEXT3D_HOME/engine-venv with install/")
    return ENGINE_PYTHON


@pytest.fixture(scope="session")
def tiny_models(engine_python, tmp_path_factory):
    """`python -m engine models make-tiny DIR`: the job.json `models` of tiny random models."""
    from blender_text3d import runner

    out = tmp_path_factory.mktemp("tiny-models")
    proc = subprocess.run(runner.engine_command(engine_python, "models", "make-tiny", out),
                          env=runner.child_env(REPO), cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
