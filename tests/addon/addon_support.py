"""Shared by the add-on tests (a module name of its own: tests/engine has a conftest too)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FAKE_ROOT = Path(__file__).resolve().parent / "fake_engine"  # holds a fake `engine` package
FAKE_INSTALL = Path(__file__).resolve().parent / "fake_install" / "text3d.py"  # a fake `text3d.py engine`
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def drive(handle, timeout: float = 60.0, until=None):
    """Call the add-on's timer callback, as Blender's event loop would, until the job ends
    (or `until(handle)` holds). Returns the number of ticks."""
    from blender_text3d import jobs

    deadline, ticks = time.monotonic() + timeout, 0
    while not (until(handle) if until else handle.done):
        assert time.monotonic() < deadline, f"timed out: {handle} after {ticks} ticks"
        jobs.timer_callback()
        ticks += 1
        time.sleep(0.02)
    return ticks
