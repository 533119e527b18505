"""Run a batch of job folders on a Ray cluster: one `python -m engine batch --backend ray` subprocess,
followed like a local engine (docs/ARCHITECTURE.md, "Batches on a cluster").

No bpy and no torch, and no Ray either: Blender's Python never imports Ray. The engine's own
environment (installed with `install/text3d.py engine --with ray`) submits one task per job folder to
the cluster and re-emits every job's events on its stdout, each tagged with its `job_dir`, between the
batch's own events (`batch_started`, `job_submitted`, `job_lost`, `job_ended`, `batch_finished`).
ClusterBatch reads that one stream and hands each job's events to its ClusterJobRun, which has the
EngineRun interface (state, done, poll, cancel, wait, stop), so the job manager follows, previews and
imports cluster jobs exactly as local ones, and each result is imported as soon as its job ends.

The job folders must be where every node of the cluster sees them at the same path (the shared
job root: the Jobs Folder preference on NFS or SMB, README "Batches on a cluster").
"""
from __future__ import annotations

import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from . import paths
from .runner import (_EOF, _LIVE, FINAL_STATUSES, HINT_ENGINE_PATH, EngineRun, child_env, drain, engine_command,
                     parse_event, session_kwargs, signal_group, tail)

HINT_RAY = ("Install Ray into the engine's environment (python3 install/text3d.py engine --with ray), check the "
            "cluster address in Preferences > Add-ons > Text3D > Run Batches On, or run batches locally")
# Exit codes of `python -m engine batch` that end the batch before a job could say why (engine/batch/driver.py).
BATCH_EXIT_KINDS = {2: "invalid_job", 9: "usage", 11: "backend_unavailable"}


def batch_command(engine_python: str | os.PathLike, job_dirs: list[Path], address: str = "",
                  gpus_per_job: float = 1, max_retries: int = 3) -> list[str]:
    """The argument list of `python -m engine batch --backend ray ...` (no shell)."""
    args = ["batch", "--backend", "ray", "--gpus-per-job", f"{gpus_per_job:g}", "--max-retries", str(max_retries)]
    if address:
        args += ["--address", address]
    return engine_command(engine_python, *args, *[str(d) for d in job_dirs])


def job_key(path: str | os.PathLike) -> str:
    """A job folder as the batch's `job_dir` tags name it (absolute, links resolved)."""
    return os.path.realpath(path)


class ClusterBatch:
    """One `engine batch --backend ray` process for several job folders. start(), then pump() regularly
    (each ClusterJobRun.poll() does); every job of it ends: succeeded, failed or cancelled."""

    def __init__(self, engine_python: str | os.PathLike, job_dirs: list[str | os.PathLike], *, address: str = "",
                 gpus_per_job: float = 1, max_retries: int = 3, engine_root: str | os.PathLike | None = None,
                 cancel_grace_s: float = 30.0, prepare: Callable[[dict], None] | None = None) -> None:
        self.engine_python = str(engine_python or "")
        self.address, self.gpus_per_job, self.max_retries = address, gpus_per_job, max_retries
        self.engine_root = engine_root
        # SIGTERM makes the batch write every job's cancel file and wait for them; kill only after this.
        self.cancel_grace_s = cancel_grace_s
        self.prepare = prepare
        self.runs: dict[str, ClusterJobRun] = {}
        for d in job_dirs:
            self.runs[job_key(d)] = ClusterJobRun(self, d)
        self.summary: dict | None = None
        """The `batch_finished` event once read."""
        self.returncode: int | None = None
        self.stderr_path: Path | None = None
        self.cancel_requested_at: float | None = None
        self._proc: subprocess.Popen | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._eof = False
        self._exited_at: float | None = None
        self._killed = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def done(self) -> bool:
        return all(run.done for run in self.runs.values())

    def start(self) -> None:
        """Start the batch; an engine Python that is missing or cannot start fails every job at once."""
        if not self.engine_python or not Path(self.engine_python).is_file():
            self._fail_all("engine_not_found", f"engine Python not found: {self.engine_python or '(not set)'}",
                           HINT_ENGINE_PATH)
            return
        fd, name = tempfile.mkstemp(prefix="text3d-batch-", suffix="-stderr.txt")
        self.stderr_path = Path(name)
        try:
            with os.fdopen(fd, "wb") as stderr:
                self._proc = subprocess.Popen(
                    batch_command(self.engine_python, [Path(k) for k in self.runs], self.address,
                                  self.gpus_per_job, self.max_retries),
                    cwd=tempfile.gettempdir(),  # never a checkout: `-m engine` would pick up its engine/
                    env=child_env(self.engine_root), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                    stderr=stderr, shell=False, text=True, encoding="utf-8", errors="replace", bufsize=1,
                    **session_kwargs())
        except OSError as exc:
            self._fail_all("engine_not_found", f"cannot start the engine Python {self.engine_python}: "
                           f"{paths.os_reason(exc)}", HINT_ENGINE_PATH)
            return
        _LIVE.add(self)
        for run in self.runs.values():
            run.state.status = "starting"
        threading.Thread(target=self._read, name=f"text3d-batch-{self._proc.pid}", daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            event = parse_event(line)
            if event is not None:
                if self.prepare is not None and "job_dir" in event:
                    self.prepare(event)
                self._queue.put(event)
        self._queue.put(_EOF)

    def pump(self) -> None:
        """Hand the events that arrived to their jobs; end the jobs the batch ended (never blocks)."""
        events, eof = drain(self._queue)
        self._eof = self._eof or eof
        for event in events:
            self._dispatch(event)
        if self._proc is None or self.returncode is not None:
            return
        self._escalate()
        if self._proc.poll() is not None:
            self._exited_at = self._exited_at or time.monotonic()
            if self._eof or time.monotonic() - self._exited_at > 2.0:
                self._finish(self._proc.returncode)

    def _dispatch(self, event: dict) -> None:
        kind = event["event"]
        if kind == "batch_finished":
            self.summary = event
            return
        run = self.runs.get(job_key(event["job_dir"])) if isinstance(event.get("job_dir"), str) else None
        if run is None:
            return  # the batch's own start and cancel events, or a folder this batch did not give
        if kind == "job_ended":
            run._end(event)
        elif kind == "job_lost":
            retry = "; retried from its last checkpoint" if event.get("retry") else ""
            run.messages.append(f"worker lost ({event.get('reason', '')}){retry}")
        elif kind == "job_submitted":
            run.attempts = event.get("attempt", run.attempts)
        else:
            run.events.append(event)

    def cancel(self) -> None:
        """Cancel every job: SIGTERM, on which the batch writes each job's cancel file (so each keeps its
        checkpoint) and waits for them; SIGKILL to its process group after cancel_grace_s."""
        if self._proc is None or self.returncode is not None:
            for run in self.runs.values():
                if not run.done:
                    run.state.status = "cancelled"
            return
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.monotonic()
            signal_group(self._proc, kill=False)

    @property
    def exited(self) -> bool:
        """Whether the batch process has exited (or never started)."""
        return self._proc is None or self.returncode is not None

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Pump until every job has ended and the batch process has exited (or timeout passes); True if so."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (self.done and self.exited):
            self.pump()
            if (self.done and self.exited) or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(interval)
        return self.done and self.exited

    def stop(self, cancel_grace_s: float = 10.0) -> None:
        """Cancel every job and wait until the batch is gone (quitting Blender, loading a file)."""
        self.cancel_grace_s = min(self.cancel_grace_s, cancel_grace_s)
        self.cancel()
        self.wait(timeout=self.cancel_grace_s + 10.0)

    def _escalate(self) -> None:
        if (self.cancel_requested_at is not None and not self._killed and self._proc.poll() is None
                and time.monotonic() - self.cancel_requested_at >= self.cancel_grace_s):
            self._killed = True
            signal_group(self._proc, kill=True)

    def _finish(self, returncode: int) -> None:
        """The batch process exited: a job it did not end failed with the batch's reason."""
        self.returncode = returncode
        _LIVE.discard(self)
        open_runs = [run for run in self.runs.values() if not run.done]
        if not open_runs:
            return
        said = tail(self.stderr_path, 5) if self.stderr_path else ""
        line = next((s for s in said.splitlines() if s.startswith("error (")), "")
        if self.cancel_requested_at is not None:
            for run in open_runs:
                run._end({"status": "cancelled"})
            return
        kind = line[len("error ("):line.index(")")] if line else BATCH_EXIT_KINDS.get(returncode, "batch_crashed")
        message = line.split(": ", 1)[1] if ": " in line else f"the batch exited with code {returncode}"
        hint = next((s[len("hint: "):] for s in said.splitlines() if s.startswith("hint: ")), "")
        for run in open_runs:
            run._end({"status": "failed", "kind": kind, "message": message,
                      "hint": hint or (HINT_RAY if kind == "backend_unavailable" else
                                       f"See {self.stderr_path} and the job folder"), "log_tail": said})

    def _fail_all(self, kind: str, message: str, hint: str) -> None:
        for run in self.runs.values():
            run._fail(kind, message, hint)


class ClusterJobRun(EngineRun):
    """One job of a ClusterBatch, with EngineRun's interface: its state comes from the batch's stream."""

    def __init__(self, batch: ClusterBatch, job_dir: str | os.PathLike) -> None:
        super().__init__(batch.engine_python, job_dir, engine_root=batch.engine_root)
        self.batch = batch
        self.state.status = "queued"
        self.events: list[dict] = []
        """Events the batch handed over since the last poll()."""
        self.messages: list[str] = []
        """What the batch said of this job (a lost worker, a retry), for the panel."""
        self.attempts = 0
        self._applied: list[dict] = []

    @property
    def pid(self) -> int | None:
        """The batch process's (the engine itself runs on a cluster node)."""
        return self.batch.pid

    def start(self) -> None:
        """The batch starts every job; start it once (ClusterBatch.start)."""

    def poll(self) -> list[dict]:
        """Apply and return this job's events that arrived since the last call; never blocks."""
        self.batch.pump()
        self._take_events()
        events, self._applied = self._applied, []
        return events

    def _take_events(self) -> None:
        for event in self.events:
            self._apply(event)
        self._applied += self.events
        self.events = []

    def cancel(self) -> None:
        """Cancel this job alone: its cancel file (the engine stops within a step and keeps its checkpoint;
        a job still waiting for a worker is not started)."""
        if self.done or self.cancel_requested_at is not None:
            return
        self.cancel_requested_at = time.monotonic()
        if self.batch.returncode is not None or self.batch._proc is None:
            self.state.status = "cancelled"
            return
        try:
            (self.job_dir / "cancel").write_text("cancel\n", encoding="utf-8")
        except OSError as exc:
            self.messages.append(f"cannot write {self.job_dir / 'cancel'}: {paths.os_reason(exc)}")

    def stop(self, cancel_grace_s: float = 2.0, terminate_grace_s: float = 2.0) -> None:
        self.cancel()
        self.wait(timeout=cancel_grace_s + terminate_grace_s + 5.0)
        if not self.done:
            self.batch.stop()

    def _end(self, summary: dict) -> None:
        """The batch ended this job (its `job_ended` entry)."""
        if self.done:
            return
        self._take_events()  # its own events first: its error, its artifacts
        s = self.state
        status = summary.get("status")
        s.status = status if status in FINAL_STATUSES else "failed"
        if s.status == "failed":
            if s.error is None or summary.get("kind") not in (None, s.error.get("kind")):
                s.error = {"kind": str(summary.get("kind") or "engine_crashed"),
                           "message": str(summary.get("message") or "the job failed on the cluster"),
                           "hint": str(summary.get("hint") or "See log.txt in the job folder")}
            s.error["log_tail"] = summary.get("log_tail") or self.log_tail()
