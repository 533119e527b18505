"""What a backend of `python -m engine batch` and the driver share: how an attempt ended, the batch's exit
codes and the error of a backend that cannot run jobs. Its own module so that the Ray backend, imported
lazily by the driver, needs nothing from the driver.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import EngineError

BATCH_EXIT_CODES = {
    "succeeded": 0,  # every job succeeded
    "internal": 1,  # the batch itself failed (a bug)
    "invalid_job": 2,  # a JOB_DIR is not a folder, or is given twice; nothing was started
    "cancelled": 8,  # the batch was cancelled (SIGINT / SIGTERM); jobs that had ended keep their status
    "usage": 9,  # a command line the engine cannot act on (as for every command)
    "jobs_failed": 10,  # every job ended, some failed or were cancelled through their own cancel file
    "backend_unavailable": 11,  # Ray is not installed, the cluster is unreachable or has too few GPUs
}
"""Exit codes of `python -m engine batch`, documented in its --help."""


class BackendUnavailable(EngineError):
    """The backend cannot run jobs: Ray missing, the cluster unreachable or without the GPUs a job needs.

    An EngineError of the batch's own kind "backend_unavailable" (exit code 11), printed like the others.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        Exception.__init__(self, message)
        self.kind, self.message, self.hint = "backend_unavailable", message, hint

    @property
    def exit_code(self) -> int:
        return BATCH_EXIT_CODES["backend_unavailable"]


@dataclass(eq=False)  # a handle: compared by identity
class Ended:
    """How an attempt ended, as its backend saw it."""

    returncode: int | None
    """The engine's exit code; negative: killed by that signal; None: the worker died (or it never started)."""
    skipped: bool = False
    """The job's cancel file was there when its turn came: the engine was not started."""
    reason: str = ""
    """Why there is no exit code (the worker died: Ray's error), for the `job_lost` event."""
