#!/usr/bin/env python3
"""Text3D set-up, and the README's two commands.

    python3 install/text3d.py demo        set up, then a prompt -> engine job -> object in a Blender
                                          scene -> OUT/demo.blend and OUT/demo.png
    python3 install/text3d.py test        set up, then the whole test suite (engine and add-on)

and the steps they are made of:

    python3 install/text3d.py engine      create or update the engine environment (torch)
    python3 install/text3d.py engine --with ray   the same, with the optional Ray extra (engine batch on a cluster)
    python3 install/text3d.py blender     create or update the Blender-module environment (bpy, headless)
    python3 install/text3d.py blender42   the same with Blender 4.2 LTS, the oldest supported (add-on tests)
    python3 install/text3d.py extension   build dist/blender_text3d-<version>.zip for Blender 4.2+
    python3 install/text3d.py status      what is installed and whether it is up to date (changes nothing)

Environments live in TEXT3D_HOME (default ~/.local/share/text3d on Linux), are reused when
their pinned requirements have not changed, and never need a shell. Only the standard
library is used here, so any Python 3.11 runs it. `test` also installs the Khronos glTF
validator into TEXT3D_HOME/node when npm is on PATH; the engine tests check every .glb with it.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "install"


def _load_paths():
    """blender_text3d/paths.py by file path: the add-on's own rule for TEXT3D_HOME, without bpy."""
    spec = importlib.util.spec_from_file_location("text3d_paths", ROOT / "blender_text3d" / "paths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


paths = _load_paths()

# name -> (requirements file, Python versions it supports, disk it needs in GB)
ENVIRONMENTS = {
    "engine": ("requirements-engine.txt", ((3, 10), (3, 11), (3, 12), (3, 13)), 8.0),
    # bpy 5.0.1 and 4.2.x wheels exist for CPython 3.11 only.
    "blender": ("requirements-blender.txt", ((3, 11),), 1.0),
    "blender42": ("requirements-blender42.txt", ((3, 11),), 1.5),
}
# Requirements installed with --no-deps after an environment's own, by environment: packages whose
# metadata pins versions that conflict with the pins above (the file says which and why).
NO_DEPS = {"engine": "requirements-engine-nodeps.txt"}
# Optional extras of an environment, installed on request (`engine --with ray`) after its own requirements.
# The test command runs the tests of an extra when it is installed (they skip, saying so, when it is not).
EXTRAS = {"engine": {"ray": "requirements-ray.txt"}}
# Test suites: the environment each runs in and its folder. "addon-4.2" runs the add-on's
# suite on Blender 4.2 LTS, the oldest the extension supports: all its tests pass, but the
# bpy 4.2 module segfaults at interpreter exit after a test loads a .blend file, so it is
# run on request (`test --only addon-4.2`), not by default, until that is understood.
SUITES = {
    "engine": ("engine", "tests/engine"),
    "addon": ("blender", "tests/addon"),
    "addon-4.2": ("blender42", "tests/addon"),
}
DEFAULT_SUITES = ("engine", "addon")
# The Khronos glTF validator, which the engine tests run over every .glb they write
# (tests/engine/gltf_validate.js). npm has only -dev releases of it; this is the newest.
GLTF_VALIDATOR = ("gltf-validator", "2.0.0-dev.3.10")


class SetupError(Exception):
    """A failure the user can act on: printed as one message and a hint, never a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def say(message: str) -> None:
    print(f"[text3d] {message}", file=sys.stderr, flush=True)


def venv_dir(name: str) -> Path:
    return paths.text3d_home() / f"{name}-venv"


def stamp_of(name: str, python_version: str) -> str:
    """What an environment was built from: its requirements and the Python minor version."""
    text = "\n".join((INSTALL / f).read_text(encoding="utf-8") for f in (ENVIRONMENTS[name][0], NO_DEPS.get(name))
                     if f)
    return hashlib.sha256(f"{text}\n{python_version}\n{platform.machine()}".encode()).hexdigest()


def env_state(name: str) -> dict:
    """Whether the environment exists and matches its requirements; changes nothing."""
    venv = venv_dir(name)
    python = paths.venv_python(venv)
    stamp_file = venv / "text3d-stamp.json"
    state = {"name": name, "venv": str(venv), "python": str(python), "exists": python.is_file(), "up_to_date": False}
    if state["exists"] and stamp_file.is_file():
        recorded = json.loads(stamp_file.read_text(encoding="utf-8"))
        state["up_to_date"] = recorded.get("stamp") == stamp_of(name, recorded.get("python_version", ""))
        state["extras"] = sorted(recorded.get("extras", {}))
    return state


def find_python(versions) -> str:
    """An interpreter of one of `versions`: this one, else pythonX.Y on PATH."""
    if sys.version_info[:2] in versions:
        return sys.executable
    for major, minor in versions:
        found = shutil.which(f"python{major}.{minor}")
        if found:
            return found
    wanted = " or ".join(f"{a}.{b}" for a, b in versions)
    raise SetupError(f"Python {wanted} is needed, this is {platform.python_version()} and none is on PATH",
                     f"install Python {wanted} and run this script with it, e.g. python{versions[0][0]}.{versions[0][1]} {sys.argv[0]}")


def run_logged(cmd: list[str], log: Path) -> int:
    """Run without a shell, output to a log file; returns the exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=clean_env()).returncode


def clean_env(**extra) -> dict:
    """This process's environment without Python variables that would leak into a child interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env.update(extra)
    return env


def pip_failure(log: Path, name: str) -> SetupError:
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    text = "\n".join(tail)
    if any(s in text for s in ("Failed to establish a new connection", "Temporary failure in name resolution",
                               "Could not fetch URL", "ConnectionError", "Network is unreachable")):
        hint = "the package registry is unreachable: check the network or proxy (PIP_INDEX_URL, HTTPS_PROXY) and retry"
    elif "No space left on device" in text:
        hint = f"the disk is full: free space where TEXT3D_HOME points ({paths.text3d_home()}) or set TEXT3D_HOME elsewhere"
    elif "No matching distribution" in text or "Could not find a version" in text:
        hint = "a pinned package has no build for this Python or platform; see the log"
    else:
        hint = "see the log"
    return SetupError(f"installing the {name} environment failed; last lines of {log}:\n  " + "\n  ".join(tail), hint)


def ensure_env(name: str) -> Path:
    """Create or update environment `name`; returns its interpreter. Up to date = nothing to do."""
    state = env_state(name)
    python = Path(state["python"])
    if state["up_to_date"]:
        say(f"{name} environment up to date: {state['venv']}")
        if name == "engine":
            link_engine(python)
        return python
    requirements, versions, disk_gb = ENVIRONMENTS[name]
    base = find_python(versions)
    home = paths.text3d_home()
    home.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(home).free / 2**30
    if free_gb < disk_gb:
        raise SetupError(f"{free_gb:.1f} GB free in {home}, the {name} environment needs about {disk_gb:.0f} GB",
                         "free disk space, or set TEXT3D_HOME to a folder on a larger disk")
    t = time.monotonic()
    log = home / "logs" / f"install-{name}.log"
    venv = Path(state["venv"])
    if not python.is_file():
        say(f"creating the {name} environment in {venv}")
        if run_logged([base, "-m", "venv", str(venv)], log) != 0:
            raise SetupError(f"could not create a virtual environment with {base}; see {log}",
                             "on Debian/Ubuntu install the python3-venv package")
    say(f"installing {requirements} into {venv} (log: {log}); the first time takes a few minutes")
    if run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r",
                   str(INSTALL / requirements)], log) != 0:
        raise pip_failure(log, name)
    if name in NO_DEPS and run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check",
                                       "--no-deps", "-r", str(INSTALL / NO_DEPS[name])], log) != 0:
        raise pip_failure(log, name)
    version = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    stamp_file = venv / "text3d-stamp.json"
    extras = json.loads(stamp_file.read_text(encoding="utf-8")).get("extras", {}) if stamp_file.is_file() else {}
    stamp_file.write_text(json.dumps({"stamp": stamp_of(name, version), "python_version": version,
                                      "extras": extras}))  # pip keeps an extra's packages: so does the stamp
    if name == "engine":
        link_engine(python)
    say(f"{name} environment ready in {time.monotonic() - t:.0f} s")
    return python


def ensure_extras(name: str, extras: list[str]) -> None:
    """Install environment `name`'s optional extras (EXTRAS) into it, each when its pinned requirements are not
    installed yet; the stamp file records what each was installed from."""
    venv = venv_dir(name)
    python = paths.venv_python(venv)
    stamp_file = venv / "text3d-stamp.json"
    for extra in extras:
        requirements = EXTRAS[name][extra]
        digest = hashlib.sha256((INSTALL / requirements).read_bytes()).hexdigest()
        recorded = json.loads(stamp_file.read_text(encoding="utf-8"))
        if recorded.get("extras", {}).get(extra) == digest:
            say(f"{name} extra {extra} up to date")
            continue
        log = paths.text3d_home() / "logs" / f"install-{name}-{extra}.log"
        say(f"installing {requirements} into {venv} (log: {log})")
        if run_logged([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-r",
                       str(INSTALL / requirements)], log) != 0:
            raise pip_failure(log, f"{name} {extra}")
        recorded.setdefault("extras", {})[extra] = digest
        stamp_file.write_text(json.dumps(recorded))


def link_engine(python: Path) -> None:
    """Make `python -m engine` work from anywhere with this interpreter: a .pth naming this checkout."""
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(site) / "text3d_engine.pth"
    if not pth.is_file() or pth.read_text(encoding="utf-8").strip() != str(ROOT):
        pth.write_text(str(ROOT) + "\n", encoding="utf-8")
        say(f"the engine environment now runs the engine of {ROOT}")


def ensure_gltf_validator() -> Path | None:
    """The node_modules folder holding the pinned gltf-validator in TEXT3D_HOME/node, installed
    with npm the first time; None, said why, when node or npm is missing or npm fails (the
    engine tests then skip their validator checks rather than fail)."""
    name, version = GLTF_VALIDATOR
    prefix = paths.text3d_home() / "node"
    modules = prefix / "node_modules"
    package = modules / name / "package.json"
    if not shutil.which("node"):
        say("node is not on PATH: the engine tests will not check .glb files with the Khronos glTF validator")
        return None
    if package.is_file() and json.loads(package.read_text(encoding="utf-8")).get("version") == version:
        say(f"glTF validator up to date: {modules / name}")
        return modules
    npm = shutil.which("npm")
    if not npm:
        say("npm is not on PATH: the engine tests will not check .glb files with the Khronos glTF validator")
        return None
    t = time.monotonic()
    log = paths.text3d_home() / "logs" / "install-gltf-validator.log"
    say(f"installing {name}@{version} into {prefix} with npm (log: {log})")
    prefix.mkdir(parents=True, exist_ok=True)
    if run_logged([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"{name}@{version}"], log) != 0 \
            or not package.is_file():
        say(f"installing the glTF validator failed (see {log}): the engine tests will not check .glb files with it")
        return None
    say(f"glTF validator ready in {time.monotonic() - t:.0f} s")
    return modules


def build_extension() -> Path:
    spec = importlib.util.spec_from_file_location("build_extension", INSTALL / "build_extension.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    zip_path = module.build(ROOT / "dist")
    say(f"extension built: {zip_path}")
    say("install it into Blender 4.2+ with: blender --command extension install-file -r user_default " + str(zip_path))
    say("or in Blender: Edit > Preferences > Get Extensions > (menu) Install from Disk")
    say(f"the add-on finds the engine at {paths.default_engine_python()} (Preferences > Add-ons > Text3D to change it)")
    return zip_path


def junit_counts(xml_path: Path) -> dict:
    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return totals


def run_tests(pytest_args: list[str], which: tuple[str, ...]) -> int:
    """The suites, each in its own environment as in production; one summary line at the end."""
    engine_py = ensure_env("engine")
    pythons = {env: ensure_env(env) for env in sorted({SUITES[name][0] for name in which})}  # all set up first
    validator = ensure_gltf_validator() if "engine" in which else None
    reports = paths.text3d_home() / "test-reports"
    reports.mkdir(parents=True, exist_ok=True)
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    ok = True
    for name in which:
        env_name, folder = SUITES[name]
        python, folder = pythons[env_name], ROOT / folder
        xml = reports / f"{name}.xml"
        xml.unlink(missing_ok=True)
        say(f"running the {name} tests with {python}")
        t = time.monotonic()
        env = clean_env(PYTHONPATH=str(ROOT), TEXT3D_ENGINE_PYTHON=str(engine_py), PYTHONUNBUFFERED="1")
        if validator:
            env["TEXT3D_GLTF_VALIDATOR"] = str(validator)  # read by tests/engine/conftest.py
        code = subprocess.run([str(python), "-m", "pytest", str(folder), "-q", "-p", "no:cacheprovider",
                               f"--junitxml={xml}", *pytest_args], cwd=ROOT, env=env).returncode
        say(f"{name} tests finished in {time.monotonic() - t:.0f} s with exit code {code}")
        if code == 5:
            say(f"no tests were collected in {folder}: treated as a failure, a suite must test something")
            ok = False
            continue
        if code != 0:
            ok = False
        if xml.is_file():
            c = junit_counts(xml)
            totals["failed"] += c["failures"] + c["errors"]
            totals["skipped"] += c["skipped"]
            totals["passed"] += c["tests"] - c["failures"] - c["errors"] - c["skipped"]
        else:
            ok = False
    print(f"text3d: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped", flush=True)
    return 0 if ok and totals["failed"] == 0 and totals["passed"] > 0 else 1


def run_demo(args) -> int:
    engine_py = ensure_env("engine")
    blender_py = ensure_env("blender")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cmd = [str(blender_py), str(INSTALL / "demo.py"), "--out", str(out), "--engine-python", str(engine_py),
           "--engine-root", str(ROOT), "--quality", args.quality]
    if args.prompt:
        cmd += ["--prompt", args.prompt]
    if args.tiny:
        cmd.append("--tiny")
    if args.starter:
        cmd.append("--starter")
    if args.allow_downloads:
        cmd.append("--allow-downloads")
    prompt = repr(args.prompt) if args.prompt else "the default prompt of the models it finds"
    say(f"running the demo in headless Blender: {prompt} -> {out}")
    return subprocess.run(cmd, cwd=ROOT, env=clean_env(PYTHONUNBUFFERED="1")).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="install/text3d.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="set up, then make an object from a prompt in headless Blender")
    demo.add_argument("--out", default=str(ROOT / "out"), help="output folder (default: out/)")
    demo.add_argument("--prompt", help='default: "a ceramic mug with a red glaze" with the real CLIP, '
                                       '"a purple cylinder" with the starter CLIP')
    demo.add_argument("--quality", choices=("draft", "standard", "high"), default="draft")
    which = demo.add_mutually_exclusive_group()
    which.add_argument("--tiny", action="store_true", help="use tiny random models even when the real ones are here")
    which.add_argument("--starter", action="store_true",
                       help="use the starter CLIP (8 shapes in 8 colours) even when the real one is here")
    demo.add_argument("--allow-downloads", action="store_true", help="download the real models if they are missing")
    test = sub.add_parser("test", help="set up, then run the whole test suite")
    test.add_argument("--only", choices=tuple(SUITES), help="run one suite")
    test.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    engine = sub.add_parser("engine", help="create or update the engine environment")
    engine.add_argument("--with", dest="extras", action="append", default=[], choices=tuple(EXTRAS["engine"]),
                        help="also install an optional extra: ray (python -m engine batch --backend ray)")
    sub.add_parser("blender", help="create or update the Blender-module environment")
    sub.add_parser("blender42", help="create or update the Blender 4.2 LTS module environment (add-on tests)")
    sub.add_parser("extension", help="build the extension zip")
    sub.add_parser("status", help="what is installed (changes nothing)")
    args = p.parse_args(argv)
    t = time.monotonic()
    try:
        if args.command == "status":
            print(json.dumps({"text3d_home": str(paths.text3d_home()),
                              "environments": [env_state(n) for n in ENVIRONMENTS]}, indent=1))
            return 0
        if args.command in ("engine", "blender", "blender42"):
            ensure_env(args.command)
            ensure_extras(args.command, getattr(args, "extras", []))
            return 0
        if args.command == "extension":
            build_extension()
            return 0
        if args.command == "test":
            return run_tests(args.pytest_args, (args.only,) if args.only else DEFAULT_SUITES)
        return run_demo(args)
    except SetupError as e:
        say(f"error: {e}")
        if e.hint:
            say(f"hint: {e.hint}")
        return 2
    finally:
        say(f"{args.command} took {time.monotonic() - t:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
