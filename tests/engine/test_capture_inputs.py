"""Captures as exporters write them: Windows paths, moved absolute paths, masks, keys the engine does not use."""
import shutil

import numpy as np
import pytest
import torch
from capture_support import edited_copy, render_capture

from engine.captures import load_capture, read_cameras
from engine.errors import EngineError


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return render_capture(tmp_path_factory.mktemp("cap") / "box", n=6, size=16)




def solid_png(path, colour, size=(16, 16)):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


# File paths.

def test_windows_separators_are_read_as_separators(capture, tmp_path):
    def windows(data, folder):
        for f in data["frames"]:
            f["file_path"] = f["file_path"].replace("/", "\\")
    folder = edited_copy(capture, tmp_path, windows)
    cap = load_capture(folder)
    assert cap.names == [f"r_{i}" for i in range(6)]
    assert torch.equal(cap.images, load_capture(capture).images)
    assert [c.name for c in read_cameras(folder).frames] == cap.names  # the same names without images


def test_a_file_whose_name_holds_a_backslash_still_wins(capture, tmp_path):
    def literal(data, folder):
        data["frames"][0]["file_path"] = "images\\r_0.png"
        solid_png(folder / "images\\r_0.png", (0, 255, 0))  # one file in the capture folder, backslash and all
    cap = load_capture(edited_copy(capture, tmp_path, literal))
    assert cap.images[0].reshape(-1, 3).unique(dim=0).tolist() == [[0.0, 1.0, 0.0]]


def test_a_missing_windows_path_says_so_and_names_the_path_tried(capture, tmp_path):
    def windows(data, folder):
        data["frames"][2]["file_path"] = "images\\r_2.png"
        (folder / "images" / "r_2.png").unlink()
    with pytest.raises(EngineError) as e:
        load_capture(edited_copy(capture, tmp_path, windows))
    assert e.value.kind == "capture_invalid"
    assert "frames[2]: image 'images\\\\r_2.png' not found" in e.value.message
    assert "Windows (\\) separators, also tried 'images/r_2.png'" in e.value.message


def test_absolute_paths_of_another_machine_are_found_by_their_tail(capture, tmp_path):
    def moved(data, folder):
        data["frames"][1]["file_path"] = "/home/someone/scans/box/images/r_1.png"
        data["frames"][2]["file_path"] = "C:\\Users\\someone\\box\\images\\r_2.png"
    cap = load_capture(edited_copy(capture, tmp_path, moved))
    assert torch.equal(cap.images, load_capture(capture).images)
    assert cap.names[1:3] == ["r_1", "r_2"]


def test_a_missing_absolute_path_names_its_tails(capture, tmp_path):
    with pytest.raises(EngineError) as e:
        load_capture(edited_copy(capture, tmp_path, lambda d, f: d["frames"][1].update(file_path="/elsewhere/images/r_9.png")))
    assert "also tried its tails 'elsewhere/images/r_9.png', 'images/r_9.png', 'r_9.png'" in e.value.message


def test_suffixes_and_the_case_of_names(capture, tmp_path):
    def quirks(data, folder):
        data["frames"][3]["file_path"] = "images/r_3"  # no extension (instant-ngp, NeRF-synthetic)
        (folder / "images" / "r_4.png").rename(folder / "images" / "R_4.PNG")  # written on Windows
    cap = load_capture(edited_copy(capture, tmp_path, quirks))
    assert torch.equal(cap.images, load_capture(capture).images)


def test_folders_in_another_case_as_windows_exporters_write_them(capture, tmp_path):
    def folder_case(data, folder):
        data["frames"][0]["file_path"] = "Images\\r_0.png"
        data["frames"][1]["file_path"] = "IMAGES/R_1.PNG"
        data["frames"][2]["file_path"] = "C:\\Data\\Scan\\Images\\r_2.png"
    cap = load_capture(edited_copy(capture, tmp_path, folder_case))
    assert torch.equal(cap.images, load_capture(capture).images)  # each frame found its own image


def test_folders_that_differ_only_in_case_are_not_guessed_between(capture, tmp_path):
    def ambiguous(data, folder):
        shutil.copytree(folder / "images", folder / "IMAGES")
        data["frames"][0]["file_path"] = "Images/r_0.png"
    with pytest.raises(EngineError, match="frames\\[0\\]: image 'Images/r_0.png' not found"):
        load_capture(edited_copy(capture, tmp_path, ambiguous))


def test_names_that_differ_only_in_case_are_not_guessed_between(capture, tmp_path):
    def ambiguous(data, folder):
        (folder / "images" / "r_5.png").rename(folder / "images" / "R_5.png")
        shutil.copy(folder / "images" / "R_5.png", folder / "images" / "r_5.PNG")
    with pytest.raises(EngineError, match="frames\\[5\\]: image 'images/r_5.png' not found"):
        load_capture(edited_copy(capture, tmp_path, ambiguous))


def test_a_frame_saved_without_alpha_among_frames_with_it_is_named(capture, tmp_path):
    from PIL import Image

    def flatten(data, folder):  # one image re-saved as RGB by an editor: its backdrop becomes opaque
        path = folder / "images" / "r_1.png"
        Image.open(path).convert("RGB").save(path)
    cap = load_capture(edited_copy(capture, tmp_path, flatten))
    opaque = [w for w in cap.warnings if "no alpha channel" in w]
    assert len(opaque) == 1 and "1 frame(s) have no alpha channel while 5 have one" in opaque[0], cap.warnings
    assert "frames[1]" in opaque[0]
    assert not any("no alpha channel" in w for w in load_capture(capture).warnings)


# Masks (nerfstudio's mask_path: 255 the object, 0 ignored).

def as_masked(data, folder):
    """Every RGBA image split into an opaque RGB image and its alpha as frames[i].mask_path."""
    from PIL import Image

    (folder / "masks").mkdir()
    for i, f in enumerate(data["frames"]):
        with Image.open(folder / f["file_path"]) as im:
            rgba = np.asarray(im.convert("RGBA"))
        Image.fromarray(rgba[..., :3]).save(folder / f["file_path"])
        Image.fromarray(rgba[..., 3]).save(folder / "masks" / f"m_{i}.png")
        f["mask_path"] = f"masks/m_{i}.png"


@pytest.mark.parametrize("max_image_size", [16, 8])
def test_masks_are_the_frames_coverage(capture, tmp_path, max_image_size):
    folder = edited_copy(capture, tmp_path, as_masked)
    masked, rgba = load_capture(folder, max_image_size), load_capture(capture, max_image_size)
    assert masked.alpha is not None and masked.size == (max_image_size,) * 2
    # The same as the RGBA capture, downsampled alike: alpha = mask / 255.
    assert torch.equal(masked.alpha, rgba.alpha) and torch.equal(masked.images, rgba.images)
    assert 0 < float(masked.alpha.mean()) < 1
    assert not any("mask" in w for w in masked.warnings)  # used, not ignored


def test_frames_without_their_mask_and_empty_masks_are_named(capture, tmp_path):
    """An exporter that lost some masks, or wrote one that covers nothing: the capture loads and says which."""
    from PIL import Image

    def partly(data, folder):
        as_masked(data, folder)
        del data["frames"][3]["mask_path"], data["frames"][5]["mask_path"]
        Image.fromarray(np.zeros((16, 16), np.uint8)).save(folder / "masks" / "m_1.png")
    cap = load_capture(edited_copy(capture, tmp_path, partly))
    without = [w for w in cap.warnings if "have no mask_path" in w]
    assert len(without) == 1 and without[0].startswith("2 frame(s) have no mask_path while") and "frames[3]" in without[0]
    empty = [w for w in cap.warnings if "covers nothing" in w]
    assert len(empty) == 1 and "1 frame(s)" in empty[0] and "frames[1]" in empty[0]
    assert not any("covers nothing" in w or "no mask_path" in w for w in load_capture(
        edited_copy(capture, tmp_path / "whole", as_masked)).warnings)


def test_a_mask_multiplies_the_images_own_alpha(capture, tmp_path):
    from PIL import Image

    def half(data, folder):
        (folder / "masks").mkdir()
        mask = np.zeros((16, 16), np.uint8)
        mask[:, :8] = 255
        Image.fromarray(mask).save(folder / "masks" / "left.png")
        data["frames"][0]["mask_path"] = "masks/left.png"
    cap, plain = load_capture(edited_copy(capture, tmp_path, half)), load_capture(capture)
    assert torch.equal(cap.alpha[0, :, :8], plain.alpha[0, :, :8]) and not cap.alpha[0, :, 8:].any()
    assert plain.alpha[0, :, 8:].any() and torch.equal(cap.alpha[1:], plain.alpha[1:])


def missing_mask(data, folder):
    as_masked(data, folder)
    (folder / "masks" / "m_3.png").unlink()


def small_mask(data, folder):
    from PIL import Image

    as_masked(data, folder)
    Image.new("L", (8, 16)).save(folder / "masks" / "m_1.png")


def colour_mask(data, folder):
    as_masked(data, folder)
    solid_png(folder / "masks" / "m_2.png", (255, 255, 255))


BROKEN_MASKS = [
    (missing_mask, "frames[3].mask_path: mask 'masks/m_3.png' not found"),
    (small_mask, "frames[1].mask_path: mask m_1.png is 8x16, its image r_1.png is 16x16"),
    (colour_mask, "frames[2].mask_path: mask m_2.png is RGB, not a single-channel image"),
    (lambda d, f: d["frames"][0].update(mask_path=3), "frames[0].mask_path is not a path"),
]


@pytest.mark.parametrize("breaker, message", BROKEN_MASKS, ids=[m[:30] for _, m in BROKEN_MASKS])
def test_broken_masks_name_the_frame_and_key(capture, tmp_path, breaker, message):
    with pytest.raises(EngineError) as e:
        load_capture(edited_copy(capture, tmp_path, breaker))
    assert e.value.kind == "capture_invalid" and e.value.hint
    assert "transforms.json: " + message in e.value.message, e.value.message


# Keys the engine does not use are reported, not dropped without a word.

def test_keys_that_are_not_used_are_reported_as_ignored(capture, tmp_path):
    def exporter(data, folder):
        data.update(ply_file_path="sparse.ply", applied_transform=np.eye(4)[:3].tolist(), aabb_scale=16,
                    fix_premult=True)
        for i, f in enumerate(data["frames"]):
            f.update(depth_file_path=f"depth/{i}.png", colmap_im_id=i + 1, sharpness=30.0)
        data["frames"][4]["time"] = 0.5
    folder = edited_copy(capture, tmp_path, exporter)
    expected = [
        "transforms.json: ply_file_path is ignored (the point cloud is not used)",
        "transforms.json: fix_premult is ignored (not a key the engine knows)",
        "transforms.json: depth_file_path of 6 frame(s) is ignored (depth maps are not used), first frames[0]",
        "transforms.json: time of 1 frame(s) is ignored (not a key the engine knows), first frames[4]"]
    assert load_capture(folder).warnings == expected
    assert read_cameras(folder).warnings == expected  # also for `render --cameras`
    assert not load_capture(capture).warnings  # what Text3D and nerfstudio write is all used

