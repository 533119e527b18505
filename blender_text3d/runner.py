"""Run one engine job as a subprocess and follow its JSON-lines events (docs/ARCHITECTURE.md).

No bpy and no torch: plain pytest covers it. The engine is started without a shell,
in its own process group, with Blender's Python variables removed from its
environment; a reader thread turns stdout lines into events on a queue and `poll()`
drains it on the caller's thread, so the caller never blocks on the engine. A job folder that
is deleted, moved or made unreadable while the engine runs stops the engine and fails the run
(job_dir_lost), since nothing it makes could arrive any more.
"""
from __future__ import annotations

import atexit
import collections
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import paths
from .engine_rules import errors as engine_errors

FINAL_STATUSES = ("succeeded", "cancelled", "failed")
# Exit codes of `python -m engine run` (engine/errors.py), for engines that die before saying why.
EXIT_KINDS = {code: kind for kind, code in engine_errors.EXIT_CODES.items() if kind not in ("succeeded", "cancelled")}
EXIT_CANCELLED = engine_errors.EXIT_CODES["cancelled"]
# Blender sets these for its own bundled Python; the engine venv must not inherit them.
_PYTHON_LEFTOVERS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONNOUSERSITE",
                     "PYTHONSAFEPATH", "PYTHONUSERBASE", "PYTHONEXECUTABLE", "VIRTUAL_ENV",
                     "__PYVENV_LAUNCHER__")
HINT_ENGINE_PATH = ("Set the engine Python in Preferences > Add-ons > Text3D, "
                    "or create it with install/ (see README.md)")
_EOF = object()


def engine_command(engine_python: str | os.PathLike, *args: str) -> list[str]:
    """The argument list that runs `python -m engine ARGS` (no shell)."""
    return [str(engine_python), "-m", "engine", *map(str, args)]


def child_env(engine_root: str | os.PathLike | None = None) -> dict[str, str]:
    """os.environ without Blender's Python settings, unbuffered, with the engine on the path."""
    env = {k: v for k, v in os.environ.items() if k not in _PYTHON_LEFTOVERS}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if engine_root:
        env["PYTHONPATH"] = str(engine_root)
    return env


def session_kwargs() -> dict:
    """Popen arguments for a new process group, so signals reach the engine's children too."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def signal_group(proc: subprocess.Popen, kill: bool) -> None:
    """Terminate (or kill) a process started with session_kwargs() and its children."""
    try:
        if sys.platform == "win32":
            proc.kill() if kill else proc.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError):
        pass  # already gone


def parse_event(line: str) -> dict | None:
    """One stdout line -> an event dict, or None for anything that is not a JSON event."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a text file, '' if it is missing."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def drain(events: queue.SimpleQueue) -> tuple[list[dict], bool]:
    """What a reader thread has queued so far (never blocks), and whether its end of stream was among it."""
    items, eof = [], False
    while True:
        try:
            item = events.get_nowait()
        except queue.Empty:
            return items, eof
        if item is _EOF:
            eof = True
        else:
            items.append(item)


def _number(value, default=None):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


@dataclass
class RunState:
    """What the events said so far; paths are absolute."""

    status: str = "starting"
    """starting, running, then one of FINAL_STATUSES."""
    info: dict = field(default_factory=dict)
    """The `started` event (method, steps, device, ...)."""
    step: int = 0
    """Last reported step."""
    total: int = 0
    """Total steps of the job."""
    elapsed_s: float = 0.0
    """Seconds since the engine started optimising."""
    eta_s: float | None = None
    """Estimated seconds left."""
    losses: dict = field(default_factory=dict)
    """Latest losses by name."""
    phase: str = ""
    """The method's current phase (e.g. NeRF-Art's "reconstruct", then "style"); "" before one is reported."""
    preview: Path | None = None
    """Latest preview image."""
    preview_mesh: Path | None = None
    """Latest intermediate mesh (npz), with its step in preview_mesh_step."""
    preview_mesh_step: int = 0
    """Step of preview_mesh."""
    artifacts: dict = field(default_factory=dict)
    """Latest artifact path by kind (mesh, glb, checkpoint, ...)."""
    logs: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    """Recent `log` events as (level, message)."""
    error: dict | None = None
    """kind, message, hint and, for a crash, log_tail."""
    returncode: int | None = None
    """The engine's exit code once it has exited."""


class EngineRun:
    """One engine subprocess for one job folder. Call start(), then poll() regularly."""

    def __init__(self, engine_python: str | os.PathLike, job_dir: str | os.PathLike, *,
                 engine_root: str | os.PathLike | None = None,
                 cancel_grace_s: float = 15.0, terminate_grace_s: float = 5.0,
                 prepare: Callable[[dict], None] | None = None, resume: bool = False) -> None:
        self.engine_python = str(engine_python or "")
        self.job_dir = Path(job_dir)
        self.engine_root = engine_root
        self.resume = resume  # `run --resume`: continue from the job folder's checkpoint
        # The engine stops within one step of seeing the cancel file; a slow step on a
        # small GPU can take seconds, so terminate only after a generous grace.
        self.cancel_grace_s = cancel_grace_s
        self.terminate_grace_s = terminate_grace_s
        # Called on the reader thread with each event before it is queued, to do slow work
        # (reading the file an event names) off the caller's thread; it may add keys to the
        # event and must not raise (the thread would stop reading).
        self.prepare = prepare
        self.state = RunState()
        self.cancel_requested_at: float | None = None
        self.escalations: list[tuple[str, float]] = []
        self._proc: subprocess.Popen | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._eof = False
        self._exited_at: float | None = None
        self._finished_status: str | None = None
        self._lost: dict | None = None  # the job_dir_lost error, once the folder went while the engine ran

    @property
    def done(self) -> bool:
        return self.state.status in FINAL_STATUSES

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        """Start the engine; a missing or broken interpreter ends the run as failed at once."""
        if not self.engine_python or not Path(self.engine_python).is_file():
            self._fail("engine_not_found", f"engine Python not found: {self.engine_python or '(not set)'}",
                       HINT_ENGINE_PATH)
            return
        if self.engine_root and not Path(self.engine_root).is_dir():
            self._fail("engine_not_found", f"the engine folder {self.engine_root} does not exist", HINT_ENGINE_PATH)
            return
        problem = paths.job_dir_problem(self.job_dir)  # a waiting job's folder can go before its turn
        if problem:
            self._fail("job_dir_lost", f"the job folder {self.job_dir} {problem}", paths.HINT_JOB_DIR_LOST)
            return
        stderr_path = self.job_dir / "stderr.txt"
        try:
            # The engine writes log.txt itself; stderr.txt catches what dies before that.
            stderr = open(stderr_path, "wb")
        except OSError as exc:
            error = paths.jobs_dir_error(exc, self.job_dir.parent, stderr_path)
            self._fail(error.kind, error.message, error.hint)
            return
        try:
            with stderr:
                self._proc = subprocess.Popen(
                    engine_command(self.engine_python, "run", self.job_dir, *(["--resume"] if self.resume else [])),
                    cwd=self.job_dir,  # never a checkout: `-m engine` would pick up its engine/
                    env=child_env(self.engine_root), stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE, stderr=stderr, shell=False,
                    text=True, encoding="utf-8", errors="replace", bufsize=1,
                    **session_kwargs())
        except OSError as exc:
            self._fail("engine_not_found", f"cannot start the engine Python {self.engine_python}: "
                       f"{paths.os_reason(exc)}", HINT_ENGINE_PATH)
            return
        _LIVE.add(self)
        threading.Thread(target=self._read, name=f"text3d-events-{self._proc.pid}", daemon=True).start()

    def _read(self) -> None:
        for line in self._proc.stdout:
            event = parse_event(line)
            if event is not None:
                if self.prepare is not None:
                    self.prepare(event)
                self._queue.put(event)
        self._queue.put(_EOF)

    def poll(self) -> list[dict]:
        """Apply and return the events that arrived since the last call; never blocks."""
        events, eof = drain(self._queue)
        self._eof = self._eof or eof
        for event in events:
            self._apply(event)
        if self._proc is not None and not self.done:
            self._watch_job_dir()
            self._escalate()
            if self._proc.poll() is not None:
                # A grandchild that inherited stdout can hold it open after the engine exits.
                self._exited_at = self._exited_at or time.monotonic()
                if self._eof or time.monotonic() - self._exited_at > 2.0:
                    self._finish(self._proc.returncode)
        return events

    def cancel(self) -> None:
        """Ask the engine to stop: the cancel file now, terminate and kill later in poll()."""
        if self.done or self.cancel_requested_at is not None:
            return
        self.cancel_requested_at = time.monotonic()
        if self._proc is None:
            self.state.status = "cancelled"
            return
        try:
            (self.job_dir / "cancel").write_text("cancel\n", encoding="utf-8")
        except OSError:
            pass  # the escalation still stops it
        self.escalations.append(("cancel_file", 0.0))

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until the run is done or timeout passes; True if done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            self.poll()
            if self.done or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(interval)
        return self.done

    def stop(self, cancel_grace_s: float = 2.0, terminate_grace_s: float = 2.0) -> None:
        """Cancel and wait until the engine is gone (quitting Blender, loading a file)."""
        self.cancel_grace_s = min(self.cancel_grace_s, cancel_grace_s)
        self.terminate_grace_s = min(self.terminate_grace_s, terminate_grace_s)
        self.cancel()
        self.wait(timeout=self.cancel_grace_s + self.terminate_grace_s + 5.0)

    def _watch_job_dir(self) -> None:
        """Stop the engine once its folder has gone: terminate now, kill after terminate_grace_s."""
        if self._lost is not None or self._proc.poll() is not None:
            return
        problem = paths.job_dir_problem(self.job_dir)
        if problem is None:
            return
        self._lost = self._lost_error(problem)
        # It cannot see a cancel file there any more: skip that grace, straight to terminate.
        self.cancel_requested_at = time.monotonic() - self.cancel_grace_s
        self._escalate()

    def _lost_error(self, problem: str) -> dict:
        return {"kind": "job_dir_lost", "message": f"the job folder {self.job_dir} {problem} while the job ran",
                "hint": paths.HINT_JOB_DIR_LOST}

    def _escalate(self) -> None:
        if self.cancel_requested_at is None or self._proc.poll() is not None:
            return
        waited = time.monotonic() - self.cancel_requested_at
        done = {name for name, _ in self.escalations}
        if waited >= self.cancel_grace_s + self.terminate_grace_s and "kill" not in done:
            self.escalations.append(("kill", waited))
            signal_group(self._proc, kill=True)
        elif waited >= self.cancel_grace_s and "terminate" not in done:
            self.escalations.append(("terminate", waited))
            signal_group(self._proc, kill=False)

    def _apply(self, event: dict) -> None:
        s, kind = self.state, event["event"]
        if kind == "started":
            s.status, s.info = "running", event
            s.total = _number(event.get("steps"), s.total)
        elif kind == "progress":
            s.status = "running"
            s.step = _number(event.get("step"), s.step)
            s.total = _number(event.get("total"), s.total)
            s.elapsed_s = _number(event.get("elapsed_s"), s.elapsed_s)
            s.eta_s = _number(event.get("eta_s"))
            if isinstance(event.get("phase"), str):
                s.phase = event["phase"]
            losses = event.get("losses")
            if isinstance(losses, dict):
                s.losses = {k: v for k, v in losses.items() if _number(v) is not None}
        elif kind == "preview" and isinstance(event.get("path"), str):
            s.preview = self.job_dir / event["path"]
        elif kind == "artifact" and isinstance(event.get("path"), str):
            path = self.job_dir / event["path"]
            s.artifacts[str(event.get("kind"))] = path
            if event.get("kind") == "preview_mesh":
                s.preview_mesh, s.preview_mesh_step = path, _number(event.get("step"), s.step)
        elif kind == "log":
            s.logs.append((str(event.get("level", "info")), str(event.get("message", ""))))
        elif kind == "error":
            s.error = {"kind": str(event.get("kind", "internal")), "message": str(event.get("message", "")),
                       "hint": str(event.get("hint", ""))}
        elif kind == "finished":
            status = event.get("status")
            self._finished_status = status if status in FINAL_STATUSES else "failed"
        # Other kinds and fields belong to newer engines: ignored on purpose.

    def _finish(self, returncode: int) -> None:
        s = self.state
        s.returncode = returncode
        _LIVE.discard(self)
        problem = None if self._lost else paths.job_dir_problem(self.job_dir)
        if problem:  # it went after the engine's last poll; the engine may have died of it
            self._lost = self._lost_error(problem)
        if self._lost is not None:  # whatever the engine said last, its results went with the folder
            s.status, s.error = "failed", dict(self._lost)
            return
        if self._finished_status is not None:
            s.status = self._finished_status
        elif self.cancel_requested_at is not None or returncode == EXIT_CANCELLED:
            s.status = "cancelled"
        else:
            s.status = "failed"
        if s.status == "failed":
            if s.error is None:
                said = "reported failure" if self._finished_status else "exited before it finished the job"
                s.error = {"kind": EXIT_KINDS.get(returncode, "engine_crashed"),
                           "message": f"the engine {said} (exit code {returncode})",
                           "hint": "See the end of log.txt below, and the job folder"}
            s.error["log_tail"] = self.log_tail()

    def _fail(self, kind: str, message: str, hint: str) -> None:
        self.state.status = "failed"
        self.state.error = {"kind": kind, "message": message, "hint": hint}

    def log_tail(self, lines: int = 20) -> str:
        """The end of log.txt, then what stderr.txt adds to it (a traceback): the engine logs to both, and
        its log lines would otherwise show twice."""
        log = tail(self.job_dir / "log.txt", lines)
        logged = set(log.splitlines())
        extra = [line for line in tail(self.job_dir / "stderr.txt", lines).splitlines() if line not in logged]
        return "\n".join(p for p in (log, "\n".join(extra)) if p)


def check_engine(engine_python: str | os.PathLike, engine_root: str | os.PathLike | None = None,
                 timeout: float = 120.0) -> dict:
    """Run `python -m engine check --json`: {"ok": bool, "report": dict | None, "error": str}."""
    if not engine_python or not Path(engine_python).is_file():
        return {"ok": False, "report": None, "error": f"engine Python not found: {engine_python or '(not set)'}"}
    try:
        proc = subprocess.run(engine_command(engine_python, "check", "--json"), cwd=tempfile.gettempdir(),
                              env=child_env(engine_root), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, encoding="utf-8", errors="replace", timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"ok": False, "report": None, "error": str(exc)}
    report = None
    for line in reversed(proc.stdout.splitlines()):
        try:
            report = json.loads(line)
            break
        except ValueError:
            continue
    ok = proc.returncode == 0 and isinstance(report, dict)
    if isinstance(report, dict) and "ok" in report:
        ok = ok and bool(report["ok"])
    error = "" if ok else (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    return {"ok": ok, "report": report if isinstance(report, dict) else None, "error": error}


# Engines still running when the host exits are stopped, whoever started them.
_LIVE: "weakref.WeakSet[EngineRun]" = weakref.WeakSet()


def stop_all() -> None:
    """Stop every engine this process started that is still running."""
    for run in list(_LIVE):
        run.stop()


atexit.register(stop_all)
