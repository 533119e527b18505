"""Captures: photos of an object with camera poses, loaded, checked and placed in the object cube.

A capture is a folder with `transforms.json` in the nerfstudio / instant-ngp layout
(`frames[].file_path`, `frames[].transform_matrix`, intrinsics as `camera_angle_x` or
`fl_x, fl_y, cx, cy, w, h`, per file or per frame), or the original NeRF-synthetic layout
(`transforms_train.json` with `transforms_test.json` beside it, file paths without an
extension). Camera matrices are camera-to-world, looking down -Z with +Y up (Blender's and
NeRF's convention). Everything wrong with a capture is a `capture_invalid` error naming the
file, the frame and the key; every value is checked for its meaning, per file and per frame alike.
Paths are read as exporters write them (find_file: Windows separators, absolute paths of another
machine, missing suffixes, names in another case). nerfstudio's per-frame `mask_path` (255 the
object, 0 ignored) is the frame's coverage. Keys the engine does not use are listed in the
capture's warnings (FILE_KEYS, FRAME_KEYS, HARMLESS_KEYS, IGNORED_KEYS). read_cameras is the one
reader of these files: load_capture adds the images to it, `engine render --cameras` uses it
without any.

Lenses: nerfstudio's camera models. PINHOLE, SIMPLE_PINHOLE, OPENCV, SIMPLE_RADIAL and RADIAL
use OpenCV's radial-tangential distortion (k1, k2, k3, p1, p2), OPENCV_FISHEYE the equidistant
fisheye model (k1..k4); camera_model and the coefficients may be given per file or per frame.
Distortion is applied per pixel (engine.lens): frame_rays and capture_rays cast each pixel's ray
through its frame's lens, so the photos are used as taken.

The engine works in the object cube [-1,1]^3; a capture lives anywhere in its world. An
ObjectFrame (world = object * scale + offset, no rotation) maps one onto the other; results
(meshes, renders' transforms.json) go back through it, so the mesh lands where the object was.
World matrices stay float64 until the offset is subtracted (a georeferenced capture's cameras sit
5e6 m from the origin, where float32's spacing is 0.5 m); object space is float32.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from .capture_files import find_file
from .errors import EngineError
from .lens import camera_directions

log = logging.getLogger("engine.captures")

# Distortion coefficients of nerfstudio's OPENCV and OPENCV_FISHEYE camera models, in engine.lens's order.
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
# Camera models of the radial-tangential lens (distortion-free when every coefficient is 0).
PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL")
FISHEYE_MODELS = ("OPENCV_FISHEYE",)
CAMERA_MODELS = PINHOLE_MODELS + FISHEYE_MODELS
# Coefficients a model does not use (k4 of the radial-tangential model, p1 and p2 of the fisheye).
UNUSED_KEYS = {False: ("k4",), True: ("p1", "p2")}
# The keys of transforms files and their frames (nerfstudio, instant-ngp, NeRF-synthetic, Text3D), by what the
# engine does with them. Every other key is reported in the capture's warnings as ignored, so that nothing that
# changes what the photos mean (depth maps, a point cloud, an exporter's own keys) is dropped without a word.
INTRINSIC_KEYS = ("camera_model", "is_fisheye", "fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x",
                  "camera_angle_y") + DISTORTION_KEYS
"""Per file or per frame (the frame's value overrides the file's); is_fisheye is instant-ngp's OPENCV_FISHEYE."""
FILE_KEYS = frozenset(("frames", "text3d_bounds") + INTRINSIC_KEYS)
"""Used at a file's top level (text3d_bounds: Capture Selected's world box of the objects)."""
FRAME_KEYS = frozenset(("file_path", "transform_matrix", "mask_path") + INTRINSIC_KEYS)
"""Used in a frame (mask_path: nerfstudio's per-frame mask, 255 object, 0 ignored)."""
HARMLESS_KEYS = frozenset((
    "aabb_scale",            # instant-ngp's scene box (checked > 0); the engine finds its own object cube
    "scale", "offset",       # instant-ngp's placement of the scene in its cube: likewise
    "applied_transform", "applied_scale",  # nerfstudio's record of how it moved COLMAP's poses, already applied
    "orientation_override",  # nerfstudio: how its "up" was chosen, already applied
    "sharpness",             # instant-ngp colmap2nerf's blur measure of a frame
    "colmap_im_id",          # nerfstudio: the frame's COLMAP image id
    "rotation",              # NeRF-synthetic: the turntable step a frame was rendered at
))
"""Bookkeeping of other tools: they change neither the photos nor where the cameras are, so pass silently."""
IGNORED_KEYS = {
    "depth_file_path": "depth maps are not used",
    "ply_file_path": "the point cloud is not used",
    "integer_depth_scale": "depth maps are not used",
    "enable_depth_loading": "depth maps are not used",
}
"""Keys with a meaning the engine does not use: reported as ignored, with why."""
# How far the object may reach in the cube: a margin against clipping at the cube's faces.
OBJECT_EXTENT = 0.8
# Cameras must see the cube from outside: its corners are 1.73 from the centre.
MIN_CAMERA_DISTANCE = 2.0


@dataclass(frozen=True)
class ObjectFrame:
    """world = object * scale + offset (translation and uniform scale; the capture's axes are kept)."""

    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    # Both directions compute in float64: a georeferenced world (metres of a projected CRS, 5e6 from the origin)
    # has a float32 spacing of 0.5 m there, so only object-space values, small, may be float32.

    def c2w_to_object(self, c2w: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """(...,4,4) world camera-to-world (give float64 for world coordinates far from the origin) -> object
        space (rotation kept, position moved and scaled), computed in float64 on the CPU, returned as dtype
        on c2w's device."""
        world = c2w.detach().to("cpu", torch.float64)
        out = world.clone()
        out[..., :3, 3] = (world[..., :3, 3] - torch.tensor(self.offset, dtype=torch.float64)) / self.scale
        return out.to(c2w.device, dtype)

    def c2w_to_world(self, c2w: torch.Tensor) -> torch.Tensor:
        """(...,4,4) object-space camera-to-world -> world, (...,4,4) float64 on the CPU."""
        out = c2w.detach().to("cpu", torch.float64).clone()
        out[..., :3, 3] = out[..., :3, 3] * self.scale + torch.tensor(self.offset, dtype=torch.float64)
        return out

    def to_dict(self) -> dict:
        return {"offset": list(self.offset), "scale": self.scale}

    @staticmethod
    def from_dict(d: dict) -> "ObjectFrame":
        return ObjectFrame(tuple(float(v) for v in d["offset"]), float(d["scale"]))


def text_object_frame(look_at) -> ObjectFrame:
    """Where text methods make the object: the cube [-1,1]^3 around orbit.look_at, unscaled."""
    return ObjectFrame(tuple(look_at), 1.0)


@dataclass
class Capture:
    """N frames of one size, in the object frame."""

    images: torch.Tensor
    """(N,H,W,3) float32 sRGB in [0,1], not premultiplied."""
    alpha: torch.Tensor | None
    """(N,H,W) float32 coverage in [0,1], or None when no image has transparency."""
    c2w: torch.Tensor
    """(N,4,4) float32 camera-to-world in object space."""
    intrinsics: torch.Tensor
    """(N,4) float32 fx, fy, cx, cy in pixels of the loaded images (cx, cy from the top left)."""
    names: list[str]
    """Frame names (file stems), for messages and rendered file names."""
    test: torch.Tensor
    """(N,) bool: held-out frames (NeRF-synthetic test split, or holdout_every)."""
    frame: ObjectFrame
    """Object space -> the capture's world."""
    source: Path
    """The transforms JSON file(s) were read from (the train file for the NeRF-synthetic layout)."""
    warnings: list[str] = field(default_factory=list)
    """What was ignored or adjusted (unused lens coefficients, downsampling), for the job's log."""
    distortion: torch.Tensor | None = None
    """(N,6) float32 lens coefficients k1, k2, k3, k4, p1, p2 (DISTORTION_KEYS); zeros for pinhole frames
    (None when constructed: zeros)."""
    fisheye: torch.Tensor | None = None
    """(N,) bool: OPENCV_FISHEYE frames (the rest use the radial-tangential model); None when constructed: none."""
    world: torch.Tensor | None = None
    """(N,4,4) float64 camera-to-world in the capture's world, exactly as read (None: frame.c2w_to_world(c2w))."""

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.distortion is None:
            self.distortion = torch.zeros(n, len(DISTORTION_KEYS), dtype=torch.float32)
        if self.fisheye is None:
            self.fisheye = torch.zeros(n, dtype=torch.bool)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)"""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def split(self, test: bool) -> torch.Tensor:
        """Indices (K,) of the test frames (test=True) or of the training frames."""
        return torch.nonzero(self.test == test).flatten()


@dataclass(frozen=True, eq=False)
class FrameCamera:
    """One frame's camera as its transforms file gives it, checked; per-frame values override the file's.

    Intrinsics are kept as written: either fl_x, fl_y (pixels) or camera_angle_x (and _y), and
    cx, cy (pixels, None: the centre), all for a width x height image. intrinsics() resolves them
    at that size.
    """

    c2w: np.ndarray
    """(4,4) float64 camera-to-world in the capture's world (looking down -Z, +Y up); last row [0, 0, 0, 1]."""
    name: str
    """The file_path's stem, or frame_NNN (index in its file) for a cameras-only frame without file_path."""
    where: str
    """"transforms.json: frames[3]", for messages."""
    test: bool
    """From a NeRF-synthetic transforms_test.json (held out)."""
    file_path: str | None
    image: Path | None
    """The frame's image file when read with images, else None (images are not looked at)."""
    width: int | None
    height: int | None
    """Pixels: the image's size when read with images, else the file's w and h; None where the file
    does not say (a cameras-only file: the caller decides, e.g. `engine render` takes --size, else
    4x the job's render size, and makes the image square unless h is known)."""
    fl_x: float | None
    fl_y: float | None
    """Focal lengths in pixels (fl_y defaults to fl_x); None when the file gives angles instead."""
    angle_x: float | None
    angle_y: float | None
    """camera_angle_x, camera_angle_y (radians), used only without fl_x (None with it); focal
    lengths follow from them and the size: fx = 0.5 w / tan(angle_x / 2), fy from angle_y or = fx."""
    cx: float | None
    cy: float | None
    """Principal point in pixels from the top left; None: the image's centre."""
    distortion: tuple[float, ...] = (0.0,) * len(DISTORTION_KEYS)
    """The lens's coefficients k1, k2, k3, k4, p1, p2 (DISTORTION_KEYS; absent ones 0), as written."""
    fisheye: bool = False
    """camera_model OPENCV_FISHEYE (equidistant fisheye); else the radial-tangential model."""
    mask: Path | None = None
    """The frame's mask_path file when read with images (checked: exists, the image's size), else None."""

    @property
    def distorted(self) -> bool:
        """The lens is not a pinhole: fisheye, or some distortion coefficient is not 0."""
        return self.fisheye or any(k != 0.0 for k in self.distortion)

    @property
    def camera_model(self) -> str:
        """OPENCV_FISHEYE, OPENCV (some coefficient not 0) or PINHOLE: the model that describes this lens."""
        return camera_model(self.fisheye, self.distortion)

    def intrinsics(self) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy in pixels of the width x height image (the size must be known)."""
        if self.width is None or self.height is None:
            raise ValueError(f"{self.where}: the image size is unknown")
        w, h = self.width, self.height
        if self.fl_x is not None:
            fx, fy = self.fl_x, self.fl_y
        else:
            fx = _focal(w, self.angle_x)
            fy = _focal(h, self.angle_y) if self.angle_y is not None else fx
        return fx, fy, (self.cx if self.cx is not None else w / 2), (self.cy if self.cy is not None else h / 2)


@dataclass
class Cameras:
    """Every frame's camera of a capture or transforms file (read_cameras), in the file's world."""

    frames: list[FrameCamera]
    """Training frames first, then those of a NeRF-synthetic transforms_test.json."""
    source: Path
    """The transforms file read first (the train file for the NeRF-synthetic layout)."""
    bounds: np.ndarray | None
    """The source's text3d_bounds [[min xyz], [max xyz]] (world), or None."""
    warnings: list[str] = field(default_factory=list)
    """Keys of the files or frames that are ignored (unknown_keys), for the job's log."""

    @property
    def c2w(self) -> torch.Tensor:
        """(N,4,4) float64 camera-to-world in the file's world, as written (ObjectFrame.c2w_to_object makes
        float32 object-space matrices of them; world coordinates may be too large for float32)."""
        return torch.from_numpy(np.stack([f.c2w for f in self.frames]))


def capture_invalid(message: str, hint: str) -> EngineError:
    return EngineError("capture_invalid", message, hint)


def camera_model(fisheye: bool, distortion) -> str:
    """The camera_model that writes a lens: OPENCV_FISHEYE, OPENCV (some coefficient not 0) or PINHOLE."""
    if fisheye:
        return "OPENCV_FISHEYE"
    return "OPENCV" if any(float(k) != 0.0 for k in distortion) else "PINHOLE"


def _camera_model(value, where: str) -> str:
    """A camera_model value, checked: one of CAMERA_MODELS (upper case). where: "FILE: camera_model" or
    "FILE: frames[i].camera_model", for the message."""
    model = str(value).upper()
    if model not in CAMERA_MODELS:
        raise capture_invalid(f"{where} {value} is not supported (supported: {', '.join(CAMERA_MODELS)})",
                              "undistort the images (e.g. nerfstudio's ns-process-data) and write a PINHOLE capture")
    return model


def find_transforms(path: str | Path) -> tuple[Path, list[tuple[Path, bool]]]:
    """A capture path (folder or JSON file) -> (folder, [(json file, is_test)]).

    A folder is read from transforms.json, else from the NeRF-synthetic transforms_train.json
    (with transforms_test.json as held-out frames; transforms_val.json is not used).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise capture_invalid(f"capture {p} does not exist", "give a capture folder with transforms.json")
    if p.is_dir():
        for name in ("transforms.json", "transforms_train.json"):
            if (p / name).is_file():
                p = p / name
                break
        else:
            raise capture_invalid(f"capture folder {p} has no transforms.json (nor NeRF-synthetic transforms_train.json)",
                                  "give a folder written by Capture Selected, nerfstudio or instant-ngp")
    files = [(p, False)]
    if p.name == "transforms_train.json" and (p.parent / "transforms_test.json").is_file():
        files.append((p.parent / "transforms_test.json", True))
    return p.parent, files


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise capture_invalid(f"{path}: not readable JSON ({e})", "fix or re-export the capture's transforms file") from None
    if not isinstance(data, dict):
        raise capture_invalid(f"{path}: must be a JSON object with 'frames'", "fix the transforms file")
    return data


def _matrix(value, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
        raise capture_invalid(f"{where}.transform_matrix is not a finite 4x4 matrix (got {str(value)[:80]})",
                              "each frame needs a camera-to-world 4x4 transform_matrix")
    if m.shape == (3, 4):
        m = np.vstack([m, [0, 0, 0, 1]])
    if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-4):
        raise capture_invalid(f"{where}.transform_matrix: last row is {m[3].tolist()}, not [0, 0, 0, 1]",
                              "transform_matrix must be a rigid camera-to-world matrix")
    r = m[:3, :3]
    if not np.allclose(r.T @ r, np.eye(3), atol=2e-3) or np.linalg.det(r) < 0:
        raise capture_invalid(f"{where}.transform_matrix: the rotation part is not a rotation "
                              f"(scaled, sheared or mirrored; det {np.linalg.det(r):.3g})",
                              "write camera-to-world matrices without scale (apply the object's scale in Blender)")
    return m


def _load_image(path: Path, where: str) -> tuple[np.ndarray, bool]:
    """((H,W,4) float32 in [0,1], whether the file has an alpha channel); alpha 1 where it has none."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                im = im.point(lambda v: v / 256).convert("L")
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise capture_invalid(f"{where}: cannot read image {path} ({e})", "re-export the image as PNG or JPEG") from None
    if arr.shape[-1] == 3:
        arr = np.concatenate([arr, np.ones_like(arr[..., :1])], axis=-1)
    return arr, has_alpha


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaged downsampling of (H,W,4) premultiplied by alpha, so edges do not bleed the background."""
    t = torch.from_numpy(arr).permute(2, 0, 1)[None]
    t = torch.cat([t[:, :3] * t[:, 3:], t[:, 3:]], dim=1)
    t = torch.nn.functional.interpolate(t, size=(height, width), mode="area")[0]
    rgb = t[:3] / t[3:].clamp(min=1e-6)
    return torch.cat([torch.where(t[3:] > 0, rgb, torch.zeros_like(rgb)), t[3:]]).permute(1, 2, 0).numpy()


def _focal(size: int, angle: float) -> float:
    """Pixels of focal length for `size` pixels across an angle of view (radians); inf for a zero angle."""
    t = math.tan(0.5 * angle)
    return 0.5 * size / t if t else math.inf


def _number(value, label: str, key: str) -> float:
    """A finite number (JSON numbers, or strings of them; not true/false). label: "FILE: frames[i].KEY" or "FILE: KEY"."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise capture_invalid(f"{label} is not a number (got {str(value)[:80]})", f"write {key} as a number") from None
    if not math.isfinite(number):
        raise capture_invalid(f"{label} = {number} is not a finite number", f"write {key} as a finite number")
    return number


def _pixels(value, label: str) -> int:
    """A positive whole number of pixels (w, h)."""
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number >= 1 and number == int(number)):
        raise capture_invalid(f"{label} = {str(value)[:80]} is not a number of pixels (a positive integer)",
                              "w and h are the image's width and height in pixels")
    return int(number)


# Lens coefficients, in OpenCV's normalised image coordinates, stay far below this: a strong wide-angle lens has
# k1 ~ -0.4, a fisheye k1..k4 ~ 0.1, decentring p1, p2 ~ 1e-3. 10 leaves room for unusual lenses while refusing
# coefficients written in pixels or under the wrong key (at the edge of a 90 degree view, r = 1, k1 = 10 would
# move a pixel 10 times its distance from the centre).
MAX_DISTORTION = 10.0


def _intrinsic(key: str, value, label: str):
    """One of INTRINSIC_KEYS' values, checked for its meaning, not only its type, the same per file and per frame.

    camera_model -> str in CAMERA_MODELS; is_fisheye -> bool; w, h -> int >= 1; fl_x, fl_y -> float > 0;
    camera_angle_x, _y -> float in (0, pi); cx, cy -> float >= 0 (the far side needs the image's size);
    DISTORTION_KEYS -> float with |k| < MAX_DISTORTION. Raises capture_invalid naming label (file, frame, key).
    """
    if key == "camera_model":
        return _camera_model(value, label)
    if key == "is_fisheye":
        if not isinstance(value, bool):
            raise capture_invalid(f"{label} is not true or false (got {str(value)[:80]})", "write is_fisheye as true or false")
        return value
    if key in ("w", "h"):
        return _pixels(value, label)
    number = _number(value, label, key)
    if key in ("fl_x", "fl_y") and not number > 0:
        raise capture_invalid(f"{label} = {number:g} is not a focal length (pixels, > 0)",
                              "fl_x, fl_y are the focal lengths in pixels of the w x h image")
    if key in ("camera_angle_x", "camera_angle_y") and not 0 < number < math.pi:
        raise capture_invalid(f"{label} = {number:g} is not an angle of view (radians, between 0 and pi)",
                              f"{key} is the angle of view in radians (0.698 for 40 degrees)")
    if key in ("cx", "cy") and number < 0:
        raise capture_invalid(f"{label} = {number:g} is outside the image",
                              "cx, cy are the principal point in pixels from the image's top left")
    if key in DISTORTION_KEYS and not abs(number) < MAX_DISTORTION:
        raise capture_invalid(f"{label} = {number:g} is not a coefficient of a real lens (|{key}| < {MAX_DISTORTION:g} "
                              "in OpenCV's normalised coordinates)",
                              "write the coefficients COLMAP or nerfstudio give (OpenCV's model), or 0 for none")
    return number


def _image_size(path: Path, where: str) -> tuple[int, int]:
    """(H, W) of an image from its header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError) as e:
        raise capture_invalid(f"{where}: cannot read image {path} ({e})", "re-export the image as PNG or JPEG") from None
    return h, w


def read_cameras(path: str | Path, need_images: bool = False, test_file: bool = True,
                 open_image: Callable[[Path, str], tuple[int, int]] | None = None) -> Cameras:
    """Read and check every frame's camera of a capture or transforms file: the one reader of transforms.json.

    Raises EngineError("capture_invalid") naming the file, the frame and the key: missing or
    unreadable file, no frames, a transform_matrix that is not a rigid camera-to-world matrix (3x4
    is completed), no intrinsics, any intrinsic (INTRINSIC_KEYS, per file or per frame, checked
    alike by _intrinsic) that means nothing (camera_model not in CAMERA_MODELS, focal lengths <= 0,
    angles outside (0, pi), the principal point outside the image, w, h not positive integers or
    not the image's size, a lens coefficient that is not finite or |k| >= MAX_DISTORTION, is_fisheye
    against camera_model), aabb_scale <= 0, bad text3d_bounds, a bad mask_path. Keys it does not use
    are listed in Cameras.warnings (unknown_keys).

    need_images: every frame needs file_path and an existing image, all of one size; the images
    give width and height (the file's w, h must agree). open_image(path, where) -> (H, W) reads
    each image, in frame order (default: its header only; load_capture's keeps the pixels).
    Without need_images, images are not looked at (file_path is optional): width and height are
    the file's w and h, None where it has none, and intrinsics are checked as far as they can be
    without a size.
    test_file: also read the transforms_test.json beside a NeRF-synthetic transforms_train.json
    (as held-out frames); False reads only the file `path` names (or the folder's first file).
    """
    _, files = find_transforms(path)
    if not test_file:
        files = files[:1]
    source = files[0][0]
    records, bounds, warnings = [], None, []
    for file, is_test in files:
        data = _read_json(file)
        if file == source:
            bounds = _bounds(data, source)
        frames = data.get("frames")
        if not isinstance(frames, list) or not frames:
            raise capture_invalid(f"{file}: no frames", "a capture needs a non-empty 'frames' list")
        for key in INTRINSIC_KEYS:  # checked even where every frame overrides it
            if data.get(key) is not None:
                _intrinsic(key, data[key], f"{file.name}: {key}")
        if data.get("aabb_scale") is not None:
            aabb = _number(data["aabb_scale"], f"{file.name}: aabb_scale", "aabb_scale")
            if not aabb > 0:
                raise capture_invalid(f"{file.name}: aabb_scale = {aabb:g} is not a positive number",
                                      "aabb_scale is instant-ngp's scene box (a power of 2, e.g. 16); the engine "
                                      "does not use it: fix or remove it")
        for i, frame in enumerate(frames):
            where = f"{file.name}: frames[{i}]"
            if not isinstance(frame, dict):
                raise capture_invalid(f"{where} is not an object", "each frame needs file_path and transform_matrix")
            records.append((file, is_test, i, where, data, frame))
        warnings += unknown_keys(file, data)

    cameras = []
    shape = None
    for file, is_test, i, where, data, frame in records:
        def value(key):
            """(value, label): the frame's value of key, else its file's (null counts as absent); label says where
            it is written ("transforms.json: frames[3].fl_x" or "transforms.json: fl_x"), for messages."""
            for scope, label in ((frame, f"{where}.{key}"), (data, f"{file.name}: {key}")):
                if scope.get(key) is not None:
                    return scope[key], label
            return None, None

        values, labels = {}, {}  # every intrinsic given, checked as its key means (per frame or per file alike)
        for key in INTRINSIC_KEYS:
            raw, label = value(key)
            if raw is not None:
                values[key], labels[key] = _intrinsic(key, raw, label), label

        file_path = frame.get("file_path")
        if file_path is not None and not isinstance(file_path, str):
            raise capture_invalid(f"{where}.file_path is not a path (got {str(file_path)[:80]})",
                                  "file_path is the image's path relative to the transforms file")
        if not file_path:
            if need_images:
                raise capture_invalid(f"{where} has no file_path", "each frame needs the path of its image")
            file_path = None
        if "transform_matrix" not in frame:
            raise capture_invalid(f"{where} has no transform_matrix", "each frame needs a camera-to-world matrix")
        m = _matrix(frame["transform_matrix"], where)
        model = values.get("camera_model", "PINHOLE")
        if "is_fisheye" in values:  # instant-ngp's colmap2nerf writes it instead of camera_model
            if "camera_model" not in values:
                model = "OPENCV_FISHEYE" if values["is_fisheye"] else model
            elif values["is_fisheye"] != (model in FISHEYE_MODELS):
                raise capture_invalid(f"{labels['is_fisheye']} is {str(values['is_fisheye']).lower()} but "
                                      f"{labels['camera_model']} is {model}", "remove one of them or make them agree")
        declared = (values.get("w"), values.get("h"))
        image_path = mask = None
        if need_images:
            image_path, tried = find_file(file.parent, file_path)
            if image_path is None:
                raise capture_invalid(f"{where}: image {file_path!r} not found (looked in {file.parent}"
                                      f"{'; ' + tried if tried else ''})",
                                      "copy the image into the capture folder or fix file_path")
            h, w = (open_image or _image_size)(image_path, where)
            if None not in declared and declared != (w, h):
                raise capture_invalid(f"{where}: image {image_path.name} is {w}x{h} but w, h say "
                                      f"{declared[0]}x{declared[1]}", "fix w and h or re-export the image")
            mask = _find_mask(frame, where, file.parent, image_path, (w, h)) if "mask_path" in frame else None
            if shape is None:
                shape = (h, w)
            elif (h, w) != shape:
                raise capture_invalid(f"{where}: image {image_path.name} is {w}x{h}, the first frame's is "
                                      f"{shape[1]}x{shape[0]}", "all images of a capture must have the same size")
        else:
            w, h = declared
        for key, size in (("cx", w), ("cy", h)):  # >= 0 is checked with the value; the far side needs the size
            if key in values and size is not None and values[key] > size:
                of = "" if labels[key].startswith(where) else f" of frames[{i}]"  # a file-level value: which image
                raise capture_invalid(f"{labels[key]} = {values[key]:g} is outside the {w}x{h} image{of}",
                                      "cx, cy are the principal point in pixels from the image's top left")
        fl_x = fl_y = angle_x = angle_y = None
        if "fl_x" in values:
            fl_x = values["fl_x"]
            fl_y = values.get("fl_y", fl_x)
        elif "camera_angle_x" in values:
            angle_x, angle_y = values["camera_angle_x"], values.get("camera_angle_y")
        else:
            # Name what is there: a frame with fl_y but no fl_x is missing one key, not all of them.
            present = sorted(k for k in values if k in INTRINSIC_KEYS)
            have = f" (it has {', '.join(present)})" if present else ""
            raise capture_invalid(f"{where} has no focal length: neither fl_x nor camera_angle_x{have}",
                                  "give camera_angle_x, or fl_x, fl_y, cx, cy, w, h, in the file or in each frame")
        # Named by file_path as written, Windows separators read as such (the same with or without images).
        name = PurePosixPath(file_path.replace("\\", "/")).stem if file_path else f"frame_{i:03d}"
        coeffs = tuple(values.get(k, 0.0) for k in DISTORTION_KEYS)
        cameras.append(FrameCamera(m, name, where, is_test, file_path, image_path, w, h, fl_x, fl_y, angle_x, angle_y,
                                   values.get("cx"), values.get("cy"), coeffs, model in FISHEYE_MODELS, mask))
    return Cameras(cameras, source, bounds, warnings)


def unknown_keys(file: Path, data: dict) -> list[str]:
    """What a transforms file says that the engine does not use: one line per key, file level then frame level
    ("transforms.json: depth_file_path of 12 frame(s) is ignored (depth maps are not used), first frames[0]")."""
    def why(key):
        return IGNORED_KEYS.get(key, "not a key the engine knows")

    lines = [f"{file.name}: {key} is ignored ({why(key)})" for key in data
             if key not in FILE_KEYS | HARMLESS_KEYS]
    first: dict[str, int] = {}
    count: dict[str, int] = {}
    for i, frame in enumerate(data.get("frames") or []):
        for key in frame:
            if key not in FRAME_KEYS | HARMLESS_KEYS:
                first.setdefault(key, i)
                count[key] = count.get(key, 0) + 1
    lines += [f"{file.name}: {key} of {count[key]} frame(s) is ignored ({why(key)}), first frames[{first[key]}]"
              for key in first]
    return lines


def _find_mask(frame: dict, where: str, folder: Path, image: Path, size: tuple[int, int]) -> Path:
    """A frame's mask_path file, checked: it exists and is its image's size (w, h)."""
    value = frame["mask_path"]
    if not isinstance(value, str) or not value:
        raise capture_invalid(f"{where}.mask_path is not a path (got {str(value)[:80]})",
                              "mask_path is the path of the frame's mask image, relative to transforms.json")
    path, tried = find_file(folder, value)
    if path is None:
        raise capture_invalid(f"{where}.mask_path: mask {value!r} not found (looked in {folder}"
                              f"{'; ' + tried if tried else ''})",
                              "copy the mask into the capture folder, or remove mask_path to use the whole image")
    h, w = _image_size(path, f"{where}.mask_path")
    if (w, h) != size:
        raise capture_invalid(f"{where}.mask_path: mask {path.name} is {w}x{h}, its image {image.name} is "
                              f"{size[0]}x{size[1]}", "a mask has its image's size (255: the object, 0: ignored)")
    return path


def _load_mask(path: Path, where: str) -> np.ndarray:
    """(H,W) float32 coverage in [0,1] of a single-channel mask (255: the object, 0: ignored)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise capture_invalid(f"{where}.mask_path: mask {path.name} is {im.mode}, not a single-channel image",
                                      "write masks as greyscale PNGs (255: the object, 0: ignored)")
            if im.mode.startswith("I"):
                im = im.point(lambda v: v / 256).convert("L")
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as e:
        raise capture_invalid(f"{where}.mask_path: cannot read mask {path} ({e})",
                              "re-export the mask as a greyscale PNG") from None


def load_capture(path: str | Path, max_image_size: int = 512, holdout_every: int = 0) -> Capture:
    """Read, check and normalise a capture. Raises EngineError("capture_invalid") naming what is wrong.

    max_image_size: longest side after loading (larger images are downsampled, intrinsics follow).
    holdout_every: also hold out every k-th training frame as a test view (0 = none).
    """
    images, with_alpha = [], []

    def open_image(image_path: Path, where: str) -> tuple[int, int]:
        image, has_alpha = _load_image(image_path, where)
        images.append(image)
        with_alpha.append(has_alpha)
        return image.shape[:2]

    cameras = read_cameras(path, need_images=True, open_image=open_image)
    source = cameras.source
    warnings: list[str] = list(cameras.warnings)
    masked = [i for i, c in enumerate(cameras.frames) if c.mask is not None]
    empty = []
    for i in masked:  # the mask is the frame's coverage, with the image's own alpha where it has one
        images[i][..., 3] *= _load_mask(cameras.frames[i].mask, cameras.frames[i].where)
        if not images[i][..., 3].any():
            empty.append(cameras.frames[i].where)
    if masked:
        log.info("mask_path of %d frame(s) used as their coverage (alpha)", len(masked))
    if masked and len(masked) < len(cameras.frames):  # an exporter that lost some masks: say which frames
        whole = [c.where for c in cameras.frames if c.mask is None]
        warnings.append(f"{len(whole)} frame(s) have no mask_path while {len(masked)} have one, first {whole[0]}: "
                        "their whole image is taken as the object's view (add their masks, or drop them)")
    opaque = [c.where for c, a in zip(cameras.frames, with_alpha) if not a and c.mask is None]
    if opaque and any(with_alpha):  # one frame saved without alpha: its backdrop would be trained as the object
        warnings.append(f"{len(opaque)} frame(s) have no alpha channel while {sum(with_alpha)} have one, first "
                        f"{opaque[0]}: their whole image, background included, is taken as the object's view "
                        "(re-export them with alpha, or give them a mask_path)")
    if empty:  # nothing of the object in view: the frame only teaches the field to be empty along its rays
        warnings.append(f"the mask of {len(empty)} frame(s) covers nothing (all 0), first {empty[0]}: those views "
                        "say the object is not there; check the masks (255: the object, 0: ignored)")
    distorted = [c for c in cameras.frames if c.distorted]
    if distorted:
        models = sorted({c.camera_model for c in distorted})
        log.info("lens distortion (%s) of %d frame(s) is applied per pixel", ", ".join(models), len(distorted))
    unused = [c.where for c in cameras.frames
              if any(c.distortion[DISTORTION_KEYS.index(k)] != 0.0 for k in UNUSED_KEYS[c.fisheye])]
    if unused:
        warnings.append(f"lens coefficients the camera model does not use (k4 of OPENCV, p1 and p2 of OPENCV_FISHEYE) "
                        f"are ignored in {len(unused)} frame(s), first {unused[0]}")
    intr = [c.intrinsics() for c in cameras.frames]
    names = [c.name for c in cameras.frames]

    h, w = cameras.frames[0].height, cameras.frames[0].width
    scale_px = min(1.0, max_image_size / max(h, w))
    if scale_px < 1.0:
        nh, nw = max(1, round(h * scale_px)), max(1, round(w * scale_px))
        warnings.append(f"images downsampled from {w}x{h} to {nw}x{nh} (options.max_image_size {max_image_size})")
        sx, sy = nw / w, nh / h
        intr = [(fx * sx, fy * sy, cx * sx, cy * sy) for fx, fy, cx, cy in intr]
        images = [_resize(a, nh, nw) for a in images]
        h, w = nh, nw
    stack = torch.from_numpy(np.stack(images)).float()
    rgb, alpha = stack[..., :3].contiguous(), stack[..., 3].contiguous()
    if bool((alpha >= 1).all()):
        alpha = None

    world = cameras.c2w  # float64 until the object frame's offset is subtracted
    intrinsics = torch.tensor(intr, dtype=torch.float32)
    distortion = torch.tensor([c.distortion for c in cameras.frames], dtype=torch.float32)
    fisheye = torch.tensor([c.fisheye for c in cameras.frames], dtype=torch.bool)
    frame = normalise(world, intrinsics, (h, w), cameras.bounds, distortion, fisheye)
    test = torch.tensor([c.test for c in cameras.frames], dtype=torch.bool)
    if holdout_every:
        train = torch.nonzero(~test).flatten()
        test[train[holdout_every - 1::holdout_every]] = True
    if bool(test.all()):
        raise capture_invalid(f"{source}: every frame is held out", "lower options.holdout_every or add frames")
    return Capture(rgb, alpha, frame.c2w_to_object(world), intrinsics, names, test, frame, source, warnings,
                   distortion=distortion, fisheye=fisheye, world=world)


def _bounds(data: dict, path: Path) -> np.ndarray | None:
    """The capture's world bounding box `text3d_bounds` [[min xyz], [max xyz]] (Capture Selected writes it)."""
    if "text3d_bounds" not in data:
        return None
    try:
        b = np.asarray(data["text3d_bounds"], dtype=np.float64)
    except (TypeError, ValueError):
        b = None
    if b is None or b.shape != (2, 3) or not np.isfinite(b).all() or (b[1] < b[0]).any():
        raise capture_invalid(f"{path}: text3d_bounds must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] "
                              f"(got {data['text3d_bounds']!r})", "fix or remove text3d_bounds")
    return b


def normalise(c2w: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int],
              bounds: np.ndarray | None = None, distortion: torch.Tensor | None = None,
              fisheye: torch.Tensor | None = None) -> ObjectFrame:
    """Where the object cube sits in the capture's world.

    With bounds (the objects' world box), the box's centre becomes the cube's and its largest
    half side OBJECT_EXTENT. Without, the centre is the point nearest to every camera's optical
    axis (least squares, as instant-ngp) and the object is assumed to fill the views: its half
    size is the view's half width at the median camera distance, the half width being the angle
    from the optical axis to the nearest image edge through the frame's lens (view_half_angle:
    pinhole, radial-tangential or fisheye), at most MAX_FILL_HALF_ANGLE. Either way the scale is
    capped so that every camera stays MIN_CAMERA_DISTANCE from the centre in object units.
    c2w: (N,4,4) world (float64: the centre of a georeferenced capture needs it); intrinsics (N,4) fx, fy, cx, cy;
    size (H, W); distortion (N,6) k1, k2, k3, k4, p1, p2 and fisheye (N,) bool, zeros / False when None.
    """
    eye = c2w[:, :3, 3].double()
    forward = -c2w[:, :3, 2].double()
    if bounds is not None:
        centre = torch.from_numpy((bounds[0] + bounds[1]) / 2)
        half = float((bounds[1] - bounds[0]).max()) / 2
        scale = max(half, 1e-6) / OBJECT_EXTENT
    else:
        # sum_i (I - f_i f_i^T) (c - e_i) = 0: the point with the least squared distance to all axes.
        proj = torch.eye(3, dtype=torch.float64) - forward[:, :, None] * forward[:, None, :]
        a, b = proj.sum(0), (proj @ eye[:, :, None]).sum(0)[:, 0]
        if len(eye) < 2 or torch.linalg.cond(a) > 1e6:
            raise capture_invalid("the cameras' axes do not meet near one point (parallel or a single camera), "
                                  "so the object's position is unknown",
                                  'add "text3d_bounds": [[xmin,ymin,zmin],[xmax,ymax,zmax]] to transforms.json')
        centre = torch.linalg.solve(a, b)
        ahead = ((centre - eye) * forward).sum(-1)
        if bool((ahead <= 0).any()):
            raise capture_invalid("some cameras look away from the point the others look at",
                                  'add "text3d_bounds" to transforms.json to say where the object is')
        half_angle = view_half_angle(intrinsics, size, distortion, fisheye).double()
        scale = float((ahead * torch.tan(half_angle)).median())
    nearest = float((eye - centre).norm(dim=-1).min())
    scale = min(scale, nearest / MIN_CAMERA_DISTANCE)
    if not scale > 0:
        raise capture_invalid("a camera sits at the object's centre", "check the capture's camera positions")
    return ObjectFrame(tuple(float(v) for v in centre), float(scale))


MAX_FILL_HALF_ANGLE = math.radians(60.0)
"""The widest half view an object is assumed to fill when a capture has no bounds. A fisheye's 90 degrees or more
would make the object's size the tangent of a right angle; an object fills a normal framing, not the whole lens."""


def view_half_angle(intrinsics: torch.Tensor, size: tuple[int, int], distortion: torch.Tensor | None = None,
                    fisheye: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) radians from each camera's optical axis to the nearest midpoint of an image edge, through its lens
    (lens.camera_directions), capped at MAX_FILL_HALF_ANGLE. A centred pinhole gives atan(min(W/fx, H/fy) / 2);
    a fisheye's angle grows with the pixel distance (theta = r / f) where a pinhole's grows as its arctangent.
    intrinsics (N,4) fx, fy, cx, cy; size (H, W); distortion (N,6), fisheye (N,) bool."""
    n = len(intrinsics)
    h, w = size
    if distortion is None:
        distortion = torch.zeros(n, 6)
    if fisheye is None:
        fisheye = torch.zeros(n, dtype=torch.bool)
    cx, cy = intrinsics[:, 2], intrinsics[:, 3]
    # The four edge midpoints, seen from the principal point: left, right, top, bottom.
    px = torch.stack([torch.zeros_like(cx), torch.full_like(cx, w), cx, cx], dim=1)
    py = torch.stack([cy, cy, torch.zeros_like(cy), torch.full_like(cy, h)], dim=1)
    repeat = lambda t: t.repeat_interleave(4, dim=0)  # noqa: E731
    dirs = camera_directions(px.flatten(), py.flatten(), repeat(intrinsics), repeat(distortion), repeat(fisheye))
    angle = torch.acos((-dirs[:, 2]).clamp(-1.0, 1.0)).view(n, 4)
    return angle.min(dim=1).values.clamp(max=MAX_FILL_HALF_ANGLE)


def frame_rays(capture: Capture, frames: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through pixel positions of capture frames, through each frame's lens, in object space.

    frames (n,) long frame indices; px, py (n,) float pixel positions from the image's top left
    (pixel centres: index + 0.5). Returns origins (n,3) and unit directions (n,3) on `device`.
    """
    local = camera_directions(px, py, capture.intrinsics[frames], capture.distortion[frames], capture.fisheye[frames])
    c2w = capture.c2w[frames]
    dirs = torch.nn.functional.normalize((c2w[:, :3, :3] @ local[:, :, None])[:, :, 0], dim=-1)
    return c2w[:, :3, 3].to(device), dirs.to(device)


def capture_rays(capture: Capture, index: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Rays of every pixel of frame `index` in object space (frame_rays): origins, dirs (H*W,3), row-major
    from the top left."""
    h, w = capture.size
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5,
                          indexing="ij")
    frames = torch.full((h * w,), index, dtype=torch.long)
    return frame_rays(capture, frames, j.reshape(-1), i.reshape(-1), device)


def describe(capture: Capture) -> dict:
    """A JSON summary: frame counts, size, the object frame, cameras in world space (for `capture` and tests)."""
    h, w = capture.size
    world = capture.world if capture.world is not None else capture.frame.c2w_to_world(capture.c2w)  # float64
    return {"source": str(capture.source), "frames": len(capture.names), "train": int((~capture.test).sum()),
            "test": int(capture.test.sum()), "width": w, "height": h, "has_alpha": capture.alpha is not None,
            "object_frame": capture.frame.to_dict(), "warnings": capture.warnings,
            "cameras": [{"name": n, "transform_matrix": c.tolist(),
                         "fl_x": k[0], "fl_y": k[1], "cx": k[2], "cy": k[3], "camera_model": camera_model(f, d),
                         **dict(zip(DISTORTION_KEYS, d)), "test": bool(t)}
                        for n, c, k, d, f, t in zip(capture.names, world, capture.intrinsics.tolist(),
                                                    capture.distortion.tolist(), capture.fisheye.tolist(), capture.test)]}
