"""Captures: both layouts, every broken capture's error, normalisation into the object cube."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from capture_support import BOX_HALF, orbit, render_capture
from conftest import engine

from engine.captures import MIN_CAMERA_DISTANCE, OBJECT_EXTENT, ObjectFrame, load_capture
from engine.errors import EngineError

WORLD = ObjectFrame((5.0, -3.0, 2.0), 2.5)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return render_capture(tmp_path_factory.mktemp("cap") / "box", n=6, size=16, frame=WORLD)


def test_cameras_come_back_in_world_and_the_box_fills_the_cube(capture):
    cap = load_capture(capture)
    written = json.loads((capture / "transforms.json").read_text())
    world = torch.tensor([f["transform_matrix"] for f in written["frames"]])
    assert torch.allclose(cap.frame.c2w_to_world(cap.c2w), world, atol=1e-5)
    # text3d_bounds: its centre is the cube's, its largest half side OBJECT_EXTENT.
    assert cap.frame.offset == pytest.approx(WORLD.offset)
    assert cap.frame.scale == pytest.approx(BOX_HALF * WORLD.scale / OBJECT_EXTENT)
    assert cap.images.shape == (6, 16, 16, 3) and cap.alpha is not None
    assert cap.intrinsics[0].tolist() == pytest.approx([written["fl_x"], written["fl_y"], 8.0, 8.0])


def test_without_bounds_the_centre_is_where_the_axes_meet(tmp_path):
    folder = render_capture(tmp_path / "c", n=6, size=16, frame=WORLD, bounds=False)
    cap = load_capture(folder)
    assert cap.frame.offset == pytest.approx(WORLD.offset, abs=1e-4)
    # The half width of the view at the cameras' distance, in world units (radius 4 * 2.5, FOV 40).
    assert cap.frame.scale == pytest.approx(4 * WORLD.scale * math.tan(math.radians(20)), rel=1e-4)
    assert float(cap.c2w[:, :3, 3].norm(dim=-1).min()) >= MIN_CAMERA_DISTANCE - 1e-4


def test_nerf_synthetic_layout_with_extensionless_paths_and_a_test_split(tmp_path):
    folder = render_capture(tmp_path / "syn", n=6, size=16, layout="synthetic", test_every=3)
    cap = load_capture(folder)
    assert len(cap.names) == 6 and cap.test.tolist().count(True) == 2
    assert cap.split(True).tolist() == [4, 5]  # the test file's frames come after the train file's
    views = orbit(6)
    order = [1, 2, 4, 5, 0, 3]  # train frames, then test frames
    assert torch.allclose(cap.frame.c2w_to_world(cap.c2w), views.c2w[order], atol=1e-5)


def test_holdout_every_keeps_frames_back(capture):
    cap = load_capture(capture, holdout_every=3)
    assert cap.split(True).tolist() == [2, 5]


def test_large_images_are_downsampled_with_their_intrinsics(capture):
    cap = load_capture(capture, max_image_size=8)
    assert cap.size == (8, 8)
    assert cap.intrinsics[0, 2:].tolist() == pytest.approx([4.0, 4.0])
    assert any("downsampled" in w for w in cap.warnings)


def test_lens_distortion_is_reported_as_ignored(capture, tmp_path):
    folder = tmp_path / "distorted"
    shutil.copytree(capture, folder)
    data = json.loads((folder / "transforms.json").read_text())
    data.update(camera_model="OPENCV", k1=-0.05, p2=0.001)
    (folder / "transforms.json").write_text(json.dumps(data))
    cap = load_capture(folder)
    assert any("distortion" in w and "ignored" in w for w in cap.warnings)


def edit(key, value=None, frame=None, remove=False):
    """A change to transforms.json: the file's key, or frames[frame]'s."""
    def apply(data, folder):
        target = data if frame is None else data["frames"][frame]
        if remove:
            del target[key]
        else:
            target[key] = value
    return apply


def delete_image(data, folder):
    (folder / "images" / "r_2.png").unlink()


def resize_image(data, folder):
    from PIL import Image

    del data["w"], data["h"]  # else the declared size is what disagrees
    Image.new("RGB", (20, 16)).save(folder / "images" / "r_1.png")


def corrupt_image(data, folder):
    (folder / "images" / "r_0.png").write_bytes(b"not a png")


def remove_intrinsics(data, folder):
    for key in ("fl_x", "fl_y", "cx", "cy"):
        del data[key]


def parallel_cameras(data, folder):
    del data["text3d_bounds"]
    for i, f in enumerate(data["frames"]):
        f["transform_matrix"] = np.eye(4).tolist()
        f["transform_matrix"][0][3] = float(i)


BROKEN = [
    (edit("frames", []), "no frames"),
    (edit("frames", None, remove=True), "no frames"),
    (delete_image, "frames[2]: image 'images/r_2.png' not found"),
    (edit("file_path", None, frame=1, remove=True), "frames[1] has no file_path"),
    (edit("transform_matrix", None, frame=3, remove=True), "frames[3] has no transform_matrix"),
    (edit("transform_matrix", [[1, 0, 0], [0, 1, 0]], frame=0), "frames[0].transform_matrix is not a finite 4x4"),
    (edit("transform_matrix", [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]], frame=0), "not a rotation"),
    (edit("transform_matrix", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], frame=0), "last row"),
    (edit("transform_matrix", [[float("nan")] * 4] * 4, frame=0), "not a finite 4x4"),
    (resize_image, "frames[1]: image r_1.png is 20x16, the first frame's is 16x16"),
    (edit("w", 32), "frames[0]: image r_0.png is 16x16 but w, h say 32x16"),
    (corrupt_image, "frames[0]: cannot read image"),
    (remove_intrinsics, "frames[0] has no intrinsics"),
    (edit("fl_x", -5.0), "intrinsics fx=-5"),
    (edit("camera_model", "OPENCV_FISHEYE"), "camera_model OPENCV_FISHEYE is not supported"),
    (edit("text3d_bounds", [[0, 0, 0], [-1, 1, 1]]), "text3d_bounds must be"),
    (parallel_cameras, "do not meet near one point"),
]


@pytest.mark.parametrize("breaker, message", BROKEN, ids=[m[:30] for _, m in BROKEN])
def test_broken_captures_name_what_is_wrong(capture, tmp_path, breaker, message):
    folder = tmp_path / "broken"
    shutil.copytree(capture, folder)
    data = json.loads((folder / "transforms.json").read_text())
    breaker(data, folder)
    (folder / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(EngineError) as e:
        load_capture(folder)
    assert e.value.kind == "capture_invalid"
    assert message in e.value.message, e.value.message
    assert e.value.hint


def test_missing_capture_and_folder_without_transforms(tmp_path):
    for path, message in ((tmp_path / "nowhere", "does not exist"), (tmp_path, "has no transforms.json")):
        with pytest.raises(EngineError, match=message) as e:
            load_capture(path)
        assert e.value.kind == "capture_invalid"


def test_capture_command_prints_world_cameras(capture):
    out = engine("capture", capture)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    written = json.loads((capture / "transforms.json").read_text())
    assert report["frames"] == 6 and report["has_alpha"]
    for cam, frame in zip(report["cameras"], written["frames"]):
        assert np.allclose(cam["transform_matrix"], frame["transform_matrix"], atol=1e-5)


def test_capture_command_exits_with_capture_invalid(tmp_path):
    out = engine("capture", tmp_path)
    assert out.returncode == 6 and "capture_invalid" in out.stderr and out.stdout == ""
