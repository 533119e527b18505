"""Shared fixtures: tiny models made by the real CLI, job folders, an engine runner, and the
Khronos glTF validator over every .glb the session writes."""
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
GLTF_VALIDATE_JS = Path(__file__).resolve().parent / "gltf_validate.js"


def engine_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


def engine(*args, env=None, timeout=600, **kw) -> subprocess.CompletedProcess:
    """Run `python -m engine ARGS` as the add-on does: no shell, its own stdout."""
    return subprocess.run([sys.executable, "-m", "engine", *map(str, args)], capture_output=True, text=True,
                          env=env or engine_env(), timeout=timeout, cwd=ROOT, **kw)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    out = engine("models", "make-tiny", tmp_path_factory.mktemp("tiny"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


# Small enough for a 2-core CPU: a few seconds per dozen steps.
TINY_OPTIONS = {"n_augments": 2, "field": {"hash_levels": 4, "hash_log2_size": 12, "hash_max_resolution": 64,
                                           "mlp_width": 16}}


def write_job(job_dir: Path, models: dict, **overrides) -> Path:
    job = {"spec_version": 1, "method": "dream_fields", "prompt": "a red chair", "seed": 3, "steps": 8,
           "device": "cpu", "render": {"size": 24, "samples_per_ray": 16}, "models": models,
           "export": {"resolution": 32, "texture_size": 0}, "preview_every": 0, "checkpoint_every": 0,
           "options": dict(TINY_OPTIONS)}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(job.get(key), dict):
            job[key] = {**job[key], **value}
        else:
            job[key] = value
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job.json").write_text(json.dumps(job))
    return job_dir


def read_events(job_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]


def read_glb(path: Path):
    """(pygltflib.GLTF2, binary chunk as bytes) of a .glb file; its 12-byte header checked by hand."""
    import pygltflib  # here, not at the top: a stale engine venv without it fails only the .glb tests

    data = Path(path).read_bytes()
    assert struct.unpack_from("<4sII", data) == (b"glTF", 2, len(data))
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert len(gltf.buffers) == 1 and gltf.buffers[0].uri is None
    assert gltf.buffers[0].byteLength == len(gltf.binary_blob())
    return gltf, gltf.binary_blob()


def glb_array(gltf, blob: bytes, accessor: int) -> np.ndarray:
    """The (count, components) array accessor `accessor` holds: float32 or uint32, tightly
    packed (no byteStride), as engine.mesh.io.write_glb writes them."""
    acc = gltf.accessors[accessor]
    view = gltf.bufferViews[acc.bufferView]
    dtype = {5126: np.float32, 5125: np.uint32}[acc.componentType]
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3}[acc.type]
    assert view.byteStride is None and acc.count * width * 4 <= view.byteLength
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    return np.frombuffer(blob, dtype, count=acc.count * width, offset=start).reshape(acc.count, width)


def gltf_validator_missing() -> str:
    """Why the Khronos glTF validator cannot run here, or "" when it can.

    install/text3d.py's `test` command installs it with npm into TEXT3D_HOME/node and sets
    TEXT3D_GLTF_VALIDATOR to that node_modules folder.
    """
    folder = os.environ.get("TEXT3D_GLTF_VALIDATOR")
    if not folder:
        return ("TEXT3D_GLTF_VALIDATOR is not set: run the tests with `python3 install/text3d.py test`, which installs "
                "gltf-validator when npm is on PATH, or set it to a node_modules folder holding gltf-validator")
    if not (Path(folder) / "gltf-validator").is_dir():
        return f"TEXT3D_GLTF_VALIDATOR={folder} holds no gltf-validator folder"
    if not shutil.which("node"):
        return "node is not on PATH (the glTF validator is a Node package)"
    return ""


def validate_glbs(paths) -> list[dict]:
    """The validator's report of each .glb, in order: gltf_validate.js's JSON lines, with
    numErrors, numWarnings, numInfos, numHints and messages (errors, warnings and infos)."""
    paths = [str(p) for p in paths]
    reports = []
    for start in range(0, len(paths), 200):  # a few hundred paths a call keeps the command line short
        batch = paths[start : start + 200]
        out = subprocess.run(["node", str(GLTF_VALIDATE_JS), *batch], capture_output=True, text=True, timeout=600)
        # Exit code 1 only says some file has errors; the reports tell which.
        assert out.returncode in (0, 1), f"gltf_validate.js failed ({out.returncode}): {out.stderr[-2000:]}"
        reports += [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["path"] for r in reports] == paths, "gltf_validate.js did not report every file"
    return reports


def describe_issues(report: dict) -> str:
    """One line per message of a validator report: severity, code, JSON pointer, text."""
    return "\n".join(f"    {m['severity']} {m['code']} at {m.get('pointer', '-')}: {m['message']}"
                     for m in report["messages"])


@pytest.fixture(scope="session", autouse=True)
def every_glb_passes_the_gltf_validator(tmp_path_factory):
    """After the last test: every .glb written anywhere under pytest's base temp folder, by the
    tests or by the engine subprocesses they start (`python -m engine run` writes
    result/mesh.glb), has no validator errors; an error fails the session at this teardown,
    listing each file's errors. Without the validator there is nothing to check with
    (test_glb.py's validator tests say why they skip)."""
    yield
    if gltf_validator_missing():
        return
    # resolve(): pytest links `<name>current` to its latest numbered folder; count each file once.
    glbs = sorted({p.resolve() for p in tmp_path_factory.getbasetemp().rglob("*.glb")})
    if not glbs:
        return
    bad = [r for r in validate_glbs(glbs) if r["numErrors"]]
    if bad:
        pytest.fail(f"{len(bad)} of the {len(glbs)} .glb files this session wrote fail the Khronos glTF validator:\n"
                    + "\n".join(f"  {r['path']}: {r['numErrors']} errors, {r['numWarnings']} warnings\n"
                                 + describe_issues(r) for r in bad), pytrace=False)
