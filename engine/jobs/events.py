"""The event stream: JSON lines on stdout, also appended to JOB_DIR/events.jsonl."""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import IO


def claim_stdout() -> IO[str]:
    """Keep the real stdout for our JSON only; anything else printed goes to stderr.

    Libraries (and C extensions) sometimes print to stdout; the add-on reads stdout as
    events, so file descriptor 1 is pointed at stderr and the original is returned.
    """
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def _finite(value):
    """JSON has no NaN/Infinity: non-finite numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class EventStream:
    """Writes each event to `out` (stdout) and JOB_DIR/events.jsonl, flushed line by line."""

    def __init__(self, out: IO[str], job_dir: Path | None) -> None:
        self.out = out
        self.file = open(Path(job_dir) / "events.jsonl", "a", encoding="utf-8") if job_dir else None

    def emit(self, event: str, **fields) -> None:
        line = json.dumps(_finite({"event": event, "time": round(time.time(), 3), **fields}), allow_nan=False)
        for f in (self.out, self.file):
            if f is not None:
                try:
                    f.write(line + "\n")
                    f.flush()
                except (BrokenPipeError, ValueError):
                    pass  # the reader went away (Blender quit); the job goes on and the file keeps the record

    def close(self) -> None:
        if self.file:
            self.file.close()


class EventLogHandler(logging.Handler):
    """Forwards engine log records at INFO and above as `log` events.

    A record logged with extra={"as_event": False} stays in the log only (its content is
    already in another event, e.g. the `error` event).
    """

    def __init__(self, events: EventStream) -> None:
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        if not getattr(record, "as_event", True):
            return
        self.events.emit("log", level=record.levelname.lower(), message=record.getMessage())


def setup_logging(job_dir: Path | None, events: EventStream | None) -> None:
    """Human log to stderr and JOB_DIR/log.txt; INFO and above also as `log` events."""
    root = logging.getLogger("engine")
    root.setLevel(logging.INFO)
    root.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if job_dir is not None:
        handlers.append(logging.FileHandler(Path(job_dir) / "log.txt", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    if events is not None:
        root.addHandler(EventLogHandler(events))
    root.propagate = False
