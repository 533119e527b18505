"""Shared by the add-on tests (a module name of its own: tests/engine has a conftest too)."""
from __future__ import annotations

import json
import math
import struct
import sys
import time
import zlib
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


def write_png(path: Path, width: int, height: int) -> Path:
    """A grey RGBA PNG (no Pillow in the Blender venv)."""
    raw = b"".join(b"\0" + b"\x80\x80\x80\xff" * width for _ in range(height))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def make_capture(folder: Path, views: int = 4, size: int = 16, bounds=((-1, -1, -1), (1, 1, 1))) -> Path:
    """A capture folder in our own layout: `views` cameras on a ring around the bounds, tiny PNGs."""
    from blender_text3d import captures

    centre = [(a + b) / 2 for a, b in zip(*bounds)]
    radius = math.dist(*bounds) / 2
    matrices = captures.orbit(centre, radius, views, math.radians(40), "ring")
    names = [f"images/frame_{i:03d}.png" for i in range(views)]
    for name in names:
        write_png(folder / name, size, size)
    captures.write_transforms(folder, captures.transforms(names, matrices, size, size, math.radians(40), bounds))
    return folder


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
