"""Captures on the add-on's side: read a capture's cameras, place an orbit of cameras around
objects, write transforms.json.

A capture is a folder with `transforms.json` in the nerfstudio / instant-ngp layout, or the
NeRF-synthetic layout (`transforms_train.json`, with `transforms_test.json` as held-out
frames; `transforms_val.json` is not used), read by the same rules as the engine's
engine/captures.py. Matrices are camera-to-world, camera looking down -Z with +Y up:
Blender's Object.matrix_world of a camera, as nested row tuples (4x4).

No bpy and no numpy: plain pytest covers it, and the panel reads captures while it draws.
"""
from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import engine_rules

TRANSFORMS = "transforms.json"
SYNTHETIC_TRAIN, SYNTHETIC_TEST = "transforms_train.json", "transforms_test.json"
# DietNeRF is made for few views (the paper: 8 and fewer); plain reconstruction needs more.
FEW_VIEWS = 10
# Fibonacci orbit: from slightly below the objects to well above them, never straight
# overhead (the look-at frame degenerates there, and tops are rarely the point).
SPHERE_ELEVATION_DEG = (-15.0, 75.0)
RING_ELEVATION_DEG = 20.0
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

Matrix4 = tuple[tuple[float, float, float, float], ...]


class CaptureError(ValueError):
    """A capture that cannot be used; the message names the file and, where it applies, the frame."""

    def __init__(self, file: Path | str, message: str, frame: int | None = None) -> None:
        where = f"{file}" if frame is None else f"{file}: frames[{frame}]"
        super().__init__(f"{where}: {message}")
        self.file = Path(file)
        self.frame = frame


@dataclass(frozen=True)
class Camera:
    """One frame's camera: pose and pinhole intrinsics in pixels of its image."""

    name: str
    """The image's file name without extension; held-out frames get a "test_" prefix."""
    image: Path
    """The frame's image file."""
    matrix: Matrix4
    """Camera-to-world 4x4 (rows), Blender's camera convention."""
    width: int
    """Image width in pixels."""
    height: int
    """Image height in pixels."""
    fx: float
    """Horizontal focal length in pixels."""
    fy: float
    """Vertical focal length in pixels."""
    cx: float
    """Principal point, pixels from the left edge."""
    cy: float
    """Principal point, pixels from the top edge."""
    test: bool = False
    """A held-out frame (NeRF-synthetic test split): the engine does not train on it."""


def transforms_files(path: str | Path) -> list[tuple[Path, bool]]:
    """A capture (folder or transforms JSON file) -> its transforms files, each with whether it is held out."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CaptureError(p, "does not exist; give a capture folder with transforms.json")
    if p.is_dir():
        for name in (TRANSFORMS, SYNTHETIC_TRAIN):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise CaptureError(p, "has no transforms.json (nor NeRF-synthetic transforms_train.json)")
    files = [(p, False)]
    if p.name == SYNTHETIC_TRAIN and (p.parent / SYNTHETIC_TEST).is_file():
        files.append((p.parent / SYNTHETIC_TEST, True))
    return files


def capture_name(path: str | Path) -> str:
    """What to call a capture: its folder's name (a transforms file's folder)."""
    p = Path(path).expanduser()
    return (p.parent if p.suffix.lower() == ".json" else p).resolve().name or "capture"


def read_cameras(path: str | Path) -> list[Camera]:
    """Every frame's camera of a capture, training frames first; CaptureError names what is wrong."""
    cameras = []
    for file, test in transforms_files(path):
        data = _read_json(file)
        frames = data.get("frames")
        if not isinstance(frames, list) or not frames:
            raise CaptureError(file, "has no frames: a capture needs a non-empty 'frames' list")
        for i, frame in enumerate(frames):
            if not isinstance(frame, dict):
                raise CaptureError(file, "is not an object with file_path and transform_matrix", i)
            cameras.append(_camera(file, data, frame, i, test))
    return cameras


def view_count(path: str | Path) -> int:
    """Training views of a capture (held-out frames excluded); CaptureError if it cannot be read."""
    return sum(not c.test for c in read_cameras(path))


# (transforms files with their modification times and sizes) -> view count or the CaptureError.
_COUNTS: dict[tuple, int | CaptureError] = {}
_COUNTS_KEPT = 16


def cached_view_count(path: str | Path) -> int:
    """view_count, remembered until a transforms file changes: the panel asks on every redraw."""
    try:
        key = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f, _ in transforms_files(path))
    except OSError as exc:
        raise CaptureError(path, f"cannot be read ({exc})") from exc
    if key not in _COUNTS:
        if len(_COUNTS) >= _COUNTS_KEPT:
            _COUNTS.clear()
        try:
            _COUNTS[key] = view_count(path)
        except CaptureError as exc:
            _COUNTS[key] = exc
    result = _COUNTS[key]
    if isinstance(result, CaptureError):
        raise result
    return result


def suggested_method(views: int) -> str | None:
    """The method to suggest for a capture of this many views: dietnerf when there are too few for
    a plain reconstruction, else None (any method will do)."""
    return "dietnerf" if views < FEW_VIEWS else None


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CaptureError(file, f"is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CaptureError(file, "must be a JSON object with 'frames'")
    return data


def _camera(file: Path, data: dict, frame: dict, i: int, test: bool) -> Camera:
    def get(key: str, default: Any = None) -> Any:  # a frame's own value overrides the file's
        return frame.get(key, data.get(key, default))

    file_path = frame.get("file_path")
    if not isinstance(file_path, str) or not file_path:
        raise CaptureError(file, "has no file_path (the path of its image)", i)
    if "transform_matrix" not in frame:
        raise CaptureError(file, "has no transform_matrix (camera-to-world 4x4)", i)
    matrix = _matrix(frame["transform_matrix"], file, i)
    image, tried = _image_path(file.parent, file_path)
    if image is None:
        raise CaptureError(file, f"image {file_path!r} not found in {file.parent}" + (f" ({tried})" if tried else ""), i)

    def number(key: str, default: float | None = None) -> float | None:
        value = get(key, default)
        if value is None:
            return None
        try:
            result = float(value)
        except (TypeError, ValueError):
            result = math.nan
        if not math.isfinite(result):
            raise CaptureError(file, f"{key} is not a finite number (got {value!r})", i)
        return result

    if number("w") is not None and number("h") is not None:
        width, height = int(number("w")), int(number("h"))
    else:
        width, height = image_size(image)
    if number("fl_x") is not None:
        fx = number("fl_x")
        fy = number("fl_y", fx)
    elif number("camera_angle_x") is not None:
        fx = 0.5 * width / math.tan(0.5 * number("camera_angle_x"))
        angle_y = number("camera_angle_y")
        fy = 0.5 * height / math.tan(0.5 * angle_y) if angle_y is not None else fx
    else:
        raise CaptureError(file, "has no intrinsics: give camera_angle_x, or fl_x, fl_y, cx, cy, w, h", i)
    cx, cy = number("cx", width / 2), number("cy", height / 2)
    if width <= 0 or height <= 0 or not all(math.isfinite(v) and v > 0 for v in (fx, fy)) \
            or not (0 <= cx <= width and 0 <= cy <= height):
        raise CaptureError(file, f"intrinsics fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g} do not fit a "
                           f"{width}x{height} image", i)
    name = ("test_" if test else "") + Path(file_path).stem
    return Camera(name, image, matrix, width, height, fx, fy, cx, cy, test)


def _matrix(value: Any, file: Path, i: int) -> Matrix4:
    """A rigid camera-to-world 4x4 (a 3x4 gets its last row), as the engine accepts it."""
    try:
        rows = [[float(x) for x in row] for row in value]
    except (TypeError, ValueError):
        rows = []
    if len(rows) == 3:
        rows.append([0.0, 0.0, 0.0, 1.0])
    if len(rows) != 4 or any(len(r) != 4 for r in rows) or not all(math.isfinite(x) for r in rows for x in r):
        raise CaptureError(file, f"transform_matrix is not a finite 4x4 matrix (got {str(value)[:80]})", i)
    if any(abs(a - b) > 1e-4 for a, b in zip(rows[3], (0.0, 0.0, 0.0, 1.0))):
        raise CaptureError(file, f"transform_matrix: last row is {rows[3]}, not [0, 0, 0, 1]", i)
    cols = [[rows[r][c] for r in range(3)] for c in range(3)]
    orthonormal = all(abs(_dot(cols[a], cols[b]) - (a == b)) <= 2e-3 for a in range(3) for b in range(3))
    if not orthonormal or _dot(_cross(cols[0], cols[1]), cols[2]) < 0:
        raise CaptureError(file, "transform_matrix: the rotation part is not a rotation (scaled, sheared or "
                           "mirrored); write camera matrices without scale", i)
    return tuple(tuple(r) for r in rows)


def _image_path(folder: Path, file_path: str) -> tuple[Path | None, str]:
    """A frame's image as the engine finds it (engine/capture_files.py: Windows separators, absolute paths of
    another machine, a missing suffix, another case) -> (the image or None, what else was tried)."""
    return engine_rules.engine_module("capture_files").find_file(folder, file_path)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG from its header; CaptureError for other formats."""
    try:
        return _header_size(path)
    except (OSError, struct.error) as exc:
        raise CaptureError(path, f"cannot read its size ({exc})") from exc


def _header_size(path: Path) -> tuple[int, int]:
    """PNG: IHDR, the first chunk. JPEG: the first start-of-frame segment."""
    with open(path, "rb") as f:
        head = f.read(26)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"\xff\xd8":
            f.seek(2)
            while True:  # walk the segments to the first start-of-frame marker
                marker = f.read(2)
                if len(marker) < 2 or marker[0] != 0xFF:
                    break
                length = struct.unpack(">H", f.read(2))[0]
                if 0xC0 <= marker[1] <= 0xCF and marker[1] not in (0xC4, 0xC8, 0xCC):
                    height, width = struct.unpack(">xHH", f.read(5))
                    return width, height
                f.seek(length - 2, os.SEEK_CUR)
    raise CaptureError(path, "cannot read its size (PNG and JPEG only): give w and h in transforms.json")


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def _cross(a, b) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _normalised(v) -> list[float]:
    n = math.sqrt(_dot(v, v))
    return [x / n for x in v]


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> Matrix4:
    """Camera-to-world of a camera at eye looking at target, its +Y as close to `up` as it can be.

    Blender's camera convention: the camera looks down its -Z, X to the right, Y up.
    """
    forward = _normalised([t - e for t, e in zip(target, eye)])
    right = _cross(forward, up)
    if _dot(right, right) < 1e-12:  # looking along `up`: any right-hand side will do
        right = _cross(forward, (0.0, 1.0, 0.0))
    right = _normalised(right)
    cam_up = _cross(right, forward)
    back = [-x for x in forward]
    return tuple((right[r], cam_up[r], back[r], float(eye[r])) for r in range(3)) + ((0.0, 0.0, 0.0, 1.0),)


def fit_distance(radius: float, fov: float, margin: float = 1.1) -> float:
    """Camera distance at which a sphere of radius fills a view of angle fov (radians), with margin."""
    return margin * radius / math.sin(fov / 2)


def orbit_directions(n: int, layout: str = "sphere") -> list[tuple[float, float, float]]:
    """n unit vectors from the centre to the cameras.

    "ring": evenly spaced azimuths at RING_ELEVATION_DEG. "sphere": a Fibonacci spiral over the
    cap between SPHERE_ELEVATION_DEG, equal area per camera, so views cover it evenly.
    """
    if n < 1:
        raise ValueError(f"an orbit needs at least one camera (got {n})")
    if layout == "ring":
        e = math.radians(RING_ELEVATION_DEG)
        return [(math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e))
                for a in (2 * math.pi * i / n for i in range(n))]
    if layout != "sphere":
        raise ValueError(f"unknown orbit layout {layout!r}; use 'ring' or 'sphere'")
    z_lo, z_hi = (math.sin(math.radians(e)) for e in SPHERE_ELEVATION_DEG)
    out = []
    for i in range(n):
        z = z_hi - (i + 0.5) / n * (z_hi - z_lo)
        r, a = math.sqrt(1.0 - z * z), i * GOLDEN_ANGLE
        out.append((r * math.cos(a), r * math.sin(a), z))
    return out


def orbit(center, radius: float, n: int, fov: float, layout: str = "sphere") -> list[Matrix4]:
    """Camera-to-world matrices of n cameras around a bounding sphere (center, radius), each
    looking at its centre from the distance at which it fits a view of angle fov (radians)."""
    if not radius > 0:
        raise ValueError(f"the objects have no size (bounding sphere radius {radius})")
    d = fit_distance(radius, fov)
    return [look_at([c + d * u for c, u in zip(center, direction)], center)
            for direction in orbit_directions(n, layout)]


def transforms(file_paths: list[str], matrices: list, width: int, height: int, angle_x: float,
               bounds=None) -> dict:
    """A transforms.json dict for square-pixel, centred pinhole cameras of horizontal angle angle_x.

    bounds: the captured objects' world box [[xmin, ymin, zmin], [xmax, ymax, zmax]], written as
    text3d_bounds, which the engine uses to place them in its object cube.
    """
    fl = 0.5 * width / math.tan(0.5 * angle_x)
    data: dict[str, Any] = {"camera_angle_x": angle_x, "fl_x": fl, "fl_y": fl, "cx": width / 2, "cy": height / 2,
                            "w": width, "h": height}
    if bounds is not None:
        data["text3d_bounds"] = [[float(x) for x in corner] for corner in bounds]
    data["frames"] = [{"file_path": p, "transform_matrix": [[float(x) for x in row] for row in m]}
                      for p, m in zip(file_paths, matrices, strict=True)]
    return data


def write_transforms(folder: str | Path, data: dict) -> Path:
    """Write folder/transforms.json atomically: a reader never sees half a file."""
    folder = Path(folder)
    fd, tmp = tempfile.mkstemp(prefix=".transforms-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, folder / TRANSFORMS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / TRANSFORMS
