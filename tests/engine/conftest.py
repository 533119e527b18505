"""Shared fixtures: tiny models made by the real CLI, job folders, and an engine runner."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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
TINY_OPTIONS = {"n_augments": 2, "hash_levels": 4, "hash_log2_size": 12, "hash_max_resolution": 64, "mlp_width": 16}


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
