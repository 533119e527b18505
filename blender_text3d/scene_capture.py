"""Captures in Blender: render objects from an orbit of cameras into a capture folder, and
import a capture's cameras. The capture format and the orbit are captures.py's (no bpy).
"""
from __future__ import annotations

import math
from pathlib import Path

import bpy
from mathutils import Matrix, Vector

from . import captures

# Object types whose geometry renders; the capture's bounds are theirs.
GEOMETRY_TYPES = {"MESH", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME", "GPENCIL",
                  "GREASEPENCIL"}
RENDER_ENGINES = {"WORKBENCH": "BLENDER_WORKBENCH", "CYCLES": "CYCLES"}
LAYOUTS = ("sphere", "ring")
# A field of view like the NeRF-synthetic scenes' (~40 degrees): little perspective distortion,
# and the object still fills the frame.
FOV_DEG = 40.0
SENSOR_WIDTH = 36.0  # mm, Blender's default full-frame sensor
CAMERA_NAME = "Text3D capture"


class NothingToCapture(ValueError):
    """The objects cannot make a capture (none with geometry, or no size); the message says why."""


def world_bounds(objects) -> tuple[Vector, Vector]:
    """The world box of the objects' evaluated bounding boxes (conservative for rotated objects)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    corners = []
    for obj in objects:
        if obj.type in GEOMETRY_TYPES:
            evaluated = obj.evaluated_get(depsgraph)
            corners += [evaluated.matrix_world @ Vector(c) for c in evaluated.bound_box]
    if not corners:
        raise NothingToCapture("no selected object has geometry to render: select mesh, curve or text objects")
    lo = Vector([min(c[i] for c in corners) for i in range(3)])
    hi = Vector([max(c[i] for c in corners) for i in range(3)])
    if (hi - lo).length < 1e-6:
        raise NothingToCapture("the selected objects have no size (empty or collapsed geometry)")
    return lo, hi


class _Changes:
    """Attribute changes to undo, so the scene is left exactly as it was, even after an error."""

    def __init__(self) -> None:
        self._undo: list[tuple[object, list[tuple[str, object]]]] = []

    def set(self, owner, **values) -> None:
        """Set owner's attributes in the given order; restore() puts the old values back in the same
        order (which matters where one setting limits another: file format before colour depth)."""
        self._undo.append((owner, [(name, getattr(owner, name)) for name in values]))
        for name, value in values.items():
            setattr(owner, name, value)

    def keep(self, owner, *names: str) -> None:
        """Remember attributes to restore that change later: set directly (in a loop) or reset as a
        side effect of another change (the look, by a view transform change)."""
        self._undo.append((owner, [(name, getattr(owner, name)) for name in names]))

    def restore(self) -> None:
        for owner, old in reversed(self._undo):
            for name, value in old:
                setattr(owner, name, value)
        self._undo.clear()


def render_capture(context, objects, folder: str | Path, views: int = 24, size: int = 256,
                   engine: str = "WORKBENCH", samples: int = 16, layout: str = "sphere") -> Path:
    """Render the objects (only them) from `views` cameras around their bounding sphere into
    folder/images/frame_NNN.png (RGBA, transparent background) and write folder/transforms.json.

    The scene's render settings, camera and object visibility are restored afterwards, and the
    temporary camera removed, whatever happens. Returns the folder.
    """
    if engine not in RENDER_ENGINES:
        raise ValueError(f"unknown render engine {engine!r}; use {' or '.join(RENDER_ENGINES)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown orbit layout {layout!r}; use {' or '.join(LAYOUTS)}")
    if views < 1 or size < 8:
        raise ValueError(f"a capture needs at least 1 view of at least 8 px (got {views} views of {size} px)")
    # 1. Where the objects are, and the cameras around them.
    lo, hi = world_bounds(objects)
    centre, radius = (lo + hi) / 2, (hi - lo).length / 2
    fov = math.radians(FOV_DEG)
    matrices = captures.orbit(tuple(centre), radius, views, fov, layout)
    distance = captures.fit_distance(radius, fov)
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    digits = max(3, len(str(views - 1)))
    file_paths = [f"images/frame_{i:0{digits}d}.png" for i in range(views)]

    scene = context.scene
    data = bpy.data.cameras.new(CAMERA_NAME)
    camera = bpy.data.objects.new(CAMERA_NAME, data)
    changes = _Changes()
    wm = context.window_manager
    try:
        # 2. A camera that sees the whole bounding sphere from every view.
        data.sensor_fit, data.angle = "AUTO", fov  # square images: the angle is both ways
        data.clip_start, data.clip_end = max(1e-3, (distance - radius) / 10), (distance + radius) * 2
        scene.collection.objects.link(camera)
        changes.set(scene, camera=camera)
        # 3. Only the objects render (lights stay: Cycles needs them; they do not show), on a
        # transparent film, colours as the materials have them (Standard view), no compositing.
        keep = set(objects)
        for obj in scene.objects:
            if obj not in keep and obj.type not in ("LIGHT", "CAMERA") and not obj.hide_render:
                changes.set(obj, hide_render=True)
        render = scene.render
        changes.set(render, engine=RENDER_ENGINES[engine], resolution_x=size, resolution_y=size,
                    resolution_percentage=100, pixel_aspect_x=1.0, pixel_aspect_y=1.0, use_border=False,
                    film_transparent=True, use_compositing=False, use_sequencer=False, use_stamp=False)
        image = render.image_settings
        if hasattr(image, "media_type"):  # Blender 5.0: the file format is chosen within a media type
            changes.set(image, media_type="IMAGE")
        changes.set(image, file_format="PNG", color_mode="RGBA", color_depth="8")
        changes.keep(scene.view_settings, "look")
        changes.set(scene.view_settings, view_transform="Standard")
        if engine == "CYCLES":
            changes.set(scene.cycles, samples=samples)
        else:
            # Workbench: the materials' colours under flat light, i.e. the albedo the engine bakes
            # (studio lighting would be baked into the mesh's colours and lit again in Blender).
            changes.set(scene.display.shading, light="FLAT", color_type="MATERIAL")
        # 4. One render per view; the matrix written is the one the render used, read back after
        # the depsgraph has recomposed it from location, rotation and scale.
        written = []
        changes.keep(render, "filepath")
        wm.progress_begin(0, views)
        for i, (matrix, file_path) in enumerate(zip(matrices, file_paths)):
            camera.matrix_world = Matrix(matrix)
            context.view_layer.update()
            render.filepath = str(folder / file_path)
            if bpy.ops.render.render(write_still=True) != {"FINISHED"}:
                raise RuntimeError(f"rendering view {i} was cancelled")
            written.append([list(row) for row in camera.matrix_world])
            wm.progress_update(i + 1)
    finally:
        wm.progress_end()
        changes.restore()
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(data)
    # 5. The cameras, as nerfstudio / instant-ngp read them, and the objects' box for the engine.
    transforms = captures.transforms(file_paths, written, size, size, fov, bounds=(tuple(lo), tuple(hi)))
    captures.write_transforms(folder, transforms)
    return folder


def import_cameras(path: str | Path, parent: bpy.types.Collection) -> bpy.types.Collection:
    """A new collection in parent, named after the capture, with one camera per frame.

    Each camera has the frame's matrix_world, a lens from its focal length and a shift from its
    principal point (horizontal sensor fit, so both are in units of the image width); non-square
    pixels (fx != fy) are Blender's render pixel aspect, which is left alone. The capture is read
    in full first: a bad one raises captures.CaptureError and adds nothing.
    """
    cameras = captures.read_cameras(path)
    collection = bpy.data.collections.new(captures.capture_name(path))
    parent.children.link(collection)
    for cam in cameras:
        data = bpy.data.cameras.new(cam.name)
        data.sensor_fit, data.sensor_width = "HORIZONTAL", SENSOR_WIDTH
        data.lens = cam.fx * SENSOR_WIDTH / cam.width
        data.shift_x = (cam.width / 2 - cam.cx) / cam.width
        data.shift_y = (cam.cy - cam.height / 2) / cam.width  # cy counts down from the top
        obj = bpy.data.objects.new(cam.name, data)
        obj.matrix_world = Matrix(cam.matrix)
        obj["text3d_image"] = str(cam.image)
        obj["text3d_size"] = [cam.width, cam.height]
        collection.objects.link(obj)
    return collection
