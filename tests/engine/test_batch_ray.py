"""`python -m engine batch --backend ray` on Ray clusters of this machine (127.0.0.1 only, CPU, logical GPUs):
concurrency by GPUs, the stream, a killed worker retried from its checkpoint, cancel, a bad job, --address to a
`ray start --head` cluster, and a cluster the batch starts itself. Skipped only when Ray is not installed."""
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ROOT, engine_env, read_events, write_job
from test_batch import alive, engine_events
from test_run import assert_same_final_weights, final_weights

if importlib.util.find_spec("ray") is None:
    pytest.skip("Ray is not installed in the engine environment: python3 install/text3d.py engine --with ray",
                allow_module_level=True)

# Loopback only (Ray otherwise binds the machine's address), no usage reports, no token set-up for a cluster
# that lives for one test module.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def ray_processes(temp_dir: str) -> set[int]:
    """Every process of the Ray cluster whose files are in temp_dir: those naming it on their command line
    (GCS, raylet, agents) and their descendants (workers rename themselves ray::...)."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    parents = {}
    for pid in pids:
        try:
            parents[pid] = parent(pid)
        except (OSError, IndexError, ValueError):
            pass
    found = {pid for pid in parents if temp_dir in cmdline(pid)}
    grew = True
    while grew:
        more = {pid for pid, ppid in parents.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return found


def running(pid: int) -> bool:
    """Alive and not a zombie (a reparented Ray process can wait as one for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return alive(pid)  # no /proc: ask the kernel


def stop_processes(pids: set[int]) -> None:
    # SIGTERM, then SIGKILL after 2 s: Ray's GCS and raylet take ~11 s to shut down gracefully, and these are
    # throwaway clusters of the tests.
    for sig, wait_s in ((signal.SIGTERM, 2), (signal.SIGKILL, 10)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while any(running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """`ray start --head` on 127.0.0.1 with 4 CPUs and 2 logical GPUs, shared by the module's tests; stopped by
    the PIDs of its processes (not `ray stop`, which would stop every cluster of this user)."""
    temp_dir = tempfile.mkdtemp(prefix="t3dray", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    port = free_port()
    env = engine_env(**RAY_ENV)
    ray = str(Path(sys.executable).with_name("ray"))
    out = subprocess.run([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=4",
                          "--num-gpus=2", "--include-dashboard=false", "--disable-usage-stats",
                          f"--temp-dir={temp_dir}"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        pids = ray_processes(temp_dir)
        stop_processes(pids)
        left = [p for p in pids if running(p)]
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, [cmdline(p) for p in left]


def batch(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "batch", "--backend", "ray", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=engine_env(**RAY_ENV), cwd=ROOT)


def overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one time."""
    edges = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def test_three_jobs_two_at_a_time_and_a_bad_one_fails_without_retry(tmp_path, tiny_models, cluster):
    jobs = [write_job(tmp_path / f"job{i}", tiny_models, steps=30, seed=i) for i in range(3)]
    bad = write_job(tmp_path / "bad", tiny_models, render={"size": 7})
    proc = batch("--address", cluster, "--gpus-per-job", 1, *jobs, bad)
    stream = [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=300) == 10
    assert stream[0]["event"] == "batch_started" and stream[0]["resources"] == {"CPU": 4.0, "GPU": 2.0}
    for job in (*jobs, bad):
        assert engine_events(stream, job) == read_events(job)
    summary = {e["job_dir"]: e for e in stream[-1]["jobs"]}
    for job in jobs:
        assert summary[str(job)]["status"] == "succeeded" and (job / "result" / "mesh.npz").is_file()
    assert summary[str(bad)]["kind"] == "invalid_job" and summary[str(bad)]["attempts"] == 1
    assert not any(e["event"] == "job_lost" for e in stream)
    # Two logical GPUs, one per job (and 4 CPUs): two jobs at a time, never three.
    spans = []
    for job in jobs:
        events = read_events(job)
        spans.append((events[0]["time"], events[-1]["time"]))
        assert events[0]["event"] == "started" and events[-1]["event"] == "finished"
    assert overlap(spans) == 2, spans


def test_a_killed_worker_is_retried_from_its_checkpoint_to_the_same_weights(tmp_path, tiny_models, cluster):
    straight = write_job(tmp_path / "straight", tiny_models, steps=100, checkpoint_every=3)
    job = write_job(tmp_path / "killed", tiny_models, steps=100, checkpoint_every=3)
    proc = batch("--address", cluster, straight, job)
    stream, worker = [], None
    for line in proc.stdout:
        event = json.loads(line)
        stream.append(event)
        if event.get("job_dir") != str(job) or worker is not None:
            continue
        if event["event"] == "started":
            engine_pid = event["pid"]
        if event["event"] == "artifact" and event["kind"] == "checkpoint":
            guard = parent(engine_pid)
            worker = parent(guard)
            assert "engine.batch.guard" in cmdline(guard) and cmdline(worker).startswith("ray::"), cmdline(worker)
            os.kill(worker, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0
    assert not alive(engine_pid)  # the guard killed the engine with its worker
    lost = [e for e in stream if e["event"] == "job_lost"]
    assert len(lost) == 1 and lost[0]["job_dir"] == str(job) and lost[0]["retry"], lost
    assert lost[0]["resume_from_step"] >= 3
    again = [e for e in stream if e["event"] == "started" and e["job_dir"] == str(job)]
    assert [e["resume"] for e in again] == [False, True]
    assert any(e["event"] == "log" and e["message"] == f"resumed from step {lost[0]['resume_from_step']}"
               for e in stream if e.get("job_dir") == str(job))
    assert [(e["status"], e["attempts"]) for e in stream[-1]["jobs"]] == [("succeeded", 1), ("succeeded", 2)]
    assert_same_final_weights(straight, job, 100)


def test_cancelling_the_batch_cancels_every_job_and_leaves_no_engine(tmp_path, tiny_models, cluster):
    jobs = [write_job(tmp_path / f"job{i}", tiny_models, steps=100000) for i in range(3)]
    proc = batch("--address", cluster, *jobs)
    stream, running = [], set()
    for line in proc.stdout:
        stream.append(json.loads(line))
        if stream[-1]["event"] == "progress":
            running.add(stream[-1]["job_dir"])
            if len(running) == 2:
                proc.send_signal(signal.SIGINT)
                break
    stream += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=120) == 8
    pids = [e["pid"] for e in stream if e["event"] == "started"]
    assert len(pids) == 2 and not any(alive(p) for p in pids)
    assert not any(e["event"] == "job_lost" for e in stream)
    for job in jobs:
        finished = [e for e in stream if e["event"] == "finished" and e["job_dir"] == str(job)]
        if str(job) in running:  # stopped within a step, with its checkpoint
            assert [e["status"] for e in finished] == ["cancelled"]
            assert final_weights(job)[0] == finished[0]["step"] > 0
        else:  # its task found the cancel file and did not start the engine
            assert finished == [] and not (job / "checkpoints").exists()
    summary = stream[-1]
    assert summary["status"] == "cancelled" and summary["counts"]["cancelled"] == 3
    assert all(e["attempts"] == 1 for e in summary["jobs"])


def test_without_an_address_the_batch_starts_and_stops_a_cluster_of_this_machine(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", tiny_models, steps=2)
    temp_dir = tempfile.mkdtemp(prefix="t3dray", dir="/tmp")
    env = engine_env(RAY_USAGE_STATS_ENABLED="0", RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="disabled")
    try:
        out = subprocess.run([sys.executable, "-m", "engine", "batch", "--backend", "ray", "--gpus-per-job", "0",
                              str(job)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        stream = [json.loads(line) for line in out.stdout.splitlines()]
        assert stream[0]["local_cluster"] and stream[0]["start_s"] > 0
        assert stream[-1]["counts"] == {"succeeded": 1, "failed": 0, "cancelled": 0}
        assert (job / "result" / "mesh.npz").is_file()
        deadline = time.monotonic() + 10  # ray.shutdown signals its processes; give them a moment to exit
        while ray_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = ray_processes(temp_dir)
        assert not left, [cmdline(p) for p in left]
    finally:
        stop_processes(ray_processes(temp_dir))
        shutil.rmtree(temp_dir, ignore_errors=True)
