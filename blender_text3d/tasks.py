"""Set-up commands the preferences run in the background: list models, download one,
install the engine environment; and SetupTasks, which holds them for the preferences.

No bpy: plain pytest covers it. Like runner.EngineRun, each command starts without a
shell, in its own process group, with runner.child_env(); threads read its output, and
poll() on the caller's thread says when it has ended, so the interface never waits.
"""
from __future__ import annotations

import atexit
import collections
import json
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Callable

from . import paths
from .runner import (FINAL_STATUSES, HINT_ENGINE_PATH, check_engine, child_env, engine_command, session_kwargs,
                     signal_group)

HINT_TERMINAL = "or run `python3 install/text3d.py engine` in a terminal (see README.md)"


class Task:
    """One background command: start(), then poll() until done; cancel() stops its process group."""

    def __init__(self, command: list, *, env: dict | None = None, parse: Callable[[str], object] | None = None,
                 kill_grace_s: float = 5.0, hint_not_found: str = "") -> None:
        self.command = [str(c) for c in command]
        self.env = child_env() if env is None else env
        # Turns stdout into `result` once the command succeeded; a ValueError fails the task.
        self.parse = parse
        self.kill_grace_s = kill_grace_s
        self.hint_not_found = hint_not_found  # where to set the interpreter when it cannot be run
        self.status = "idle"  # then running, then one of FINAL_STATUSES
        self.lines: collections.deque = collections.deque(maxlen=40)  # stderr, latest last
        self.stdout = ""
        self.result = None
        self.returncode: int | None = None
        self.error = ""
        self.hint = ""
        self.started_at = time.monotonic()
        self.ended_at: float | None = None
        self.cancel_requested_at: float | None = None
        self._proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self._exited_at: float | None = None

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def last_line(self) -> str:
        """The latest non-empty stderr line (progress bars count each redraw as a line)."""
        return self.lines[-1] if self.lines else ""

    @property
    def elapsed_s(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def start(self) -> "Task":
        if self.status != "idle":
            return self
        if not Path(self.command[0]).is_file():
            return self.fail(f"{self.command[0] or '(no interpreter set)'} not found", self.hint_not_found)
        try:
            self._proc = subprocess.Popen(
                self.command, cwd=tempfile.gettempdir(), env=self.env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, shell=False, text=True,
                encoding="utf-8", errors="replace", **session_kwargs())
        except OSError as exc:
            return self.fail(f"cannot start {self.command[0]}: {paths.os_reason(exc)}", self.hint_not_found)
        self.status = "running"
        _LIVE.add(self)
        self._readers = [threading.Thread(target=target, daemon=True, name=f"text3d-task-{self._proc.pid}")
                         for target in (self._read_stderr, self._read_stdout)]
        for reader in self._readers:
            reader.start()
        return self

    def fail(self, error: str, hint: str = "") -> "Task":
        """End as failed without (or before) a process."""
        self.status, self.error, self.ended_at = "failed", error, time.monotonic()
        self.hint = hint or self.hint
        return self

    def _read_stderr(self) -> None:
        # Text mode splits on "\r" too, so each redraw of a tqdm bar arrives as its own line.
        for line in self._proc.stderr:
            if line.strip():
                self.lines.append(line.strip())

    def _read_stdout(self) -> None:
        self.stdout = self._proc.stdout.read()

    def poll(self) -> bool:
        """Follow the command; True exactly once, on the call that sees it end. Never blocks."""
        if self._proc is None or self.done:
            return False
        if self._proc.poll() is None:
            if self.cancel_requested_at is not None and time.monotonic() - self.cancel_requested_at > self.kill_grace_s:
                signal_group(self._proc, kill=True)
            return False
        # A grandchild that inherited the pipes can hold them open after the command exits.
        self._exited_at = self._exited_at or time.monotonic()
        if any(r.is_alive() for r in self._readers) and time.monotonic() - self._exited_at < 2.0:
            return False
        self._finish(self._proc.returncode)
        return True

    def _finish(self, returncode: int) -> None:
        self.returncode, self.ended_at = returncode, time.monotonic()
        _LIVE.discard(self)
        if self.cancel_requested_at is not None:
            self.status = "cancelled"
        elif returncode != 0:
            self.status = "failed"
            error = self._said("error") or self.last_line  # a traceback ends with the exception
            self.error = f"{error} (exit code {returncode})" if error else f"exit code {returncode}"
            self.hint = self._said("hint:")
        else:
            self.status = "succeeded"
            if self.parse is not None:
                try:
                    self.result = self.parse(self.stdout)
                except ValueError as exc:
                    self.fail(f"unexpected output: {exc}")

    def _said(self, start: str) -> str:
        """The last stderr line that starts with `start`: the commands report "error: ..." and
        "hint: ..." (text3d.py after its "[text3d] " prefix); tracebacks and pip say more above."""
        return next((line for line in reversed(list(self.lines))  # a copy: a reader may still append
                     if line.removeprefix("[text3d] ").lower().startswith(start)), "")

    def cancel(self) -> None:
        """Terminate the command and its children now, kill them after kill_grace_s."""
        if self.status != "running" or self.cancel_requested_at is not None:
            return
        self.cancel_requested_at = time.monotonic()
        signal_group(self._proc, kill=False)

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Poll until done or timeout passes; True if done."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done and self.status != "idle":
            self.poll()
            if self.done or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(interval)
        return self.done


def parse_model_list(stdout: str) -> list[dict]:
    """The rows of `models list --json` (its last JSON line): name, role, default, available, size_mb, location."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("models"), list):
            return [{"name": str(row["name"]), "role": str(row.get("role", "")), "default": bool(row.get("default")),
                     "available": bool(row.get("available")), "size_mb": row.get("size_mb"),
                     "location": row.get("location")}
                    for row in data["models"] if isinstance(row, dict) and "name" in row]
    raise ValueError("no JSON object with a 'models' list on stdout")


def list_models(engine_python: str, engine_root: str | None = None) -> Task:
    """`python -m engine models list --json`; result: parse_model_list's rows."""
    return Task(engine_command(engine_python, "models", "list", "--json"), env=child_env(engine_root),
                parse=parse_model_list, hint_not_found=HINT_ENGINE_PATH).start()


def download_model(engine_python: str, name: str, engine_root: str | None = None) -> Task:
    """`python -m engine models download NAME`: progress on stderr, the model in the Hugging Face cache."""
    return Task(engine_command(engine_python, "models", "download", name), env=child_env(engine_root),
                hint_not_found=HINT_ENGINE_PATH).start()


def host_python(executable: str | None = None) -> str:
    """The interpreter Blender runs on (sys.executable); ValueError says why it cannot run scripts."""
    exe = sys.executable if executable is None else executable
    # Blender before 2.91 reported its own binary here; a Python named otherwise is not one to trust.
    if not exe or not Path(exe).is_file() or not Path(exe).name.lower().startswith("python"):
        raise ValueError(f"Blender reports no Python interpreter to run the installer with "
                         f"(sys.executable = {exe!r}); {HINT_TERMINAL}")
    return exe


def install_engine(script: str | Path | None, python: str | None = None) -> Task:
    """`PYTHON install/text3d.py engine`: creates or updates TEXT3D_HOME/engine-venv, "[text3d] ..." on stderr."""
    if script is None or not Path(script).is_file():
        where = script or "neither a checkout nor engine_src/ beside the add-on"
        return Task([""]).fail(f"the installer install/text3d.py was not found ({where}); "
                               f"reinstall the extension, {HINT_TERMINAL}")
    try:
        python = host_python(python)
    except ValueError as exc:
        return Task([""]).fail(str(exc))
    return Task([python, script, "engine"], env=child_env()).start()


class SetupTasks:
    """The preferences' set-up work, as jobs.JobManager is the panel's jobs: `engine check` on a
    thread, the background tasks by key ("models", "install", "download:NAME"), and what the
    preferences show of them.

    No bpy: the add-on passes `engine`, () -> (engine Python, folder for its path), asked
    each time something starts, so it follows the preferences; and `on_start`, called after
    each start (the add-on's timer, which calls tick() until nothing is busy).
    """

    def __init__(self, engine: Callable[[], tuple[str, str | None]],
                 on_start: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self.on_start = on_start
        self.tasks: dict[str, Task] = {}
        """Latest task by key, ended ones included (the preferences show how they ended)."""
        self.check: dict = {}
        """The last `engine check` answer, {"ok", "report", "error"}; {"running": True} while it runs."""
        self.model_rows: list[dict] = []
        """The last model listing that succeeded (parse_model_list's rows), kept while a refresh runs."""

    def running(self, key: str) -> bool:
        task = self.tasks.get(key)
        return task is not None and task.status == "running"

    @property
    def busy(self) -> bool:
        """Whether a task or the check is still running."""
        return any(t.status == "running" for t in self.tasks.values()) or bool(self.check.get("running"))

    def start(self, key: str, make: Callable[[], Task]) -> Task:
        """The running task under key, else a new one from make() (replacing an ended one)."""
        if not self.running(key):
            self.tasks[key] = make()
            self._started()
        return self.tasks[key]

    def refresh_models(self) -> Task:
        """`models list --json`; once it succeeds its rows replace model_rows."""
        return self.start("models", lambda: list_models(*self.engine()))

    def download(self, name: str) -> Task:
        """`models download NAME` under "download:NAME"; the model list follows once it succeeded."""
        def make() -> Task:
            python, root = self.engine()
            return download_model(python, name, root)
        return self.start(f"download:{name}", make)

    def install(self, script: str | Path | None) -> Task:
        """The engine installer under "install"; a check of the new engine and the model list follow."""
        return self.start("install", lambda: install_engine(script))

    def start_check(self) -> dict:
        """`engine check` on a thread, since importing torch takes seconds; returns the new `check`.

        Its answer goes into that dict only: one a clear() or a later check replaced is dropped.
        """
        result = self.check = {"running": True}
        threading.Thread(target=self._check, args=(result, *self.engine()), daemon=True,
                         name="text3d-check").start()
        self._started()
        return result

    @staticmethod
    def _check(result: dict, python: str, root: str | None) -> None:
        result.update(check_engine(python, root), running=False)

    def cancel(self, key: str) -> bool:
        """Stop the task under key; False if none runs there."""
        if not self.running(key):
            return False
        self.tasks[key].cancel()
        return True

    def tick(self) -> bool:
        """Poll the tasks and act on those that just ended; True if any did. Never blocks.

        A listing replaces model_rows; a finished download or installation is followed by a
        fresh listing, an installation also by a check of the engine it made.
        """
        ended = False
        for key, task in list(self.tasks.items()):
            if not task.poll():
                continue
            ended = True
            if task.status != "succeeded":
                continue
            if key == "models":
                self.model_rows[:] = task.result
                continue
            if key == "install":
                self.start_check()
            self.refresh_models()
        return ended

    def drive(self, timeout: float | None = None, interval: float = 0.05) -> bool:
        """Tick until nothing is busy, what follows an ended task included, or timeout passes:
        the blocking path (timers never fire in background Blender). True if nothing is busy."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.tick()
            if not self.busy or (deadline is not None and time.monotonic() >= deadline):
                return not self.busy
            time.sleep(interval)

    def clear(self) -> None:
        """Stop the running tasks (each at most its kill grace) and forget tasks, rows and check:
        their processes must not outlive the add-on."""
        running = [t for t in self.tasks.values() if t.status == "running"]
        for task in running:  # all at once, then wait: their graces run together
            task.cancel()
        for task in running:
            task.wait(timeout=task.kill_grace_s + 2.0)
        self.tasks.clear()
        self.model_rows.clear()
        self.check = {}

    def _started(self) -> None:
        if self.on_start is not None:
            self.on_start()


# Commands still running when the host exits are stopped, like the engine runs in runner.
_LIVE: "weakref.WeakSet[Task]" = weakref.WeakSet()


def stop_all() -> None:
    """Cancel every running task and wait (at most its kill grace, plus a little) for it to end."""
    for task in list(_LIVE):
        task.cancel()
        task.wait(timeout=task.kill_grace_s + 2.0)


atexit.register(stop_all)
