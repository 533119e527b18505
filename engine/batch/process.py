"""One attempt at one job: `python -m engine run JOB_DIR [--resume]`, unchanged, under a guard.

Light on purpose (standard library only): the Ray backend's task imports it on every worker.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ENGINE_ROOT = Path(__file__).resolve().parents[2]
"""The folder holding the `engine` package: the engine is started with it on PYTHONPATH."""


def engine_command(job_dir: Path, resume: bool, python: str = sys.executable) -> list[str]:
    """The argv of one attempt: the guard (engine/batch/guard.py), then the engine's own `run` command."""
    run = [python, "-m", "engine", "run", str(job_dir)] + (["--resume"] if resume else [])
    return [python, "-m", "engine.batch.guard", "--", *run]


def engine_env() -> dict:
    """This process's environment with the engine's folder first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ENGINE_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_engine(job_dir: Path, resume: bool) -> subprocess.Popen:
    """Start one attempt; returns the guard's Popen. Its stdin is the pipe whose end-of-file tells the guard
    that this process died (keep the Popen, and so the pipe, alive while the attempt runs). The engine's
    stdout is dropped: its events are read from JOB_DIR/events.jsonl. Its stderr is this process's (the
    same lines are in JOB_DIR/log.txt). The guard leads a new session, so a Ctrl-C in the terminal reaches
    only the batch, which cancels through the cancel file."""
    return subprocess.Popen(engine_command(job_dir, resume), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=engine_env(), cwd=str(job_dir), start_new_session=True)


def run_attempt(job_dir: str, resume: bool) -> dict:
    """Run one attempt to its end, here (the Ray backend's task body).

    Returns {"returncode": the engine's exit code (negative: killed by that signal) or None when it did
    not start, "skipped": True when the job's cancel file was there before it started, "pid": this
    process's pid, "node": host name}.
    """
    job = Path(job_dir)
    where = {"pid": os.getpid(), "node": os.uname().nodename}
    if (job / "cancel").exists():
        return {"returncode": None, "skipped": True, **where}
    proc = start_engine(job, resume)
    try:
        return {"returncode": proc.wait(), "skipped": False, **where}
    finally:
        if proc.poll() is None:  # interrupted while waiting (the task was cancelled): the engine goes too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdin.close()
