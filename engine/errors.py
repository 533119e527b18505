"""Errors that cross the boundary: each becomes one `error` event and an exit code.

Kinds are part of the event contract (docs/ARCHITECTURE.md); the add-on shows `message` and `hint`
for any kind, including ones it does not know.
"""
from __future__ import annotations

# Exit codes of `python -m engine` commands, documented in `python -m engine --help`. `usage` (a command line
# the engine cannot act on: an unknown command or flag, a flag's bad value) has its own code rather than
# argparse's 2, so that a script can tell a mistyped command from a job.json that is wrong (invalid_job, 2).
# It is never an event: a run whose command line is wrong never starts.
EXIT_CODES = {
    "succeeded": 0,
    "internal": 1,
    "invalid_job": 2,
    "model_missing": 3,
    "out_of_memory": 4,
    "diverged": 5,
    "capture_invalid": 6,
    "empty_surface": 7,
    "cancelled": 8,
    "usage": 9,
}


class EngineError(Exception):
    """An error the user can act on.

    kind: one of EXIT_CODES' error kinds; message: what is wrong, naming the key or file;
    hint: what to do about it; details: the numbers behind the hint, for a caller that words it for its
    own interface (empty_surface: suggested_threshold, density_range (min, max); the command line
    suggests --threshold where the run suggests job.json's export.threshold). Not part of the event.
    """

    def __init__(self, kind: str, message: str, hint: str = "", details: dict | None = None) -> None:
        if kind not in EXIT_CODES:
            raise ValueError(f"unknown error kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.details = dict(details or {})

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.kind]


def invalid_job(key: str, value, why: str, hint: str = "") -> EngineError:
    """An `invalid_job` error that names the offending key and value."""
    return EngineError("invalid_job", f"{key}: {why} (got {value!r})", hint or f"fix {key!r} in job.json")
