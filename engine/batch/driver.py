"""`python -m engine batch`: many job folders, one event stream, one summary, retries and cancel.

The driver is the same for every backend. A backend starts attempts (one `python -m engine run JOB_DIR`
each, engine/batch/process.py) and says when each ended; the driver follows every job's events.jsonl,
re-emits its new lines on stdout tagged with the job, decides what an ended attempt means (succeeded,
failed for the job's own reasons, cancelled, or lost with its worker) and retries what was lost.
Standard library and the job parser only: the `local` backend never imports Ray (nor torch).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..arguments import path_arg
from ..errors import EXIT_CODES, EngineError
from ..spec import changes_refusing_resume, job_changes, load_job
from .backend import BATCH_EXIT_CODES, Ended

LOST = "worker_lost"
"""The summary's kind for a job whose engine or worker died without a `finished` event and was not retried."""
POLL_S = 0.1
"""How often the driver reads the jobs' events.jsonl and looks at its attempts."""
_KIND_OF_CODE = {code: kind for kind, code in EXIT_CODES.items()}


class Output:
    """The batch's stdout: JSON lines, one writer at a time (the follower thread and the driver share it)."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.lock = threading.Lock()

    def emit(self, event: str, **fields) -> None:
        self.write(json.dumps({"event": event, "time": round(time.time(), 3), **fields}))

    def write(self, line: str) -> None:
        with self.lock:
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                pass  # the reader went away; the jobs go on and their events.jsonl keep the record


@dataclass
class Job:
    """One job folder's state in the batch."""

    path: Path
    """Absolute job folder; also the `job_dir` tag of its events."""
    offset: int = 0
    """Bytes of events.jsonl already read (the file is append-only; earlier runs' lines are skipped)."""
    partial: bytes = b""
    """A line the engine has not finished writing yet."""
    attempts: int = 0
    finished: dict | None = None
    """The current attempt's `finished` event, once read."""
    error: dict | None = None
    """The current attempt's last `error` event."""
    checkpoint_step: int | None = None
    """Step of the latest checkpoint written during this batch (a retry resumes from it)."""
    last_step: int | None = None
    summary: dict | None = None
    """Set when the job has ended for good: the summary's entry."""
    handle: object = None
    """The backend's handle of the running attempt."""
    history: list = field(default_factory=list)
    reason: str | None = None
    """Why the next attempt starts where it does (batch --resume), for its job_submitted."""


class Follower:
    """Reads the new lines of each job's events.jsonl and writes them on stdout with "job_dir" added.

    poll() is called by a thread every POLL_S and by the driver before it judges an ended attempt, so
    every line an attempt wrote is out before the driver's own event about it.
    """

    def __init__(self, jobs: list[Job], output: Output) -> None:
        self.jobs, self.output = jobs, output
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="events", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        for job in self.jobs:
            self.poll(job)

    def _loop(self) -> None:
        while not self.stopped.wait(POLL_S):
            for job in self.jobs:
                if job.handle is not None:
                    self.poll(job)

    def poll(self, job: Job) -> None:
        with self.lock:
            try:
                with open(job.path / "events.jsonl", "rb") as f:
                    f.seek(job.offset)
                    data = f.read()
            except FileNotFoundError:
                return
            job.offset += len(data)
            lines = (job.partial + data).split(b"\n")
            job.partial = lines.pop()
            for raw in lines:
                try:
                    event = json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # not an event (a torn line after a crash); events.jsonl keeps it
                if not isinstance(event, dict):
                    continue
                self._note(job, event)
                self.output.write(json.dumps({**event, "job_dir": str(job.path)}))

    @staticmethod
    def _note(job: Job, event: dict) -> None:
        kind = event.get("event")
        if kind == "finished":
            job.finished = event
        elif kind == "error":
            job.error = event
        elif kind == "artifact" and event.get("kind") == "checkpoint":
            job.checkpoint_step = event.get("step")
        if isinstance(event.get("step"), int):
            job.last_step = event["step"]


BATCH_CANCEL = "cancelled by engine batch\n"
"""What a cancelled batch writes in each job's cancel file: `batch --resume` removes those, and only those."""


@dataclass
class EarlierRun:
    """What a job folder's events.jsonl says of its last run (the lines from its last `started` on)."""

    status: str
    """"succeeded" (every artifact it named still there), "results_missing" (succeeded, some removed since),
    "failed", "unfinished" (cancelled, killed or lost) or "new" (no run)."""
    step: int | None = None
    """The last step it reported."""
    job: dict | None = None
    """The job it ran (its `started` event's), when it said."""
    error_kind: str | None = None
    """Its last error's kind, when it failed."""


def earlier_run(job_dir: Path) -> EarlierRun:
    """The job folder's last run, from its events.jsonl."""
    try:
        lines = (job_dir / "events.jsonl").read_bytes().splitlines()
    except OSError:
        return EarlierRun("new")
    run: list[dict] = []
    for raw in lines:
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a torn line after a crash
        if not isinstance(event, dict):
            continue
        if event.get("event") == "started":
            run = []
        run.append(event)
    if not run:
        return EarlierRun("new")
    steps = [e["step"] for e in run if isinstance(e.get("step"), int)]
    started = run[0] if run[0].get("event") == "started" else {}
    job = started.get("job") if isinstance(started.get("job"), dict) else None
    errors = [e.get("kind") for e in run if e.get("event") == "error"]
    finished = next((e for e in reversed(run) if e.get("event") == "finished"), None)
    status = finished.get("status") if finished else None
    if status == "succeeded":
        artifacts = [e.get("path") for e in run if e.get("event") == "artifact" and e.get("kind") != "checkpoint"]
        there = all(isinstance(a, str) and (job_dir / a).exists() for a in artifacts)
        status = "succeeded" if there else "results_missing"
    elif status != "failed":
        status = "unfinished"
    return EarlierRun(status, steps[-1] if steps else None, job, errors[-1] if errors else None)


# The keys of a changed job.json that matter to a job that succeeded: more steps continue from its final
# checkpoint, other export settings export again from it; the other resumable keys change nothing of a result.
RESULT_KEYS = ("steps", "export")


def continue_plan(job_dir: Path) -> tuple[str, int | None, str]:
    """What `batch --resume` does with a job folder, and why (the why ends with what happens):

    ("skip", step, why): it succeeded as its job.json still asks; ("resume", checkpoint step, why): continue
    from its checkpoint (interrupted, failed, results removed, or given more steps or other export settings
    since it succeeded); ("afresh", None, why): never run, no checkpoint to continue, job.json changed in a
    key a resume cannot take (seed, prompt, method, ...) or now asking fewer steps than the checkpoint holds.
    The job.json is compared with the checkpoint's job (or, without a checkpoint, with its last run's)."""
    run = earlier_run(job_dir)
    if run.status == "new":
        return "afresh", None, "it has not run yet: starts afresh"
    try:
        current = load_job(job_dir).to_dict()
    except EngineError:
        return "afresh", None, "its job.json is not valid: the run says why (a checkpoint stays for a later --resume)"
    try:
        meta = json.loads((job_dir / "checkpoints" / "latest.json").read_text(encoding="utf-8"))
        saved, kept = meta["job"], meta["step"]
    except (OSError, ValueError, KeyError, TypeError):
        meta, saved, kept = None, run.job, None
    if saved is None:  # no checkpoint, and a run that did not say its job (an older engine)
        if run.status == "succeeded":
            return "skip", run.step, "succeeded in an earlier run: not run again"
        return "afresh", None, "no checkpoint to continue from: starts afresh"
    refused = changes_refusing_resume(saved, current)
    if refused:
        key, before, after = refused[0]
        since = "its checkpoint" if meta else "its last run"
        return "afresh", None, f"job.json's {key!r} changed since {since} ({before!r} -> {after!r}): starts afresh"
    changed = {key: (before, after) for key, before, after in job_changes(saved, current) if key in RESULT_KEYS}
    if meta is None:
        if run.status == "succeeded" and not changed:
            return "skip", run.step, "succeeded in an earlier run: not run again (its checkpoint is gone)"
        return "afresh", None, "no checkpoint to continue from: starts afresh"
    phases = meta.get("phases")
    if isinstance(phases, list) and "steps" in changed:
        # Every method's `steps` is the length of one of its phases: the total moves by as much.
        before, after = changed["steps"]
        total = sum(p[1] for p in phases) + after - before
        if kept > total:
            return "afresh", None, (f"job.json asks {total} steps in all, fewer than its checkpoint's {kept}: "
                                    "starts afresh")
    if run.status == "results_missing":
        return "resume", kept, "its results were removed: exported again from its final checkpoint"
    if run.status == "succeeded":
        if not changed:
            return "skip", run.step, "succeeded in an earlier run: not run again"
        if "steps" in changed:
            before, after = changed["steps"]
            return "resume", kept, (f"job.json's 'steps' changed since it succeeded ({before} -> {after}): "
                                    f"continues from its final checkpoint (step {kept})")
        return "resume", kept, "job.json's 'export' changed since it succeeded: exported again from its final checkpoint"
    if run.status == "failed":
        return "resume", kept, f"its last run failed ({run.error_kind}): resumed from its checkpoint (step {kept})"
    return "resume", kept, f"interrupted: resumed from its checkpoint (step {kept})"


def checkpoint_on_disk(job_dir: Path) -> int | None:
    """The step of the checkpoint a resumed attempt will load, or None when there is none readable.

    Read from checkpoints/latest.json rather than from the `checkpoint` events: the engine replaces that file
    before it emits the event, so a worker killed between the two leaves a newer checkpoint than the stream says.
    Only asked once this batch has seen a `checkpoint` event of the job: before that, the file may be an
    earlier run's, which a fresh attempt must not resume.
    """
    try:
        step = json.loads((job_dir / "checkpoints" / "latest.json").read_text(encoding="utf-8")).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def judge(job: Job, ended: Ended) -> tuple[str, str | None, str]:
    """(status, error kind, message) of an ended attempt: status "succeeded", "failed", "cancelled", or "lost"
    (the engine or its worker died without a `finished` event: worth a retry)."""
    if ended.skipped:
        try:
            batch_cancel = (job.path / "cancel").read_text(encoding="utf-8") == BATCH_CANCEL
        except (OSError, UnicodeDecodeError):
            batch_cancel = False
        if batch_cancel:
            return "cancelled", None, ("cancelled before it started (the cancel file of a cancelled batch was there; "
                                       "`python -m engine batch --resume` continues that batch)")
        return "cancelled", None, "cancelled before it started (its cancel file was there)"
    error = job.error or {}
    if job.finished is not None:
        status = job.finished.get("status", "failed")
        if status == "failed":
            return "failed", error.get("kind", "internal"), error.get("message", "")
        return status, None, ""
    code = ended.returncode
    if code is not None and code >= 0:
        # No `finished` line (yet, on a slow shared file system): the exit code says the same.
        kind = _KIND_OF_CODE.get(code, "internal")
        if kind in ("succeeded", "cancelled"):
            return kind, None, ""
        return "failed", kind, error.get("message") or (
            f"the engine exited with code {code} without a finished event; see {job.path / 'log.txt'}")
    if code is not None:
        return "lost", LOST, f"the engine was killed by signal {-code} ({_signal_name(-code)})"
    return "lost", LOST, ended.reason or "the worker running the engine died"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


class LocalBackend:
    """Runs the jobs here, one at a time, each under its guard."""

    name = "local"
    slots = 1

    def describe(self) -> dict:
        return {}

    def start(self, job: Job, resume: bool):
        from .process import start_engine

        if (job.path / "cancel").exists():
            return Ended(None, skipped=True)
        return start_engine(job.path, resume)

    def ended(self, handles: list, timeout: float) -> list[tuple[object, Ended]]:
        done = [(h, h) for h in handles if isinstance(h, Ended)]
        procs = [h for h in handles if not isinstance(h, Ended)]
        deadline = time.monotonic() + timeout
        while True:
            for proc in procs:
                if proc.poll() is not None:
                    proc.stdin.close()
                    done.append((proc, Ended(proc.returncode)))
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def force_stop(self, handles: list) -> None:
        for proc in handles:
            if not isinstance(proc, Ended) and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)  # the guard's group: the guard and its engine

    def close(self) -> None:
        pass


def make_backend(name: str, address: str | None, gpus_per_job: float):
    """The backend by name; Ray is imported only for "ray" (raises EngineError kind backend_unavailable)."""
    if name == "local":
        return LocalBackend()
    from .ray_backend import RayBackend

    return RayBackend(address, gpus_per_job)


class Batch:
    """The driver: starts attempts while the backend has slots, follows events, retries lost jobs, cancels."""

    def __init__(self, job_dirs: list[Path], backend, max_retries: int, output: Output,
                 continue_batch: bool = False) -> None:
        self.jobs = [Job(Path(os.path.abspath(d))) for d in job_dirs]
        self.backend, self.max_retries, self.output = backend, max_retries, output
        self.continue_batch = continue_batch
        self.follower = Follower(self.jobs, output)
        self.cancel_requests = 0
        self.cancelled = self.forced = False

    def request_cancel(self, signum=None, frame=None) -> None:
        """The SIGINT / SIGTERM handler: only counts; the driver's loop acts within POLL_S."""
        self.cancel_requests += 1

    def run(self) -> int:
        started = time.monotonic()
        for job in self.jobs:
            events = job.path / "events.jsonl"
            job.offset = events.stat().st_size if events.is_file() else 0
        self.output.emit("batch_started", backend=self.backend.name, jobs=[str(j.path) for j in self.jobs],
                         max_retries=self.max_retries, pid=os.getpid(), **self.backend.describe())
        resume: dict[Path, bool] = {}
        queue = self._continue(resume) if self.continue_batch else list(self.jobs)  # to start, in order
        self.follower.start()
        try:
            while queue or any(j.handle is not None for j in self.jobs):
                self._act_on_cancel(queue)
                while queue and not self.cancelled and self._running() < self.backend.slots:
                    self._start(queue.pop(0), resume)
                running = [j.handle for j in self.jobs if j.handle is not None]
                if not running:
                    continue
                for handle, ended in self.backend.ended(running, POLL_S * 3):
                    job = next(j for j in self.jobs if j.handle is not None and j.handle == handle)
                    self._attempt_ended(job, ended, queue, resume)
        finally:
            self.follower.stop()
            self.backend.close()
        return self._summary(time.monotonic() - started)

    def _continue(self, resume: dict) -> list[Job]:
        """--resume: continue_plan decides what this batch does with each job. Skipped jobs end at once (a
        job_ended with attempts 0); the others are queued, resuming or afresh, their first job_submitted saying
        why. The cancel files a cancelled batch wrote are removed first."""
        queue = []
        for job in self.jobs:
            cancel = job.path / "cancel"
            try:
                if cancel.read_text(encoding="utf-8") == BATCH_CANCEL:
                    cancel.unlink()
            except (OSError, UnicodeDecodeError):
                pass  # none, or the user's own cancel file: it stays, and the job ends cancelled
            action, step, job.reason = continue_plan(job.path)
            if action == "skip":
                job.last_step = step
                job.summary = {"job_dir": str(job.path), "status": "succeeded", "kind": None, "message": job.reason,
                               "attempts": 0, "step": step}
                self.output.emit("job_ended", **job.summary)
                continue
            if action == "resume":
                job.checkpoint_step = step
                resume[job.path] = True
            queue.append(job)
        return queue

    def _running(self) -> int:
        return sum(j.handle is not None for j in self.jobs)

    def _start(self, job: Job, resume: dict) -> None:
        job.attempts += 1
        job.finished = job.error = None
        again = resume.get(job.path, False)
        self.output.emit("job_submitted", job_dir=str(job.path), attempt=job.attempts, resume=again,
                         from_step=job.checkpoint_step if again else 0, **({"reason": job.reason} if job.reason else {}))
        job.reason = None
        job.handle = self.backend.start(job, again)

    def _attempt_ended(self, job: Job, ended: Ended, queue: list, resume: dict) -> None:
        self.follower.poll(job)  # every line the attempt wrote goes out before what we say about it
        job.handle = None
        status, kind, message = judge(job, ended)
        if status == "lost":
            if job.checkpoint_step is not None:  # one was written in this batch: the file is at least as new
                job.checkpoint_step = checkpoint_on_disk(job.path)
            again = job.checkpoint_step is not None
            retry = not self.cancelled and job.attempts <= self.max_retries
            self.output.emit("job_lost", job_dir=str(job.path), attempt=job.attempts, reason=message, retry=retry,
                             resume_from_step=job.checkpoint_step if retry and again else None)
            if retry:
                resume[job.path] = again
                queue.insert(0, job)  # before the jobs that have not started: it was running
                return
            status = "cancelled" if self.cancelled else "failed"
        job.summary = {"job_dir": str(job.path), "status": status, "kind": kind, "message": message,
                       "attempts": job.attempts, "step": job.last_step}
        self.output.emit("job_ended", **job.summary)

    def _act_on_cancel(self, queue: list) -> None:
        if self.cancel_requests and not self.cancelled:
            # Cancel file first: each running engine stops within a step and keeps its checkpoint; a queued
            # attempt (Ray) finds the file when its turn comes and does not start.
            self.cancelled = True
            self.output.emit("batch_cancelling", how="cancel_file")
            for job in self.jobs:
                if job.summary is None:
                    try:
                        (job.path / "cancel").write_text(BATCH_CANCEL, encoding="utf-8")
                    except OSError:
                        pass  # a folder that is gone: its attempt fails on its own
            for job in queue:  # never started: nothing to wait for
                job.summary = {"job_dir": str(job.path), "status": "cancelled", "kind": None,
                               "message": "the batch was cancelled before it started", "attempts": job.attempts,
                               "step": job.last_step}
                self.output.emit("job_ended", **job.summary)
            queue.clear()
        if self.cancel_requests > 1 and not self.forced:
            # A second Ctrl-C: stop now, without waiting for the steps in flight (checkpoints may be older).
            self.forced = True
            self.output.emit("batch_cancelling", how="kill")
            self.backend.force_stop([j.handle for j in self.jobs if j.handle is not None])

    def _summary(self, elapsed: float) -> int:
        entries = [j.summary for j in self.jobs]
        counts = {s: sum(e["status"] == s for e in entries) for s in ("succeeded", "failed", "cancelled")}
        if self.cancelled:
            code = BATCH_EXIT_CODES["cancelled"]
        elif counts["succeeded"] == len(entries):
            code = BATCH_EXIT_CODES["succeeded"]
        else:
            code = BATCH_EXIT_CODES["jobs_failed"]
        status = {0: "succeeded", 8: "cancelled"}.get(code, "failed")
        self.output.emit("batch_finished", status=status, exit_code=code, counts=counts, jobs=entries,
                         elapsed_s=round(elapsed, 3))
        return code


def batch_command(job_dirs: list[Path], backend: str = "local", address: str | None = None,
                  gpus_per_job: float = 1, max_retries: int = 3, continue_batch: bool = False) -> int:
    """The `batch` subcommand: returns its exit code (BATCH_EXIT_CODES).

    Raises EngineError (kind invalid_job, exit code 2) for a JOB_DIR that is not a folder, before anything
    starts, and BackendUnavailable (exit code 11) when Ray or the cluster is missing.
    """
    from ..jobs.events import claim_stdout

    for d in job_dirs:
        if not Path(d).is_dir():
            raise EngineError("invalid_job", f"{d} is not a job folder", "give folders that hold a job.json")
    seen = set()
    for d in job_dirs:
        if os.path.abspath(d) in seen:
            raise EngineError("invalid_job", f"job folder {d} is given twice", "give each job folder once")
        seen.add(os.path.abspath(d))
    out = Output(claim_stdout())  # before Ray is imported: it prints
    batch = Batch(job_dirs, make_backend(backend, address, gpus_per_job), max_retries, out, continue_batch)
    # After the backend started: ray.init installs a SIGTERM handler of its own in the driver.
    previous = {sig: signal.signal(sig, batch.request_cancel) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return batch.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


BATCH_NOTES = """Each JOB_DIR runs the unchanged `python -m engine run JOB_DIR` (with --resume when a lost attempt
is retried from its checkpoint). stdout is one JSON-lines stream:
  every line of each job's events.jsonl, as it is written, with "job_dir": the job folder (absolute);
  the batch's own events (with "job_dir" where about one job):
    batch_started   backend, jobs, max_retries, pid (ray: address, local_cluster, start_s, resources)
    job_submitted   job_dir, attempt (1, 2, ...), resume, from_step, reason (--resume: why it starts there)
    job_lost        job_dir, attempt, reason, retry, resume_from_step: the engine or its worker died
                    without a `finished` event (killed, node lost); retried up to --max-retries times
    job_ended       job_dir, status (succeeded | failed | cancelled), kind (the error kind of a failed job,
                    "worker_lost" when retries ran out), message, attempts, step
    batch_cancelling how ("cancel_file", then "kill" on a second signal)
    batch_finished  status, exit_code, counts {succeeded, failed, cancelled}, jobs (the job_ended
                    entries, in JOB_DIR order), elapsed_s
A job that fails for its own reasons (invalid_job, model_missing, diverged, ...) is not retried.
SIGINT or SIGTERM cancels the batch: each job's cancel file is written, running jobs stop within a step
and keep their checkpoint, jobs not yet started do not start; a second signal kills the engines. The
cancel files stay (delete one and `python -m engine run --resume JOB_DIR` continues that job).

--resume continues a batch that was cancelled or whose submitter died, from what each job folder says of
its last run (events.jsonl, checkpoints/latest.json): a job that succeeded as its job.json still asks is
not run again (job_ended with attempts 0); one that was cancelled, killed or lost, whose results were
removed, or whose steps or export settings changed since, continues from its checkpoint; one that failed,
never ran, has no checkpoint, or whose job.json changed in a key a resume cannot take (seed, prompt,
method, ...) starts afresh. job_submitted's "reason" says which and why. The cancel files a cancelled
batch wrote are removed; a cancel file of your own stays, and its job ends cancelled.

Ray: every node must see the job folders at the same path (a shared job root on NFS or SMB) and run the
engine environment with this checkout at the same path. Paths in job.json are relative to the job folder.

exit codes (10: every job ended and some failed, or were cancelled through a cancel file of their own;
batch_finished's status is then "failed"):
""" + "\n".join(f"  {code:>2}  {name}" for name, code in BATCH_EXIT_CODES.items())


def _at_least_zero(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"must be >= 0 (got {text})")
        return value
    return parse


def add_batch(sub) -> None:
    """Add the `batch` subcommand to the engine's subparsers (engine/cli.py)."""
    p = sub.add_parser("batch", help="run many job folders: here in turn, or on a Ray cluster",
                       description="Run many job folders, here one after another or one Ray task each.",
                       epilog=BATCH_NOTES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job_dirs", nargs="+", type=path_arg, metavar="JOB_DIR")
    p.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="local: here, in turn, no Ray needed (default); ray: one task per job folder")
    p.add_argument("--address", help="the Ray cluster's head, HOST:PORT (`ray start --head` prints it); "
                                     "default: start a cluster of this machine for the batch")
    p.add_argument("--gpus-per-job", type=_at_least_zero(float), default=1.0,
                   help="GPUs Ray gives each job (default 1; 0 runs on CPUs); ray only")
    p.add_argument("--max-retries", type=_at_least_zero(int), default=3,
                   help="retries of a job whose engine or worker died (default 3)")

    p.add_argument("--resume", action="store_true",
                   help="continue an earlier batch of these folders: skip the jobs that succeeded, resume the "
                        "interrupted ones from their checkpoints")

    def handler(args) -> int:
        if args.backend != "ray" and args.address is not None:
            p.error("--address needs --backend ray")
        return batch_command(args.job_dirs, args.backend, args.address, args.gpus_per_job, args.max_retries,
                             args.resume)

    p.set_defaults(handler=handler)
