"""captures.py (no bpy): reading both capture layouts, each bad capture's error, the orbit of
Capture Selected, and transforms.json written and read back."""
from __future__ import annotations

import json
import math
import struct

import pytest
from addon_support import make_capture, read_json, write_png

from blender_text3d import captures
from blender_text3d.captures import CaptureError

IDENTITY = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
# A camera at (0, -5, 1) looking along +Y (Blender: rotation (90, 0, 0) degrees): X right, Y up (+Z), Z back (-Y).
FRONT = [[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 1], [0, 0, 0, 1]]


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_nerfstudio_layout_with_intrinsics_per_file_and_per_frame(tmp_path):
    write_png(tmp_path / "images" / "a.png", 40, 30)
    write_png(tmp_path / "images" / "b.png", 40, 30)
    write(tmp_path / "transforms.json", {
        "fl_x": 50.0, "fl_y": 52.0, "cx": 19.0, "cy": 16.0, "w": 40, "h": 30,
        "frames": [{"file_path": "images/a.png", "transform_matrix": FRONT},
                   {"file_path": "images/b.png", "transform_matrix": IDENTITY[:3], "fl_x": 60.0, "cx": 21.0}]})
    a, b = captures.read_cameras(tmp_path)
    assert (a.name, a.image, a.matrix) == ("a", tmp_path / "images" / "a.png", tuple(map(tuple, FRONT)))
    assert (a.width, a.height, a.fx, a.fy, a.cx, a.cy, a.test) == (40, 30, 50.0, 52.0, 19.0, 16.0, False)
    assert b.matrix == tuple(map(tuple, IDENTITY))  # a 3x4 matrix gets its last row
    assert (b.fx, b.fy, b.cx, b.cy) == (60.0, 52.0, 21.0, 16.0)  # the frame's own values win
    assert captures.view_count(tmp_path) == 2
    assert captures.read_cameras(tmp_path / "transforms.json") == [a, b]  # the file itself is a capture too


def test_camera_angle_only_reads_the_image_size(tmp_path):
    write_png(tmp_path / "f.png", 64, 32)
    write(tmp_path / "transforms.json", {"camera_angle_x": math.radians(90),
                                         "frames": [{"file_path": "f.png", "transform_matrix": IDENTITY}]})
    (cam,) = captures.read_cameras(tmp_path)
    assert (cam.width, cam.height, cam.cx, cam.cy) == (64, 32, 32.0, 16.0)
    assert cam.fx == pytest.approx(32.0) and cam.fy == cam.fx  # 0.5 * 64 / tan(45 degrees), square pixels


def test_nerf_synthetic_layout(tmp_path):
    frames = lambda split, n: {"camera_angle_x": 0.69, "frames": [  # noqa: E731
        {"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": FRONT} for i in range(n)]}
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        write(tmp_path / f"transforms_{split}.json", frames(split, n))
        for i in range(n):
            write_png(tmp_path / split / f"r_{i}.png", 8, 8)
    cameras = captures.read_cameras(tmp_path)
    assert [c.name for c in cameras] == ["r_0", "r_1", "r_2", "test_r_0", "test_r_1"]  # val is not used
    assert [c.test for c in cameras] == [False] * 3 + [True] * 2
    assert cameras[0].image == tmp_path / "train" / "r_0.png" and cameras[0].fx == pytest.approx(4 / math.tan(0.345))
    assert captures.view_count(tmp_path) == 3  # test frames are held out
    assert captures.capture_name(tmp_path / "transforms_train.json") == tmp_path.name


def test_jpeg_size_from_its_header(tmp_path):
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + bytes(9)
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 24, 48, 3) + bytes(6)
    (tmp_path / "p.jpg").write_bytes(b"\xff\xd8" + app0 + sof0 + b"\xff\xd9")
    assert captures.image_size(tmp_path / "p.jpg") == (48, 24)
    (tmp_path / "p.webp").write_bytes(b"RIFF\0\0\0\0WEBP")
    with pytest.raises(CaptureError, match="give w and h"):
        captures.image_size(tmp_path / "p.webp")


GOOD = {"file_path": "f.png", "transform_matrix": IDENTITY}


@pytest.mark.parametrize("data,frame,message", [
    ({"camera_angle_x": 0.7, "frames": []}, None, "has no frames"),
    ({"camera_angle_x": 0.7}, None, "has no frames"),
    ([1, 2], None, "must be a JSON object"),
    ({"camera_angle_x": 0.7, "frames": [GOOD, "f.png"]}, 1, "is not an object"),
    ({"camera_angle_x": 0.7, "frames": [{"transform_matrix": IDENTITY}]}, 0, "has no file_path"),
    ({"camera_angle_x": 0.7, "frames": [GOOD, {"file_path": "f.png"}]}, 1, "has no transform_matrix"),
    ({"camera_angle_x": 0.7, "frames": [{**GOOD, "transform_matrix": [[1, 0], [0, 1]]}]}, 0, "not a finite 4x4"),
    ({"camera_angle_x": 0.7, "frames": [{**GOOD, "transform_matrix": [[float("nan")] * 4] * 4}]}, 0,
     "not a finite 4x4"),
    ({"camera_angle_x": 0.7, "frames": [{**GOOD, "transform_matrix": IDENTITY[:3] + [[0, 0, 1, 1]]}]}, 0,
     "last row"),
    ({"camera_angle_x": 0.7, "frames": [{**GOOD, "transform_matrix": [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0],
                                                                      [0, 0, 0, 1]]}]}, 0, "not a rotation"),
    ({"camera_angle_x": 0.7, "frames": [{**GOOD, "transform_matrix": [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                                                      [0, 0, 0, 1]]}]}, 0, "mirrored"),
    ({"frames": [GOOD]}, 0, "has no intrinsics"),
    ({"fl_y": 10, "frames": [GOOD]}, 0, "has no intrinsics"),
    ({"camera_angle_x": "wide", "frames": [GOOD]}, 0, "camera_angle_x is not a finite number"),
    ({"camera_angle_x": 0.7, "frames": [{**GOOD, "w": float("inf"), "h": 8}]}, 0, "w is not a finite number"),
    ({"fl_x": 10, "cx": 99, "frames": [GOOD]}, 0, "do not fit a 8x8 image"),
    ({"fl_x": -10, "frames": [GOOD]}, 0, "do not fit"),
    ({"camera_angle_x": 0.7, "frames": [GOOD, {**GOOD, "file_path": "missing.png"}]}, 1, "'missing.png' not found"),
])
def test_bad_captures_name_the_file_and_the_frame(tmp_path, data, frame, message):
    write_png(tmp_path / "f.png", 8, 8)
    write(tmp_path / "transforms.json", data)
    with pytest.raises(CaptureError) as info:
        captures.read_cameras(tmp_path)
    assert isinstance(info.value, ValueError) and message in str(info.value)
    assert info.value.file == tmp_path / "transforms.json" and info.value.frame == frame
    where = str(tmp_path / "transforms.json") + ("" if frame is None else f": frames[{frame}]")
    assert str(info.value).startswith(where + ": ")


def test_missing_or_unreadable_capture(tmp_path):
    with pytest.raises(CaptureError, match="does not exist"):
        captures.read_cameras(tmp_path / "nowhere")
    with pytest.raises(CaptureError, match="has no transforms.json"):
        captures.read_cameras(tmp_path)
    (tmp_path / "transforms.json").write_text("{not json")
    with pytest.raises(CaptureError, match="not readable JSON"):
        captures.view_count(tmp_path)


@pytest.mark.parametrize("layout", ["ring", "sphere"])
def test_orbit_cameras_look_at_the_centre_with_z_up(layout):
    centre, radius, fov = (1.0, -2.0, 0.5), 0.8, math.radians(40)
    matrices = captures.orbit(centre, radius, 12, fov, layout)
    distance = captures.fit_distance(radius, fov)
    assert distance * math.sin(fov / 2) == pytest.approx(1.1 * radius)  # the sphere fits with a 10 % margin
    elevations = []
    for m in matrices:
        cols = [[m[r][c] for r in range(3)] for c in range(4)]
        x, y, z, eye = cols
        to_centre = [c - e for c, e in zip(centre, eye)]
        assert math.dist(eye, centre) == pytest.approx(distance)
        assert [-v for v in z] == pytest.approx([v / distance for v in to_centre])  # looks down -Z at the centre
        assert x[2] == pytest.approx(0.0, abs=1e-12) and y[2] > 0  # level horizon, +Y towards world +Z
        for a in range(3):
            for b in range(3):
                assert sum(p * q for p, q in zip(cols[a], cols[b])) == pytest.approx(float(a == b))
        assert captures._dot(captures._cross(x, y), z) == pytest.approx(1.0)  # right-handed
        assert m[3] == (0.0, 0.0, 0.0, 1.0)
        elevations.append(math.degrees(math.asin(z[2])))  # Z points from the centre to the camera
    if layout == "ring":
        assert elevations == pytest.approx([captures.RING_ELEVATION_DEG] * 12)
    else:
        lo, hi = captures.SPHERE_ELEVATION_DEG
        assert lo < min(elevations) < 0 < max(elevations) < hi  # below and above the objects
    assert len({tuple(round(v, 6) for v in m[0]) for m in matrices}) == 12  # no two views alike


def test_look_at_by_hand():
    assert captures.look_at((0, -5, 1), (0, 0, 1)) == tuple(map(tuple, FRONT))
    overhead = captures.look_at((0, 0, 5), (0, 0, 0))  # straight down: the up hint degenerates
    assert [overhead[r][2] for r in range(3)] == [0.0, 0.0, 1.0]


def test_transforms_round_trip(tmp_path):
    folder = make_capture(tmp_path / "cap", views=5, size=16, bounds=((0, 0, 0), (2, 1, 1)))
    data = read_json(folder / "transforms.json")
    assert data["text3d_bounds"] == [[0, 0, 0], [2, 1, 1]]
    assert (data["w"], data["h"], data["cx"], data["cy"]) == (16, 16, 8.0, 8.0)
    assert data["fl_x"] == pytest.approx(8 / math.tan(math.radians(20)))
    cameras = captures.read_cameras(folder)
    assert [c.name for c in cameras] == [f"frame_{i:03d}" for i in range(5)]
    assert [list(map(list, c.matrix)) for c in cameras] == [f["transform_matrix"] for f in data["frames"]]
    assert cameras[0].fx == pytest.approx(data["fl_x"])
    data["frames"] = data["frames"][:2]
    captures.write_transforms(folder, data)  # replaces the file, leaves no temporary behind
    assert captures.view_count(folder) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["images", "transforms.json"]


def test_cached_view_count_follows_the_file(tmp_path):
    folder = make_capture(tmp_path / "cap", views=4)
    assert captures.cached_view_count(folder) == 4
    data = read_json(folder / "transforms.json")
    data["frames"] = []
    (folder / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(CaptureError, match="no frames"):
        captures.cached_view_count(folder)
    with pytest.raises(CaptureError, match="no frames"):  # the error is remembered too
        captures.cached_view_count(folder)


def test_suggestion_under_ten_views():
    assert captures.suggested_method(9) == "dietnerf" and captures.suggested_method(3) == "dietnerf"
    assert captures.suggested_method(10) is None and captures.suggested_method(100) is None


def test_paths_as_exporters_write_them_are_found_as_the_engine_finds_them(tmp_path):
    """The panel accepts what the engine loads (one rule, engine/capture_files.py): Windows separators, an
    absolute path of another machine, a name in another case; a still-missing image says what was tried."""
    for name in ("a.png", "b.png", "C.PNG"):
        write_png(tmp_path / "images" / name, 40, 30)
    write(tmp_path / "transforms.json", {"camera_angle_x": 0.8, "frames": [
        {"file_path": "images\\a.png", "transform_matrix": FRONT},
        {"file_path": "C:\\Users\\someone\\scan\\images\\b.png", "transform_matrix": FRONT},
        {"file_path": "images/c.png", "transform_matrix": FRONT}]})
    cameras = captures.read_cameras(tmp_path)
    assert [c.image for c in cameras] == [(tmp_path / "images" / n).resolve() for n in ("a.png", "b.png", "C.PNG")]
    write(tmp_path / "transforms.json", {"camera_angle_x": 0.8, "frames": [
        {"file_path": "images\\missing.png", "transform_matrix": FRONT}]})
    with pytest.raises(CaptureError, match=r"Windows \(\\\) separators, also tried 'images/missing.png'"):
        captures.read_cameras(tmp_path)
