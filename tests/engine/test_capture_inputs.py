"""Captures as exporters write them: Windows paths, moved absolute paths, masks, keys the engine does not use."""
import json
import shutil

import pytest
import torch
from capture_support import render_capture

from engine.captures import load_capture, read_cameras
from engine.errors import EngineError


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return render_capture(tmp_path_factory.mktemp("cap") / "box", n=6, size=16)


def copy_with(capture, tmp_path, change):
    """A copy of the capture folder with change(transforms dict, folder) applied; returns the folder."""
    folder = tmp_path / "copy"
    shutil.copytree(capture, folder)
    data = json.loads((folder / "transforms.json").read_text())
    change(data, folder)
    (folder / "transforms.json").write_text(json.dumps(data))
    return folder


def solid_png(path, colour, size=(16, 16)):
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


# File paths.

def test_windows_separators_are_read_as_separators(capture, tmp_path):
    def windows(data, folder):
        for f in data["frames"]:
            f["file_path"] = f["file_path"].replace("/", "\\")
    folder = copy_with(capture, tmp_path, windows)
    cap = load_capture(folder)
    assert cap.names == [f"r_{i}" for i in range(6)]
    assert torch.equal(cap.images, load_capture(capture).images)
    assert [c.name for c in read_cameras(folder).frames] == cap.names  # the same names without images


def test_a_file_whose_name_holds_a_backslash_still_wins(capture, tmp_path):
    def literal(data, folder):
        data["frames"][0]["file_path"] = "images\\r_0.png"
        solid_png(folder / "images\\r_0.png", (0, 255, 0))  # one file in the capture folder, backslash and all
    cap = load_capture(copy_with(capture, tmp_path, literal))
    assert cap.images[0].reshape(-1, 3).unique(dim=0).tolist() == [[0.0, 1.0, 0.0]]


def test_a_missing_windows_path_says_so_and_names_the_path_tried(capture, tmp_path):
    def windows(data, folder):
        data["frames"][2]["file_path"] = "images\\r_2.png"
        (folder / "images" / "r_2.png").unlink()
    with pytest.raises(EngineError) as e:
        load_capture(copy_with(capture, tmp_path, windows))
    assert e.value.kind == "capture_invalid"
    assert "frames[2]: image 'images\\\\r_2.png' not found" in e.value.message
    assert "Windows (\\) separators, also tried 'images/r_2.png'" in e.value.message


def test_absolute_paths_of_another_machine_are_found_by_their_tail(capture, tmp_path):
    def moved(data, folder):
        data["frames"][1]["file_path"] = "/home/someone/scans/box/images/r_1.png"
        data["frames"][2]["file_path"] = "C:\\Users\\someone\\box\\images\\r_2.png"
    cap = load_capture(copy_with(capture, tmp_path, moved))
    assert torch.equal(cap.images, load_capture(capture).images)
    assert cap.names[1:3] == ["r_1", "r_2"]


def test_a_missing_absolute_path_names_its_tails(capture, tmp_path):
    with pytest.raises(EngineError) as e:
        load_capture(copy_with(capture, tmp_path, lambda d, f: d["frames"][1].update(file_path="/elsewhere/images/r_9.png")))
    assert "also tried its tails 'elsewhere/images/r_9.png', 'images/r_9.png', 'r_9.png'" in e.value.message


def test_suffixes_and_the_case_of_names(capture, tmp_path):
    def quirks(data, folder):
        data["frames"][3]["file_path"] = "images/r_3"  # no extension (instant-ngp, NeRF-synthetic)
        (folder / "images" / "r_4.png").rename(folder / "images" / "R_4.PNG")  # written on Windows
    cap = load_capture(copy_with(capture, tmp_path, quirks))
    assert torch.equal(cap.images, load_capture(capture).images)


def test_names_that_differ_only_in_case_are_not_guessed_between(capture, tmp_path):
    def ambiguous(data, folder):
        (folder / "images" / "r_5.png").rename(folder / "images" / "R_5.png")
        shutil.copy(folder / "images" / "R_5.png", folder / "images" / "r_5.PNG")
    with pytest.raises(EngineError, match="frames\\[5\\]: image 'images/r_5.png' not found"):
        load_capture(copy_with(capture, tmp_path, ambiguous))
