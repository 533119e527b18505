"""Captures: both layouts, every broken capture's error, normalisation into the object cube."""
import json
import math
import shutil

import numpy as np
import pytest
import torch
from capture_support import BOX_HALF, edited_copy, orbit, render_capture
from conftest import engine

from engine.captures import MAX_FILL_HALF_ANGLE, MIN_CAMERA_DISTANCE, OBJECT_EXTENT, ObjectFrame, describe, load_capture, read_cameras
from engine.errors import EngineError

WORLD = ObjectFrame((5.0, -3.0, 2.0), 2.5)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return render_capture(tmp_path_factory.mktemp("cap") / "box", n=6, size=16, frame=WORLD)


def test_cameras_come_back_in_world_and_the_box_fills_the_cube(capture):
    cap = load_capture(capture)
    written = json.loads((capture / "transforms.json").read_text())
    world = torch.tensor([f["transform_matrix"] for f in written["frames"]], dtype=torch.float64)
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


def test_without_bounds_a_fisheye_view_is_sized_through_its_lens(tmp_path):
    """The object is assumed to fill the view; a fisheye's half view is theta = r / f (here tan 20 degrees in
    radians), not the pinhole's arctangent, and a lens of 90 degrees or more is capped at MAX_FILL_HALF_ANGLE."""
    folder = render_capture(tmp_path / "c", n=6, size=16, frame=WORLD, bounds=False)

    def fisheye(focal_scale):
        def change(data, _):
            data.update(camera_model="OPENCV_FISHEYE", k1=0.0, k2=0.0, k3=0.0, k4=0.0)
            data["fl_x"] *= focal_scale
            data["fl_y"] *= focal_scale
        return change

    cap = load_capture(edited_copy(folder, tmp_path / "fish", fisheye(1.0)))
    assert cap.fisheye.all() and cap.frame.offset == pytest.approx(WORLD.offset, abs=1e-4)
    assert cap.frame.scale == pytest.approx(4 * WORLD.scale * math.tan(math.tan(math.radians(20))), rel=1e-4)
    # 8 px from the centre at f = 4 px: 2 rad (115 degrees) off the axis, whose tangent is negative. The assumed
    # fill stops at 60 degrees, and the cameras' distance caps the size.
    wide = load_capture(edited_copy(folder, tmp_path / "wide", fisheye(4 * math.tan(math.radians(20)) / 8)))
    assert math.tan(MAX_FILL_HALF_ANGLE) > 0.5  # so MIN_CAMERA_DISTANCE decides
    assert wide.frame.scale == pytest.approx(4 * WORLD.scale / MIN_CAMERA_DISTANCE, rel=1e-4)


def test_nerf_synthetic_layout_with_extensionless_paths_and_a_test_split(tmp_path):
    folder = render_capture(tmp_path / "syn", n=6, size=16, layout="synthetic", test_every=3)
    cap = load_capture(folder)
    assert len(cap.names) == 6 and cap.test.tolist().count(True) == 2
    assert cap.split(True).tolist() == [4, 5]  # the test file's frames come after the train file's
    views = orbit(6)
    order = [1, 2, 4, 5, 0, 3]  # train frames, then test frames
    assert torch.allclose(cap.frame.c2w_to_world(cap.c2w), views.c2w[order].double(), atol=1e-5)


def test_holdout_every_keeps_frames_back(capture):
    cap = load_capture(capture, holdout_every=3)
    assert cap.split(True).tolist() == [2, 5]


def test_large_images_are_downsampled_with_their_intrinsics(capture):
    cap = load_capture(capture, max_image_size=8)
    assert cap.size == (8, 8)
    assert cap.intrinsics[0, 2:].tolist() == pytest.approx([4.0, 4.0])
    assert any("downsampled" in w for w in cap.warnings)


def test_lens_distortion_is_kept_per_frame(capture, tmp_path):
    folder = tmp_path / "distorted"
    shutil.copytree(capture, folder)
    data = json.loads((folder / "transforms.json").read_text())
    data.update(camera_model="OPENCV", k1=-0.05, p2=0.001)
    data["frames"][1].update(k1=0.0, p2=0.0)  # per-frame coefficients override the file's
    (folder / "transforms.json").write_text(json.dumps(data))
    cap = load_capture(folder)
    assert cap.distortion.shape == (6, 6) and cap.distortion.dtype == torch.float32
    assert cap.distortion[0].tolist() == pytest.approx([-0.05, 0, 0, 0, 0, 0.001])
    assert cap.distortion[1].tolist() == [0.0] * 6 and not cap.fisheye.any()
    assert not cap.warnings  # applied, not ignored
    # k4 means nothing to the radial-tangential model: said in the log.
    data["k4"] = 0.1
    (folder / "transforms.json").write_text(json.dumps(data))
    assert any("k4 of OPENCV" in w for w in load_capture(folder).warnings)


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


def remove_fl_x(data, folder):
    del data["fl_x"]


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
    (remove_intrinsics, "frames[0] has no focal length: neither fl_x nor camera_angle_x"),
    (remove_fl_x, "frames[0] has no focal length: neither fl_x nor camera_angle_x (it has camera_model, cx, cy, fl_y, h, w)"),
    (edit("fl_x", -5.0), "transforms.json: fl_x = -5 is not a focal length"),
    (edit("camera_model", "EQUIRECTANGULAR"), "transforms.json: camera_model EQUIRECTANGULAR is not supported"),
    (edit("camera_model", "EQUIRECTANGULAR", frame=2), "frames[2].camera_model EQUIRECTANGULAR is not supported"),
    (edit("k1", "strong", frame=1), "frames[1].k1 is not a number"),
    (edit("text3d_bounds", [[0, 0, 0], [-1, 1, 1]]), "text3d_bounds must be"),
    (parallel_cameras, "do not meet near one point"),
]




@pytest.mark.parametrize("breaker, message", BROKEN, ids=[m[:30] for _, m in BROKEN])
def test_broken_captures_name_what_is_wrong(capture, tmp_path, breaker, message):
    folder = edited_copy(capture, tmp_path, breaker)
    with pytest.raises(EngineError) as e:
        load_capture(folder)
    assert e.value.kind == "capture_invalid"
    assert message in e.value.message, e.value.message
    assert e.value.hint


def angles_only(data, folder, **angles):
    for key in ("fl_x", "fl_y"):
        del data[key]
    data.update({"camera_angle_x": 0.7, **angles})


MIRRORED = [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]]

# Every value checked for what it means, per file and per frame alike: (change, key the message names, message).
MEANINGLESS = [
    (edit("fl_x", 0.0), "fl_x", "transforms.json: fl_x = 0 is not a focal length (pixels, > 0)"),
    (edit("fl_y", -3.0, frame=2), "fl_y", "transforms.json: frames[2].fl_y = -3 is not a focal length"),
    (edit("fl_x", float("nan"), frame=1), "fl_x", "transforms.json: frames[1].fl_x = nan is not a finite number"),
    (edit("fl_x", True), "fl_x", "transforms.json: fl_x is not a number (got True)"),
    (lambda d, f: angles_only(d, f, camera_angle_x=0.0), "camera_angle_x", "camera_angle_x = 0 is not an angle of view"),
    # 7 rad is 2 pi + 0.7: its tangent looks like a fine angle's.
    (lambda d, f: (angles_only(d, f), d["frames"][1].update(camera_angle_x=7.0)), "camera_angle_x",
     "transforms.json: frames[1].camera_angle_x = 7 is not an angle of view (radians, between 0 and pi)"),
    (lambda d, f: angles_only(d, f, camera_angle_y=-0.5), "camera_angle_y", "camera_angle_y = -0.5 is not an angle"),
    (edit("cx", 40.0), "cx", "transforms.json: cx = 40 is outside the 16x16 image of frames[0]"),
    (edit("cy", -2.0, frame=3), "cy", "transforms.json: frames[3].cy = -2 is outside the image"),
    (edit("w", 16.5), "w", "transforms.json: w = 16.5 is not a number of pixels (a positive integer)"),
    (edit("h", 0, frame=1), "h", "transforms.json: frames[1].h = 0 is not a number of pixels"),
    (edit("w", 32, frame=5), "w, h", "transforms.json: frames[5]: image r_5.png is 16x16 but w, h say 32x16"),
    (edit("k1", 25.0), "k1", "transforms.json: k1 = 25 is not a coefficient of a real lens (|k1| < 10"),
    (edit("p2", float("inf"), frame=4), "p2", "transforms.json: frames[4].p2 = inf is not a finite number"),
    (edit("camera_model", "EQUIRECTANGULAR", frame=2), "camera_model",
     "transforms.json: frames[2].camera_model EQUIRECTANGULAR is not supported"),
    (edit("is_fisheye", "yes"), "is_fisheye",
     "transforms.json: is_fisheye is not true or false"),
    (edit("is_fisheye", True, frame=1), "is_fisheye",
     "transforms.json: frames[1].is_fisheye is true but transforms.json: camera_model is PINHOLE"),
    (edit("aabb_scale", 0), "aabb_scale", "transforms.json: aabb_scale = 0 is not a positive number"),
    (edit("transform_matrix", MIRRORED, frame=5), "transform_matrix",
     "transforms.json: frames[5].transform_matrix: the rotation part is not a rotation"),
    (edit("transform_matrix", [[1, 0.1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 1]], frame=1), "transform_matrix",
     "transforms.json: frames[1].transform_matrix: the rotation part is not a rotation"),
    (edit("transform_matrix", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4], [0, 0, 0, 2]], frame=0), "transform_matrix",
     "transforms.json: frames[0].transform_matrix: last row is [0.0, 0.0, 0.0, 2.0], not [0, 0, 0, 1]"),
]


@pytest.mark.parametrize("breaker, key, message", MEANINGLESS, ids=[m[17:50] for _, _, m in MEANINGLESS])
def test_values_that_mean_nothing_name_their_key(capture, tmp_path, breaker, key, message):
    folder = edited_copy(capture, tmp_path, breaker)
    with pytest.raises(EngineError) as e:
        load_capture(folder)
    assert e.value.kind == "capture_invalid" and e.value.hint
    assert message in e.value.message and key in e.value.message, e.value.message


def test_a_per_frame_camera_model_is_read_as_the_files(capture, tmp_path):
    lens = {"k1": 0.05, "k2": -0.01, "k3": 0.002, "k4": 0.0}
    per_file = edited_copy(capture, tmp_path / "file", lambda d, f: d.update(camera_model="OPENCV_FISHEYE", **lens))

    def per_frame(data, folder):
        del data["camera_model"]
        for f in data["frames"]:
            f.update(camera_model="OPENCV_FISHEYE", **lens)
        data["frames"][2]["camera_model"] = "OPENCV"  # a frame's own model overrides the file's
    cap, control = load_capture(edited_copy(capture, tmp_path / "frame", per_frame)), load_capture(per_file)
    assert control.fisheye.all() and cap.fisheye.tolist() == [True, True, False, True, True, True]
    assert torch.equal(cap.distortion, control.distortion)
    # instant-ngp's is_fisheye says the same.
    ngp = load_capture(edited_copy(capture, tmp_path / "ngp", lambda d, f: (d.pop("camera_model"),
                                                                            d.update(is_fisheye=True, **lens))))
    assert ngp.fisheye.all() and torch.equal(ngp.distortion, control.distortion)


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


# The cameras alone: read_cameras is the one reader of transforms files, also for `engine render --cameras`.

SCALED = [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]


def test_cameras_alone_are_the_captures_cameras(capture):
    cap = load_capture(capture)
    cams = read_cameras(capture)
    written = json.loads((capture / "transforms.json").read_text())
    assert torch.equal(cams.c2w, torch.tensor([f["transform_matrix"] for f in written["frames"]], dtype=torch.float64))
    assert [c.name for c in cams.frames] == cap.names and cams.source == cap.source
    assert torch.equal(torch.tensor([c.intrinsics() for c in cams.frames], dtype=torch.float32), cap.intrinsics)
    assert cams.bounds.tolist() == written["text3d_bounds"]
    assert all(c.image is None for c in cams.frames)  # images are not looked at
    with_images = read_cameras(capture, need_images=True)  # their sizes read from the files' headers
    assert [(c.image.name, c.width, c.height) for c in with_images.frames] == [(f"r_{i}.png", 16, 16) for i in range(6)]


def test_cameras_alone_need_no_images_and_take_per_frame_values(capture, tmp_path):
    folder = tmp_path / "cams"
    shutil.copytree(capture, folder)
    shutil.rmtree(folder / "images")
    data = json.loads((folder / "transforms.json").read_text())
    del data["frames"][2]["file_path"]
    data["frames"][1].update(fl_x=30.0, w=20, cx=9.5)
    (folder / "transforms.json").write_text(json.dumps(data))
    cams = read_cameras(folder)
    assert [c.name for c in cams.frames][:3] == ["r_0", "r_1", "frame_002"]
    assert cams.frames[0].intrinsics() == (data["fl_x"], data["fl_y"], 8.0, 8.0)
    assert cams.frames[1].intrinsics() == (30.0, data["fl_y"], 9.5, 8.0) and cams.frames[1].width == 20
    with pytest.raises(EngineError, match="frames\\[0\\]: image 'images/r_0.png' not found"):
        load_capture(folder)


def test_cameras_alone_of_unknown_size(tmp_path):
    folder = render_capture(tmp_path / "syn", n=6, size=16, layout="synthetic", test_every=3)
    cams = read_cameras(folder)
    assert [c.test for c in cams.frames] == [False] * 4 + [True] * 2
    assert [c.test for c in read_cameras(folder / "transforms_train.json", test_file=False).frames] == [False] * 4
    cam = cams.frames[0]
    assert (cam.width, cam.height, cam.fl_x, cam.cx) == (None, None, None, None)
    assert cam.angle_x == pytest.approx(math.radians(40))


def no_size(data, folder):
    del data["w"], data["h"]


CAMERAS_BROKEN = [
    (edit("frames", []), "no frames"),
    (edit("transform_matrix", SCALED, frame=1), "frames[1].transform_matrix: the rotation part is not a rotation"),
    (edit("transform_matrix", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], frame=0), "last row"),
    (edit("transform_matrix", [[float("nan")] * 4] * 4, frame=0), "not a finite 4x4"),
    (edit("transform_matrix", None, frame=3, remove=True), "frames[3] has no transform_matrix"),
    (remove_intrinsics, "frames[0] has no focal length: neither fl_x nor camera_angle_x"),
    (edit("fl_x", -5.0), "transforms.json: fl_x = -5 is not a focal length"),
    (edit("cx", 40.0, frame=2), "frames[2].cx = 40 is outside the 16x16 image"),
    (edit("camera_model", "EQUIRECTANGULAR"), "camera_model EQUIRECTANGULAR is not supported"),
    (edit("camera_model", "SPHERE", frame=0), "frames[0].camera_model SPHERE is not supported"),
    (edit("w", "wide", frame=4), "frames[4].w = wide is not a number of pixels"),
    (edit("fl_y", "long", frame=4), "frames[4].fl_y is not a number"),
    (lambda d, f: (no_size(d, f), d["frames"][1].update(cx=-1.0)), "frames[1].cx = -1 is outside the image"),
    (lambda d, f: (no_size(d, f), remove_intrinsics(d, f), d.update(camera_angle_x=4.0)),
     "transforms.json: camera_angle_x = 4 is not an angle of view"),
]


@pytest.mark.parametrize("breaker, message", CAMERAS_BROKEN, ids=[m[:30] for _, m in CAMERAS_BROKEN])
def test_broken_cameras_name_what_is_wrong(capture, tmp_path, breaker, message):
    folder = edited_copy(capture, tmp_path, breaker)
    with pytest.raises(EngineError) as e:
        read_cameras(folder / "transforms.json")
    assert e.value.kind == "capture_invalid" and e.value.hint
    assert message in e.value.message, e.value.message


@pytest.fixture(scope="module")
def job(capture, tmp_path_factory):
    """Two reconstruction steps on the capture: a field to render from other cameras."""
    job_dir = tmp_path_factory.mktemp("job")
    (job_dir / "job.json").write_text(json.dumps({
        "spec_version": 1, "method": "reconstruct", "inputs": {"capture": str(capture)}, "steps": 2, "seed": 0,
        "device": "cpu", "render": {"size": 16, "samples_per_ray": 8}, "export": {"resolution": 16},
        "preview_every": 0, "checkpoint_every": 0,
        "options": {"rays_per_step": 64, "hash_levels": 4, "hash_log2_size": 12, "hash_max_resolution": 32,
                    "mlp_width": 16}}))
    out = engine("run", job_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    return job_dir


def test_render_cameras_without_images_with_per_frame_intrinsics(capture, job, tmp_path):
    from PIL import Image

    written = json.loads((capture / "transforms.json").read_text())
    m = [f["transform_matrix"] for f in written["frames"]]
    # As Capture Selected writes them (camera_angle_x beside fl_x, text3d_bounds), with no images;
    # frame 1 with its own intrinsics and size, frame 2 with its own width and no file_path.
    cameras = tmp_path / "cameras.json"
    cameras.write_text(json.dumps({
        "camera_angle_x": 0.7, "fl_x": 20.0, "fl_y": 20.0, "cx": 8.0, "cy": 8.0, "w": 16, "h": 16,
        "text3d_bounds": written["text3d_bounds"],
        "frames": [{"file_path": "images/frame_000.png", "transform_matrix": m[0]},
                   {"file_path": "images/frame_001.png", "transform_matrix": m[1], "fl_x": 30.0, "fl_y": 31.0,
                    "cx": 9.0, "cy": 7.0, "w": 20, "h": 14},
                   {"transform_matrix": m[2], "w": 24}]}))
    out = engine("render", job, "--out", tmp_path / "out", "--cameras", cameras)
    assert out.returncode == 0, out.stderr[-2000:]
    rendered = json.loads((tmp_path / "out" / "transforms.json").read_text())
    assert [(f["file_path"], f["w"], f["h"], f["fl_x"], f["fl_y"], f["cx"], f["cy"]) for f in rendered["frames"]] == [
        ("frame_000.png", 16, 16, 20.0, 20.0, 8.0, 8.0), ("frame_001.png", 20, 14, 30.0, 31.0, 9.0, 7.0),
        ("frame_002.png", 24, 16, 20.0, 20.0, 8.0, 8.0)]
    for frame, matrix in zip(rendered["frames"], m):
        assert np.allclose(frame["transform_matrix"], matrix, atol=1e-5)
        with Image.open(tmp_path / "out" / frame["file_path"]) as im:
            assert im.size == (frame["w"], frame["h"])
    # The transforms.json render writes is a cameras file too, its PNGs gone or not.
    for frame in rendered["frames"]:
        (tmp_path / "out" / frame["file_path"]).unlink()
    again = engine("render", job, "--out", tmp_path / "again", "--cameras", tmp_path / "out" / "transforms.json")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "again" / "transforms.json").read_text()) == rendered


def test_render_cameras_through_their_lenses(capture, job, tmp_path):
    written = json.loads((capture / "transforms.json").read_text())
    m = written["frames"][0]["transform_matrix"]
    fisheye = {"camera_model": "OPENCV_FISHEYE", "k1": 0.03, "k2": -0.004, "k3": 0.0, "k4": 0.0, "p1": 0.0, "p2": 0.0}
    cameras = tmp_path / "cameras.json"
    cameras.write_text(json.dumps({"fl_x": 8.0, "cx": 8.0, "cy": 8.0, "w": 16, "h": 16, "frames": [
        {"file_path": "pinhole.png", "transform_matrix": m},
        {"file_path": "fisheye.png", "transform_matrix": m, **fisheye},
        {"file_path": "opencv.png", "transform_matrix": m, "camera_model": "OPENCV", "k1": -0.2}]}))
    out = engine("render", job, "--out", tmp_path / "out", "--cameras", cameras)
    assert out.returncode == 0, out.stderr[-2000:]
    pinhole, fish, opencv = json.loads((tmp_path / "out" / "transforms.json").read_text())["frames"]
    # Rendered through each camera's lens, and the lens written with the render (a pinhole stays one).
    assert "camera_model" not in pinhole and "k1" not in pinhole
    assert {k: fish[k] for k in fisheye} == fisheye
    assert opencv["camera_model"] == "OPENCV" and opencv["k1"] == -0.2 and opencv["p2"] == 0.0
    assert all((tmp_path / "out" / name).is_file() for name in ("pinhole.png", "fisheye.png", "opencv.png"))


def test_render_refuses_cameras_as_captures_do(capture, job, tmp_path):
    written = json.loads((capture / "transforms.json").read_text())
    cameras = tmp_path / "scaled.json"
    cameras.write_text(json.dumps({"fl_x": 20.0, "w": 16, "h": 16, "frames": [
        {"file_path": "a.png", "transform_matrix": written["frames"][0]["transform_matrix"]},
        {"file_path": "b.png", "transform_matrix": SCALED}]}))
    out = engine("render", job, "--out", tmp_path / "out", "--cameras", cameras)
    assert out.returncode == 6 and out.stdout == ""
    assert "error (capture_invalid): " in out.stderr
    assert "scaled.json: frames[1].transform_matrix: the rotation part is not a rotation" in out.stderr
    assert not list((tmp_path / "out").glob("*.png"))


# Georeferenced captures: world coordinates of a projected CRS (metres), where float32's spacing is 0.5 m.

GEO = ObjectFrame((455123.37, 5420456.81, 251.4), 1.0)


@pytest.mark.parametrize("bounds", [True, False], ids=["text3d_bounds", "axes"])
def test_georeferenced_cameras_keep_their_precision(tmp_path, bounds):
    folder = render_capture(tmp_path / "geo", n=8, size=16, frame=GEO, bounds=bounds)
    written = np.array([f["transform_matrix"] for f in json.loads((folder / "transforms.json").read_text())["frames"]])
    cap = load_capture(folder)
    offset, scale = np.array(cap.frame.offset), cap.frame.scale
    assert all(isinstance(v, float) for v in cap.frame.offset)
    assert np.abs(offset - GEO.offset).max() < 1e-3  # the object's centre, within a millimetre
    # The training cameras: the exact local ones (float64 world minus the offset) to float32 precision.
    exact = (written[:, :3, 3] - offset) / scale
    assert cap.c2w.dtype == torch.float32
    assert np.linalg.norm(cap.c2w[:, :3, 3].double().numpy() - exact, axis=-1).max() < 1e-5
    assert np.abs(cap.c2w[:, :3, :3].double().numpy() - written[:, :3, :3]).max() < 1e-6
    # Reported in world space as read, and sent back to world in float64.
    assert np.array_equal(np.array([c["transform_matrix"] for c in describe(cap)["cameras"]]), written)
    back = cap.frame.c2w_to_world(cap.c2w)
    assert back.dtype == torch.float64 and np.abs(back.numpy() - written).max() < 1e-5  # metres


def test_object_frame_round_trip_is_float64():
    world = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    world[:, :3, 3] = torch.tensor([[455125.3396, 5420453.3985, 252.1], [455121.0, 5420459.25, 250.0]],
                                   dtype=torch.float64)
    local = GEO.c2w_to_object(world)
    assert local.dtype == torch.float32 and float(local[:, :3, 3].abs().max()) < 5
    assert GEO.c2w_to_object(world, torch.float64).dtype == torch.float64
    assert (GEO.c2w_to_world(local) - world).abs().max() < 1e-6
