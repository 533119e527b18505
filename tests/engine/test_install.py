"""install/text3d.py: argument handling, the up-to-date check, CI = the README's command, the demo."""
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "install" / "text3d.py"


def setup_module_(monkeypatch, tmp_path):
    """install/text3d.py as a module, with TEXT3D_HOME and its requirements in tmp_path."""
    monkeypatch.setenv("TEXT3D_HOME", str(tmp_path / "home"))
    spec = importlib.util.spec_from_file_location("text3d_setup", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    install = tmp_path / "install"
    install.mkdir()
    for path in (ROOT / "install").glob("requirements-*.txt"):
        shutil.copy(path, install / path.name)
    monkeypatch.setattr(module, "INSTALL", install)
    return module


def fake_venv(module, name):
    """A venv folder whose python is this interpreter, stamped as if installed from the requirements."""
    venv = module.venv_dir(name)
    python = module.paths.venv_python(venv)
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    version = "%d.%d" % sys.version_info[:2]
    (venv / "text3d-stamp.json").write_text(json.dumps({"stamp": module.stamp_of(name, version), "python_version": version}))
    return python


def run(*args, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, **kw)


def test_help_and_bad_arguments():
    out = run("--help")
    assert out.returncode == 0
    for command in ("demo", "test", "engine", "blender", "blender42", "extension", "status"):
        assert command in out.stdout
    assert run("frobnicate").returncode == 2
    bad = run("test", "--only", "everything")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_status_changes_nothing(tmp_path):
    home = tmp_path / "home"
    out = run("status", env={"TEXT3D_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0
    report = json.loads(out.stdout)
    assert report["text3d_home"] == str(home)
    assert [e["exists"] for e in report["environments"]] == [False, False, False]
    assert not home.exists()


def test_up_to_date_environment_is_reused_without_pip(monkeypatch, tmp_path):
    module = setup_module_(monkeypatch, tmp_path)
    python = fake_venv(module, "blender")
    assert module.env_state("blender")["up_to_date"] is True
    monkeypatch.setattr(module, "run_logged", lambda *a, **k: pytest.fail(f"pip was run: {a}"))
    assert module.ensure_env("blender") == python


def test_changed_requirements_are_installed_again(monkeypatch, tmp_path):
    module = setup_module_(monkeypatch, tmp_path)
    fake_venv(module, "blender")
    with open(module.INSTALL / "requirements-blender.txt", "a") as f:
        f.write("six==1.16.0\n")
    assert module.env_state("blender")["up_to_date"] is False
    calls = []
    monkeypatch.setattr(module, "run_logged", lambda cmd, log: calls.append(cmd) or 0)
    monkeypatch.setattr(module.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout="%d.%d\n" % sys.version_info[:2]))
    module.ensure_env("blender")
    assert calls and calls[-1][1:5] == ["-m", "pip", "install", "--disable-pip-version-check"]
    assert calls[-1][-1].endswith("requirements-blender.txt")
    assert module.env_state("blender")["up_to_date"] is True  # stamped after the install


def test_engine_packages_with_conflicting_pins_are_installed_without_deps_after_the_rest(monkeypatch, tmp_path):
    module = setup_module_(monkeypatch, tmp_path)
    fake_venv(module, "engine")
    assert module.env_state("engine")["up_to_date"] is True
    nodeps = module.INSTALL / module.NO_DEPS["engine"]
    assert "facenet-pytorch==2.6.0" in nodeps.read_text().splitlines()
    with open(nodeps, "a") as f:  # the no-deps file is part of what the environment was built from
        f.write("six==1.16.0\n")
    assert module.env_state("engine")["up_to_date"] is False
    calls = []
    monkeypatch.setattr(module, "run_logged", lambda cmd, log: calls.append(cmd) or 0)
    version = "{}.{}\n".format(*sys.version_info[:2])
    monkeypatch.setattr(module.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=version))
    monkeypatch.setattr(module, "link_engine", lambda python: None)
    module.ensure_env("engine")
    pip = [cmd[1:] for cmd in calls if cmd[1:3] == ["-m", "pip"]]
    assert pip[-2][-2:] == ["-r", str(module.INSTALL / "requirements-engine.txt")] and "--no-deps" not in pip[-2]
    assert pip[-1][-3:] == ["--no-deps", "-r", str(nodeps)]
    assert module.env_state("engine")["up_to_date"] is True


def test_clear_errors_instead_of_tracebacks(monkeypatch, tmp_path):
    module = setup_module_(monkeypatch, tmp_path)
    monkeypatch.setattr(module, "ENVIRONMENTS", {**module.ENVIRONMENTS, "blender": ("requirements-blender.txt", ((2, 7),), 1.0)})
    monkeypatch.setattr(module.shutil, "which", lambda name: None)
    with pytest.raises(module.SetupError, match="Python 2.7 is needed") as err:
        module.ensure_env("blender")
    assert "python2.7" in err.value.hint
    monkeypatch.setattr(module, "ENVIRONMENTS", {**module.ENVIRONMENTS, "blender": ("requirements-blender.txt", (sys.version_info[:2],), 10**9)})
    with pytest.raises(module.SetupError, match="GB free"):
        module.ensure_env("blender")
    log = tmp_path / "pip.log"
    log.write_text("Collecting bpy\nWARNING: Retrying ... Failed to establish a new connection: [Errno 111]\n")
    assert "unreachable" in module.pip_failure(log, "blender").hint


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("**Run the tests**", 1)[1]
    command = re.search(r"```\n(.+?)\n```", section, re.S).group(1).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    run_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    # CI installs the engine's Ray extra first (README, "Run the tests": the test command then runs the Ray batch
    # tests), then runs exactly the README's command; nothing else.
    assert run_lines == ["python3 install/text3d.py engine --with ray", f"exec {command}"]
    assert "install/text3d.py test" in command and "engine --with ray" in section.split("## ", 1)[0]


def test_offline_demo_makes_the_prompts_object_in_a_blend_and_a_png(tmp_path):
    """The README's demo command as a machine without the real CLIP runs it (the starter CLIP, "a purple
    cylinder"), the slowest test: engine job, import, save, render; the object is purple."""
    out = tmp_path / "demo"
    proc = run("demo", "--starter", "--out", str(out), timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "STARTER CLIP" in proc.stderr and "'a purple cylinder'" in proc.stderr
    png = out / "demo.png"
    assert png.stat().st_size > 1000
    from PIL import Image

    import numpy as np

    image = Image.open(png)
    assert image.size == (384, 384) and len(np.unique(np.asarray(image.convert("L")))) > 10  # not a blank frame
    module = importlib.util.spec_from_file_location("p", ROOT / "blender_text3d" / "paths.py")
    paths = importlib.util.module_from_spec(module)
    module.loader.exec_module(paths)
    blender_py = paths.venv_python(paths.text3d_home() / "blender-venv")
    check = subprocess.run([str(blender_py), "-c", (
        "import bpy, json, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]);"
        "o = [o for o in bpy.data.objects if o.get('text3d_prompt')];"
        "print(json.dumps([(x.name, len(x.data.polygons), list(x.data.color_attributes.keys()),"
        " x.get('text3d_method'), x.get('text3d_prompt')) for x in o]))"),
        str(out / "demo.blend")], capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-2000:]
    objects = json.loads(check.stdout.strip().splitlines()[-1])
    assert len(objects) == 1
    name, faces, colour_attributes, method, prompt = objects[0]
    assert faces > 0 and colour_attributes and method == "dream_fields" and prompt == "a purple cylinder"
    # The object itself, from the job's exported mesh: purple albedo (the starter's purple is sRGB 0.5, 0.15, 0.7;
    # tests/engine/test_starter.py checks the shapes Dream Fields makes with the judge).
    mesh = np.load(next((out / "jobs").glob("*/result/mesh.npz")))
    r, g, b = mesh["vertex_colors"].astype(float).mean(axis=0)
    assert b > g + 0.1 and r > g and b > r, (r, g, b)  # measured 0.06, 0.00, 0.17 (linear)

