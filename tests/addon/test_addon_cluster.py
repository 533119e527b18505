"""A batch on a Ray cluster, as the add-on follows it (blender_text3d/cluster.py), against the fake engine's
`batch` (which speaks engine/batch/driver.py's stream). Plain Python, no Blender, no Ray: the engine's side
is tested with a real Ray cluster in tests/engine/test_batch_ray.py."""
from __future__ import annotations

import json
import os
import sys
import time

from addon_support import FAKE_ROOT

from blender_text3d import cluster, jobspec


def job_dirs(tmp_path, n, steps=5):
    dirs = []
    for i in range(n):
        d = tmp_path / f"job{i}"
        d.mkdir()
        spec = jobspec.build_job(jobspec.Settings(prompt=f"a cup {i}", steps=steps, render_size=32,
                                                  mesh_resolution=32))
        (d / "job.json").write_text(json.dumps(spec))
        dirs.append(d)
    return dirs


def start(dirs, **kwargs):
    batch = cluster.ClusterBatch(sys.executable, dirs, engine_root=FAKE_ROOT, **kwargs)
    batch.start()
    return batch


def test_the_batch_command_line_names_the_backend_and_every_job():
    assert cluster.batch_command("/py", ["/a", "/b"], "10.0.0.1:6379", 0.5, 2) == [
        "/py", "-m", "engine", "batch", "--backend", "ray", "--gpus-per-job", "0.5", "--max-retries", "2",
        "--address", "10.0.0.1:6379", "/a", "/b"]
    assert "--address" not in cluster.batch_command("/py", ["/a"])  # a local cluster


def test_every_job_of_a_batch_is_followed_and_ends_with_its_mesh(tmp_path, fake):
    fake(step_s=0.01, argv_file=str(tmp_path / "argv.json"))
    dirs = job_dirs(tmp_path, 3)
    batch = start(dirs, address="127.0.0.1:6379", gpus_per_job=1, max_retries=3)
    runs = [batch.runs[cluster.job_key(d)] for d in dirs]
    seen = {id(r): [] for r in runs}
    deadline = time.monotonic() + 30
    while not all(r.done for r in runs):
        assert time.monotonic() < deadline
        for r in runs:
            seen[id(r)] += r.poll()
        time.sleep(0.01)
    argv = json.loads((tmp_path / "argv.json").read_text())
    assert argv[:3] == ["batch", "--backend", "ray"] and "127.0.0.1:6379" in argv
    assert argv[-3:] == [os.path.realpath(d) for d in dirs]
    for run, d in zip(runs, dirs):
        assert run.state.status == "succeeded", run.state.error
        assert run.state.total == 5 and run.state.step == 5
        assert run.state.artifacts["mesh"] == d / "result" / "mesh.npz" and run.state.artifacts["mesh"].exists()
        kinds = [e["event"] for e in seen[id(run)]]
        assert kinds[0] == "started" and kinds.count("progress") == 5 and "finished" in kinds
        assert all(e["job_dir"] == os.path.realpath(d) for e in seen[id(run)])  # only its own events
        assert run.pid == batch.pid
    assert batch.summary["status"] == "succeeded"
    assert batch.wait(10) and batch.returncode == 0


def test_one_job_cancelled_by_its_cancel_file_the_others_go_on(tmp_path, fake):
    fake(step_s=0.05)
    dirs = job_dirs(tmp_path, 2, steps=40)
    batch = start(dirs)
    first, second = (batch.runs[cluster.job_key(d)] for d in dirs)
    while first.state.step < 2:
        first.poll()
        time.sleep(0.01)
    first.cancel()
    assert (dirs[0] / "cancel").exists() and not (dirs[1] / "cancel").exists()
    assert batch.wait(30)
    assert first.state.status == "cancelled" and second.state.status == "succeeded"


def test_cancelling_the_batch_cancels_every_job_and_leaves_no_process(tmp_path, fake):
    fake(step_s=0.05)
    dirs = job_dirs(tmp_path, 2, steps=200)
    batch = start(dirs)
    runs = [batch.runs[cluster.job_key(d)] for d in dirs]
    while not all(r.state.step >= 1 for r in runs):
        batch.pump()
        for r in runs:
            r.poll()
        time.sleep(0.01)
    pid = batch.pid
    batch.stop(cancel_grace_s=10)
    assert [r.state.status for r in runs] == ["cancelled", "cancelled"]
    assert all((d / "cancel").exists() for d in dirs)  # through the cancel files: checkpoints are kept
    try:
        os.killpg(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the batch's process group outlived it"


def test_a_batch_that_cannot_reach_ray_fails_every_job_with_its_reason_and_a_hint(tmp_path, fake):
    fake(batch_mode="unavailable")
    dirs = job_dirs(tmp_path, 2)
    batch = start(dirs)
    assert batch.wait(20)
    for d in dirs:
        error = batch.runs[cluster.job_key(d)].state.error
        assert error["kind"] == "backend_unavailable"
        assert "Ray is not installed" in error["message"] and "--with ray" in error["hint"]


def test_a_missing_engine_python_fails_every_job_before_anything_starts(tmp_path):
    dirs = job_dirs(tmp_path, 2)
    batch = cluster.ClusterBatch(tmp_path / "no-python", dirs)
    batch.start()
    assert batch.pid is None and batch.done
    assert {r.state.error["kind"] for r in batch.runs.values()} == {"engine_not_found"}
