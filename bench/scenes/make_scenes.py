"""Benchmark scenes for reconstruction, built procedurally and rendered with Cycles (no downloaded assets).

    ~/.local/share/text3d/blender-venv/bin/python bench/scenes/make_scenes.py [--out DIR]

DIR (default ~/.cache/text3d/bench_scenes) gets three captures:

- synthetic360/  NeRF-synthetic layout: one finely detailed, textured object centred at the origin
  (inside [-0.8, 0.8]^3), RGBA PNGs on a transparent film, 100 x 100 px; 90 training views at
  seeded random places on the upper hemisphere (radius 4, 40 degree field of view), the first 8
  of them spread evenly (8 azimuths at 2 elevations), and 10 held-out views elsewhere
  (transforms_train.json, transforms_test.json, and transforms_val.json = the held-out views for
  tools that want a val split).
- synthetic8/    the same scene, its first 8 training views only and the same 10 held-out views
  (images copied, not rendered again).
- photo/         a phone-like capture: the same object on a textured table in a cluttered room,
  opaque RGB PNGs, 48 frames orbiting at a phone's height with hand-held jitter, portrait
  135 x 240, nerfstudio transforms.json with camera_model OPENCV and the lens distortion
  (k1, k2, p1, p2) applied to the images; bench_truth.json beside it holds the object's true
  world bounding box and the distortion. transforms.json has no text3d_bounds (a phone capture
  has none).

The photo's distortion: every frame is rendered undistorted at twice the resolution with a
field of view wide enough to cover the distorted frame's corners; each output pixel's 2 x 2
sub-pixels are mapped to undistorted normalised coordinates (Newton's method on the OpenCV
radial-tangential model), the render is sampled bilinearly there in linear light, and the
sub-pixels are averaged. A self-check distorts the solved coordinates back and compares them
with the pixel grid.

Renders run on the CPU, one thread by default (the whole process is pinned to one core; the
machines are shared), under `nice` if you like. stdout gets one JSON summary (per scene: path,
frames, size, seconds, bytes); progress and the lens self-check go to stderr. DIR also gets
photo_undistorted_frame_00001.png, the photo's first frame as rendered before distortion, to
compare with photo/images/frame_00001.png. Everything is seeded: a rerun gives the same files.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path


def parse_args(argv=None) -> argparse.Namespace:
    if argv is None:  # arguments after "--" when run by blender --python, else all of them
        argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser(description="Render Text3D's benchmark scenes for reconstruction.")
    p.add_argument("--out", default="~/.cache/text3d/bench_scenes", help="where the captures go")
    p.add_argument("--only", choices=("synthetic", "photo"), help="make one of the two renders only")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (default 1: the process is pinned to one core, Cycles and its denoiser too)")
    return p.parse_args(argv)


def pin_threads(threads: int) -> None:
    """Keep the whole process (Cycles, OpenImageDenoise's thread pool, image loading) on `threads`
    cores; done before bpy is imported, so that its thread pools size themselves to the mask."""
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if threads < len(cpus):
            os.sched_setaffinity(0, set(cpus[-threads:]))


def stdout_for_json():
    """The real stdout, kept for the JSON summary; file descriptor 1 then goes to stderr, so that
    what Blender and Cycles print (at import already) does not mix with the summary."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return real


if __name__ == "__main__":
    ARGS = parse_args()
    pin_threads(ARGS.threads)
    SUMMARY_OUT = stdout_for_json()

import bpy  # noqa: E402, I001  (bpy first: bmesh and mathutils exist once it is imported)
import bmesh  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix, Vector  # noqa: E402

THREADS = ARGS.threads if __name__ == "__main__" else 1

SEED = 13
# synthetic360
SYN_SIZE = 100
SYN_TRAIN, SYN_TEST = 90, 10
SYN_RADIUS = 4.0
SYN_FOV_DEG = 40.0
SYN_SAMPLES = 64
FEW = 8  # synthetic8: the first FEW training views
# photo
PHOTO_W, PHOTO_H = 135, 240
PHOTO_FRAMES = 48
PHOTO_FX = PHOTO_FY = 145.0  # ~50 degrees across the short (horizontal) side, like a phone's main camera
PHOTO_CX, PHOTO_CY = 68.1, 119.4  # a principal point a little off centre, as calibrations find
DISTORTION = {"k1": -0.12, "k2": 0.03, "p1": 0.001, "p2": -0.0008}
SUPER = 2  # undistorted render and distorted sub-pixel grid at 2x
PHOTO_SAMPLES = 4  # + OpenImageDenoise, and the 2x2 sub-pixel average: 16 per output pixel
TABLE_TOP = 0.75


# ----------------------------------------------------------------------------------------------
# Scene building blocks
# ----------------------------------------------------------------------------------------------

def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def link(obj, parent=None):
    bpy.context.scene.collection.objects.link(obj)
    if parent is not None:
        obj.parent = parent
    return obj


def mesh_object(name: str, build, material=None, parent=None, location=(0, 0, 0), rotation=(0, 0, 0),
                scale=(1, 1, 1), smooth=False):
    """A mesh object from a bmesh builder function build(bm)."""
    bm = bmesh.new()
    build(bm)
    me = bpy.data.meshes.new(name)
    bm.to_mesh(me)
    bm.free()
    if smooth:
        me.shade_smooth()
    obj = bpy.data.objects.new(name, me)
    obj.location, obj.rotation_euler, obj.scale = location, rotation, scale
    if material is not None:
        me.materials.append(material)
    return link(obj, parent)


def cube(sx, sy, sz):
    def build(bm):
        bmesh.ops.create_cube(bm, size=1.0, matrix=Matrix.Diagonal((sx, sy, sz, 1.0)))
    return build


def cylinder(radius, depth, segments=32, radius2=None):
    def build(bm):
        bmesh.ops.create_cone(bm, cap_ends=True, cap_tris=False, segments=segments, radius1=radius,
                              radius2=radius if radius2 is None else radius2, depth=depth)
    return build


def sphere(radius, u=32, v=16):
    def build(bm):
        bmesh.ops.create_uvsphere(bm, u_segments=u, v_segments=v, radius=radius)
    return build


def material(name: str, colour, roughness: float = 0.8, specular: float = 0.25):
    """Principled BSDF, rough and weakly specular (the engine models albedo without view dependence).
    colour: an RGB tuple, or a function (nodes, links) -> a colour output socket."""
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = nodes["Principled BSDF"]
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Specular IOR Level"].default_value = specular
    if callable(colour):
        links.new(colour(nodes, links), bsdf.inputs["Base Color"])
    else:
        bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
    return mat


def emission_material(name: str, colour, strength: float):
    mat = bpy.data.materials.new(name)
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    nodes.remove(nodes["Principled BSDF"])
    em = nodes.new("ShaderNodeEmission")
    em.inputs["Color"].default_value = (*colour, 1.0)
    em.inputs["Strength"].default_value = strength
    links.new(em.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    return mat


def coords(nodes, kind="Object"):
    return nodes.new("ShaderNodeTexCoord").outputs[kind]


def checker(c1, c2, scale, kind="Object"):
    def f(nodes, links):
        t = nodes.new("ShaderNodeTexChecker")
        t.inputs["Color1"].default_value, t.inputs["Color2"].default_value = (*c1, 1), (*c2, 1)
        t.inputs["Scale"].default_value = scale
        links.new(coords(nodes, kind), t.inputs["Vector"])
        return t.outputs["Color"]
    return f


def ramp(nodes, links, fac, stops):
    r = nodes.new("ShaderNodeValToRGB")
    els = r.color_ramp.elements
    while len(els) < len(stops):
        els.new(0.5)
    for el, (pos, col) in zip(els, stops):
        el.position, el.color = pos, (*col, 1.0)
    links.new(fac, r.inputs["Fac"])
    return r.outputs["Color"]


def noise_ramp(scale, stops, detail=4.0, kind="Object"):
    def f(nodes, links):
        t = nodes.new("ShaderNodeTexNoise")
        t.inputs["Scale"].default_value, t.inputs["Detail"].default_value = scale, detail
        links.new(coords(nodes, kind), t.inputs["Vector"])
        return ramp(nodes, links, t.outputs["Fac"], stops)
    return f


def bricks(c1, c2, mortar, scale, kind="Object", brick_width=0.5, row_height=0.25):
    def f(nodes, links):
        t = nodes.new("ShaderNodeTexBrick")
        t.inputs["Color1"].default_value, t.inputs["Color2"].default_value = (*c1, 1), (*c2, 1)
        t.inputs["Mortar"].default_value = (*mortar, 1)
        t.inputs["Scale"].default_value = scale
        t.inputs["Brick Width"].default_value, t.inputs["Row Height"].default_value = brick_width, row_height
        t.inputs["Mortar Size"].default_value = 0.03
        t.offset, t.squash = 0.5, 1.0
        links.new(coords(nodes, kind), t.inputs["Vector"])
        return t.outputs["Color"]
    return f


def waves(scale, stops, distortion=4.0, kind="Object", bands="X"):
    def f(nodes, links):
        t = nodes.new("ShaderNodeTexWave")
        t.bands_direction = bands
        t.inputs["Scale"].default_value, t.inputs["Distortion"].default_value = scale, distortion
        t.inputs["Detail"].default_value = 3.0
        links.new(coords(nodes, kind), t.inputs["Vector"])
        return ramp(nodes, links, t.outputs["Fac"], stops)
    return f


def mix_colours(nodes, links, a, b, blend: str, factor: float):
    """A Mix node in colour mode (its sockets are found by identifier: every data type has an A and a B)."""
    mix = nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", blend
    mix.inputs["Factor"].default_value = factor
    ins = {s.identifier: s for s in mix.inputs}
    links.new(a, ins["A_Color"])
    links.new(b, ins["B_Color"])
    return {s.identifier: s for s in mix.outputs}["Result_Color"]


def random_hue(saturation=0.75, value=0.8):
    """A colour per object (Object Info's Random as hue): every pillar its own colour."""
    def f(nodes, links):
        info = nodes.new("ShaderNodeObjectInfo")
        comb = nodes.new("ShaderNodeCombineColor")
        comb.mode = "HSV"
        comb.inputs[1].default_value, comb.inputs[2].default_value = saturation, value
        links.new(info.outputs["Random"], comb.inputs[0])
        return comb.outputs["Color"]
    return f


# ----------------------------------------------------------------------------------------------
# The object: base plate, gear (radial Array modifier), subdivided Suzanne, a ring of thin
# pillars under a torus, a trefoil knot on top. Inside [-0.8, 0.8]^3 around its root.
# ----------------------------------------------------------------------------------------------

def build_object(location=(0.0, 0.0, 0.0)):
    root = link(bpy.data.objects.new("Object root", None))
    root.location = location
    parts = []

    plate_mat = material("plate", checker((0.85, 0.82, 0.75), (0.12, 0.25, 0.55), 6.0))
    parts.append(mesh_object("plate", cylinder(0.78, 0.08, 96), plate_mat, root, (0, 0, -0.76)))

    gear_mat = material("gear", waves(6.0, [(0.0, (0.75, 0.45, 0.08)), (0.5, (0.95, 0.8, 0.3)),
                                            (1.0, (0.45, 0.2, 0.05))], bands="X"))
    parts.append(mesh_object("gear hub", cylinder(0.42, 0.10, 64), gear_mat, root, (0, 0, -0.67)))
    pivot = link(bpy.data.objects.new("gear pivot", None), root)
    pivot.location = (0, 0, -0.67)
    teeth = 24
    pivot.rotation_euler = (0, 0, 2 * math.pi / teeth)
    tooth = mesh_object("gear teeth", cube(0.07, 0.05, 0.10), gear_mat, root, (0, 0, -0.67))
    bm_shift = Matrix.Translation((0.45, 0, 0))
    tooth.data.transform(bm_shift)
    arr = tooth.modifiers.new("radial", "ARRAY")
    arr.count, arr.use_relative_offset, arr.use_object_offset, arr.offset_object = teeth, False, True, pivot
    parts.append(tooth)

    monkey_mat = material("monkey", lambda nodes, links: _monkey_colour(nodes, links))
    monkey = mesh_object("suzanne", lambda bm: bmesh.ops.create_monkey(bm), monkey_mat, root,
                         (0, 0, -0.22), (0, 0, math.radians(-90)), (0.34, 0.34, 0.34), smooth=True)
    sub = monkey.modifiers.new("subdivide", "SUBSURF")
    sub.levels = sub.render_levels = 2
    parts.append(monkey)

    pillar_mat = material("pillars", random_hue())
    n_pillars, ring_r, top = 12, 0.66, 0.42
    for i in range(n_pillars):
        a = 2 * math.pi * (i + 0.5) / n_pillars
        parts.append(mesh_object(f"pillar {i}", cylinder(0.022, top + 0.72, 12), pillar_mat, root,
                                 (ring_r * math.cos(a), ring_r * math.sin(a), (top - 0.72) / 2), smooth=True))
    ring_mat = material("ring", noise_ramp(14.0, [(0.3, (0.05, 0.45, 0.2)), (0.5, (0.9, 0.9, 0.85)),
                                                   (0.7, (0.6, 0.05, 0.1))]))
    parts.append(mesh_object("ring", lambda bm: _torus(bm, ring_r, 0.035, 96, 12), ring_mat, root, (0, 0, top),
                             smooth=True))
    # Three spokes from the ring to the knot's stand.
    for i in range(3):
        a = 2 * math.pi * i / 3
        spoke = mesh_object(f"spoke {i}", cylinder(0.015, ring_r, 8), pillar_mat, root,
                            (0.5 * ring_r * math.cos(a), 0.5 * ring_r * math.sin(a), top),
                            (0, math.pi / 2, a), smooth=True)
        parts.append(spoke)

    knot_mat = material("knot", noise_ramp(8.0, [(0.25, (0.15, 0.05, 0.5)), (0.5, (0.95, 0.35, 0.1)),
                                                  (0.75, (0.95, 0.9, 0.2))], detail=2.0))
    parts.append(mesh_object("knot stand", cylinder(0.05, 0.14, 24, 0.15), pillar_mat, root, (0, 0, top + 0.07)))
    parts.append(_knot("knot", knot_mat, root, (0, 0, top + 0.22), 0.11, 0.028))
    return root, parts


def _monkey_colour(nodes, links):
    brick = bricks((0.7, 0.15, 0.1), (0.1, 0.5, 0.6), (0.95, 0.92, 0.85), 1.5)(nodes, links)
    noise = noise_ramp(5.0, [(0.35, (0.2, 0.6, 0.15)), (0.65, (0.95, 0.75, 0.2))])(nodes, links)
    return mix_colours(nodes, links, brick, noise, "MIX", 0.35)


def _torus(bm, major, minor, n_major, n_minor):
    verts = []
    for i in range(n_major):
        a = 2 * math.pi * i / n_major
        for j in range(n_minor):
            b = 2 * math.pi * j / n_minor
            r = major + minor * math.cos(b)
            verts.append(bm.verts.new((r * math.cos(a), r * math.sin(a), minor * math.sin(b))))
    for i in range(n_major):
        for j in range(n_minor):
            i2, j2 = (i + 1) % n_major, (j + 1) % n_minor
            bm.faces.new([verts[i * n_minor + j], verts[i2 * n_minor + j], verts[i2 * n_minor + j2],
                          verts[i * n_minor + j2]])


def _knot(name, mat, parent, location, scale, tube):
    """A trefoil knot: a cyclic poly curve with a round bevel."""
    curve = bpy.data.curves.new(name, "CURVE")
    curve.dimensions, curve.bevel_depth, curve.bevel_resolution = "3D", tube, 3
    spline = curve.splines.new("POLY")
    n = 180
    spline.points.add(n - 1)
    for i, p in enumerate(spline.points):
        t = 2 * math.pi * i / n
        x = math.sin(t) + 2 * math.sin(2 * t)
        y = math.cos(t) - 2 * math.cos(2 * t)
        z = -math.sin(3 * t)
        p.co = (scale * x, scale * y, scale * z * 0.8, 1.0)
    spline.use_cyclic_u = True
    curve.materials.append(mat)
    obj = bpy.data.objects.new(name, curve)
    obj.location = location
    return link(obj, parent)


def object_bounds(parts) -> list[list[float]]:
    """The true world box of the parts' evaluated geometry (modifiers and bevels applied)."""
    bpy.context.view_layer.update()
    depsgraph = bpy.context.evaluated_depsgraph_get()
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for obj in parts:
        ev = obj.evaluated_get(depsgraph)
        me = ev.to_mesh()
        co = np.empty(len(me.vertices) * 3, np.float64)
        me.vertices.foreach_get("co", co)
        ev.to_mesh_clear()
        m = np.array(ev.matrix_world)
        w = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
        lo, hi = np.minimum(lo, w.min(0)), np.maximum(hi, w.max(0))
    return [[round(float(x), 5) for x in lo], [round(float(x), 5) for x in hi]]


# ----------------------------------------------------------------------------------------------
# Cameras and rendering
# ----------------------------------------------------------------------------------------------

def look_at(eye, target, roll: float = 0.0) -> Matrix:
    """Camera-to-world: Blender's camera at eye looking down -Z at target, +Y up (then rolled)."""
    eye, target = Vector(eye), Vector(target)
    forward = (target - eye).normalized()
    right = forward.cross(Vector((0, 0, 1)))
    if right.length < 1e-6:
        right = forward.cross(Vector((0, 1, 0)))
    right.normalize()
    up = right.cross(forward)
    m = Matrix((right, up, -forward)).transposed().to_4x4()
    m.translation = eye
    return m @ Matrix.Rotation(roll, 4, "Z")


def setup_render(samples: int, transparent: bool, size, bounces=(4, 2, 1), prefilter: str = "ACCURATE") -> None:
    scene = bpy.context.scene
    r = scene.render
    r.engine = "CYCLES"
    r.threads_mode, r.threads = "FIXED", THREADS
    r.resolution_x, r.resolution_y, r.resolution_percentage = size[0], size[1], 100
    r.film_transparent = transparent
    r.use_compositing = r.use_sequencer = False
    r.dither_intensity = 0.0
    scene.view_settings.view_transform, scene.view_settings.look = "Standard", "None"
    c = scene.cycles
    c.device = "CPU"
    c.samples, c.use_adaptive_sampling, c.adaptive_threshold = samples, True, 0.02
    c.use_denoising = True
    try:
        c.denoiser = "OPENIMAGEDENOISE"
        c.denoising_input_passes = "RGB_ALBEDO_NORMAL"
        c.denoising_prefilter = prefilter  # FAST: the guiding passes are not denoised first (cheaper)
    except TypeError:  # no OIDN in this build: more samples instead
        c.use_denoising, c.samples = False, samples * 4
    c.max_bounces, c.diffuse_bounces, c.glossy_bounces = bounces
    c.transmission_bounces, c.volume_bounces, c.transparent_max_bounces = 0, 0, 4
    c.caustics_reflective = c.caustics_refractive = False
    c.sample_clamp_indirect = 5.0
    c.seed = 0


def render_to(path: Path, file_format: str, color_mode: str, depth: str) -> None:
    s = bpy.context.scene.render.image_settings
    if hasattr(s, "media_type"):  # Blender 5.0: the format is chosen within a media type
        s.media_type = "IMAGE"
    s.file_format, s.color_mode, s.color_depth = file_format, color_mode, depth
    bpy.context.scene.render.filepath = str(path)
    with quiet_stdout():
        finished = bpy.ops.render.render(write_still=True) == {"FINISHED"}
    if not finished:
        raise RuntimeError(f"render of {path} did not finish")
    if file_format == "PNG":
        strip_png_text(path)


def strip_png_text(path: Path) -> None:
    """Drop a PNG's text chunks: Blender and Cycles write the date and render times there, which
    would make every rerun's files differ."""
    data = path.read_bytes()
    out, i = [data[:8]], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        if data[i + 4:i + 8] not in (b"tEXt", b"iTXt", b"zTXt"):
            out.append(data[i:i + 12 + n])
        i += 12 + n
    path.write_bytes(b"".join(out))


@contextlib.contextmanager
def quiet_stdout():
    """Blender's render log (a line per tile and "Saved: ...") silenced; progress goes to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def new_camera(name="camera"):
    data = bpy.data.cameras.new(name)
    cam = link(bpy.data.objects.new(name, data))
    bpy.context.scene.camera = cam
    return cam


def matrix_rows(obj) -> list[list[float]]:
    bpy.context.view_layer.update()
    return [[float(x) for x in row] for row in obj.matrix_world]


# ----------------------------------------------------------------------------------------------
# synthetic360 and synthetic8
# ----------------------------------------------------------------------------------------------

def hemisphere_directions(rng, n, elev_lo=3.0, elev_hi=85.0):
    """n directions uniform in area on the upper hemisphere between two elevations (degrees)."""
    z = rng.uniform(math.sin(math.radians(elev_lo)), math.sin(math.radians(elev_hi)), n)
    a = rng.uniform(0, 2 * math.pi, n)
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(a), r * np.sin(a), z], 1)


def synthetic_views():
    rng = np.random.default_rng(SEED)
    spread = []
    for i in range(FEW):  # the first 8: 8 azimuths, alternating 20 and 50 degrees of elevation
        a, e = math.radians(22.5 + 45 * i), math.radians(20 if i % 2 == 0 else 50)
        spread.append((math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)))
    train = np.concatenate([np.array(spread), hemisphere_directions(rng, SYN_TRAIN - FEW)])
    test = []
    min_cos = math.cos(math.radians(5.0))  # held-out views at least 5 degrees from every training view
    while len(test) < SYN_TEST:
        d = hemisphere_directions(rng, 1)[0]
        if (train @ d).max() < min_cos:
            test.append(d)
    return train * SYN_RADIUS, np.array(test) * SYN_RADIUS


def make_synthetic(out: Path) -> dict:
    t0 = time.time()
    reset()
    _, parts = build_object()
    bounds = object_bounds(parts)
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    world.color = (0.45, 0.47, 0.5)  # soft ambient light (the film is transparent)
    bg = world.node_tree.nodes["Background"] if world.node_tree else None
    if bg is not None:
        bg.inputs["Color"].default_value, bg.inputs["Strength"].default_value = (0.45, 0.47, 0.5, 1), 1.0
    sun = bpy.data.lights.new("sun", "SUN")
    sun.energy, sun.angle = 2.5, math.radians(30)
    sun_obj = link(bpy.data.objects.new("sun", sun))
    sun_obj.rotation_euler = (math.radians(35), math.radians(10), math.radians(30))
    setup_render(SYN_SAMPLES, True, (SYN_SIZE, SYN_SIZE))
    cam = new_camera()
    cam.data.sensor_fit, cam.data.angle = "AUTO", math.radians(SYN_FOV_DEG)
    cam.data.clip_start, cam.data.clip_end = 0.1, 20.0

    full = out / "synthetic360"
    if full.exists():
        shutil.rmtree(full)
    train, test = synthetic_views()
    splits = {}
    for split, eyes in (("train", train), ("test", test)):
        frames = []
        for i, eye in enumerate(eyes):
            cam.matrix_world = look_at(eye, (0, 0, 0))
            render_to(full / split / f"r_{i}.png", "PNG", "RGBA", "8")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": matrix_rows(cam)})
            log(f"synthetic360 {split} view {i + 1}/{len(eyes)}: {time.time() - t0:.1f} s")
        splits[split] = frames
    angle = math.radians(SYN_FOV_DEG)
    write_json(full / "transforms_train.json", {"camera_angle_x": angle, "frames": splits["train"]})
    for name in ("transforms_test.json", "transforms_val.json"):
        write_json(full / name, {"camera_angle_x": angle, "frames": splits["test"]})
    seconds = time.time() - t0

    few = out / "synthetic8"
    if few.exists():
        shutil.rmtree(few)
    (few / "train").mkdir(parents=True)
    shutil.copytree(full / "test", few / "test")
    for i in range(FEW):
        shutil.copy2(full / "train" / f"r_{i}.png", few / "train" / f"r_{i}.png")
    write_json(few / "transforms_train.json", {"camera_angle_x": angle, "frames": splits["train"][:FEW]})
    for name in ("transforms_test.json", "transforms_val.json"):
        write_json(few / name, {"camera_angle_x": angle, "frames": splits["test"]})
    truth = {"object_bounds": bounds, "note": "the object is built around the origin (its plate at the bottom)"}
    write_json(full / "bench_truth.json", truth)
    write_json(few / "bench_truth.json", truth)
    return {"synthetic360": {"path": str(full), "frames": f"{SYN_TRAIN} train + {SYN_TEST} test",
                             "size": [SYN_SIZE, SYN_SIZE], "seconds": round(seconds, 1),
                             "bytes": folder_bytes(full), "object_bounds": bounds},
            "synthetic8": {"path": str(few), "frames": f"{FEW} train + {SYN_TEST} test", "size": [SYN_SIZE, SYN_SIZE],
                           "seconds": 0.0, "bytes": folder_bytes(few), "copied_from": "synthetic360"}}


# ----------------------------------------------------------------------------------------------
# photo: the lens model and the room
# ----------------------------------------------------------------------------------------------

def distort(x, y, k1, k2, p1, p2):
    """OpenCV radial-tangential: undistorted normalised (x, y) -> distorted."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def undistort(xd, yd, k1, k2, p1, p2, iterations: int = 20):
    """Distorted normalised (xd, yd) -> undistorted, by Newton's method on distort (x, y) = (xd, yd)."""
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        fx, fy = distort(x, y, k1, k2, p1, p2)
        ex, ey = fx - xd, fy - yd
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dradial = 2 * k1 + 4 * k2 * r2  # d(radial)/d(r2) * 2
        # Jacobian of distort
        a = radial + x * dradial * x + 2 * p1 * y + 6 * p2 * x
        b = x * dradial * y + 2 * p1 * x + 2 * p2 * y
        c = y * dradial * x + 2 * p1 * x + 2 * p2 * y
        d = radial + y * dradial * y + 6 * p1 * y + 2 * p2 * x
        det = a * d - b * c
        x, y = x - (d * ex - b * ey) / det, y - (a * ey - c * ex) / det
    return x, y


def photo_lens():
    """The distorted frame's sub-pixel grid solved to undistorted normalised coordinates, the
    undistorted render's size (2x focal length, wide enough for the corners) and the self-check."""
    k = DISTORTION
    u = (np.arange(PHOTO_W * SUPER) + 0.5) / SUPER  # sub-pixel centres, pixels from the left edge
    v = (np.arange(PHOTO_H * SUPER) + 0.5) / SUPER  # ... from the top edge (v points down)
    uu, vv = np.meshgrid(u, v)
    xd, yd = (uu - PHOTO_CX) / PHOTO_FX, (vv - PHOTO_CY) / PHOTO_FY
    xu, yu = undistort(xd, yd, **k)
    # Self-check: distort the solution again and compare with the pixel grid.
    xr, yr = distort(xu, yu, **k)
    err = float(max(np.abs(xr * PHOTO_FX + PHOTO_CX - uu).max(), np.abs(yr * PHOTO_FY + PHOTO_CY - vv).max()))
    # Corners of the output pixels themselves (not only their centres) must be covered too.
    edge_u = np.concatenate([np.linspace(0, PHOTO_W, 200), np.full(200, 0.0), np.full(200, PHOTO_W),
                             np.linspace(0, PHOTO_W, 200)])
    edge_v = np.concatenate([np.full(200, 0.0), np.linspace(0, PHOTO_H, 200), np.linspace(0, PHOTO_H, 200),
                             np.full(200, PHOTO_H)])
    ex, ey = undistort((edge_u - PHOTO_CX) / PHOTO_FX, (edge_v - PHOTO_CY) / PHOTO_FY, **k)
    f_render = SUPER * PHOTO_FX
    half_w = max(np.abs(ex).max(), np.abs(xu).max()) * f_render + 2  # 2 px margin for bilinear
    half_h = max(np.abs(ey).max(), np.abs(yu).max()) * f_render + 2
    render_w, render_h = 2 * math.ceil(half_w), 2 * math.ceil(half_h)
    return xu, yu, f_render, (render_w, render_h), err


def bilinear(img, px, py):
    """img (H, W, C) sampled at continuous pixel coordinates (px right, py down; pixel centres at +0.5)."""
    h, w = img.shape[:2]
    x, y = np.clip(px - 0.5, 0, w - 1.000001), np.clip(py - 0.5, 0, h - 1.000001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    return ((img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx) * (1 - fy)
            + (img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx) * fy)


def load_linear(path: Path) -> np.ndarray:
    """An EXR render as a (H, W, 3) linear array, top row first."""
    img = bpy.data.images.load(str(path))
    w, h = img.size
    px = np.empty(w * h * 4, np.float32)
    img.pixels.foreach_get(px)
    bpy.data.images.remove(img)
    return px.reshape(h, w, 4)[::-1, :, :3].astype(np.float64)


def srgb8(linear: np.ndarray) -> np.ndarray:
    """Blender's Standard view transform (sRGB encoding, clipped) to 8 bits."""
    c = np.clip(linear, 0, 1)
    s = np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.power(c, 1 / 2.4) - 0.055)
    return np.round(s * 255).astype(np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """An 8-bit RGB PNG (no Pillow needed)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def build_room():
    """A 10 x 10 x 3.4 m room with wallpaper, a wooden floor, a window, a door, shelves, boxes and a
    table (top at TABLE_TOP) under the object."""
    half, height = 5.0, 3.4
    wallpaper = material("wallpaper", lambda n, l: _wallpaper(n, l), roughness=0.9, specular=0.2)
    wallpaper2 = material("wallpaper 2", bricks((0.55, 0.62, 0.5), (0.5, 0.58, 0.47), (0.85, 0.85, 0.8), 1.2,
                                                brick_width=0.6, row_height=0.3), roughness=0.9, specular=0.2)
    floor_mat = material("floor", waves(1.5, [(0.0, (0.25, 0.13, 0.06)), (0.5, (0.5, 0.3, 0.14)),
                                              (1.0, (0.35, 0.2, 0.09))], distortion=8.0, bands="Y"))
    ceiling_mat = material("ceiling", bricks((0.85, 0.85, 0.82), (0.8, 0.8, 0.78), (0.55, 0.55, 0.55), 1.0,
                                             brick_width=0.6, row_height=0.6), roughness=1.0, specular=0.1)
    skirting = material("skirting", (0.92, 0.92, 0.9))
    mesh_object("floor", cube(2 * half, 2 * half, 0.1), floor_mat, location=(0, 0, -0.05))
    mesh_object("ceiling", cube(2 * half, 2 * half, 0.1), ceiling_mat, location=(0, 0, height + 0.05))
    # Walls: each one's local X runs along it, so the (object-space) wallpaper stripes stand upright.
    for i, (x, y, rot) in enumerate([(half + 0.05, 0, math.pi / 2), (-half - 0.05, 0, math.pi / 2),
                                     (0, half + 0.05, 0.0), (0, -half - 0.05, 0.0)]):
        mesh_object(f"wall {i}", cube(2 * half, 0.1, height), wallpaper if i % 2 == 0 else wallpaper2,
                    location=(x, y, height / 2), rotation=(0, 0, rot))
        mesh_object(f"skirting {i}", cube(2 * half - 0.1, 0.12, 0.12), skirting,
                    location=(x * 0.99, y * 0.99, 0.06), rotation=(0, 0, rot))
    # Window on the +y wall: a bright pane behind white frame bars, and light coming in.
    glow = emission_material("window", (0.9, 0.95, 1.0), 3.0)
    wx, wz = 2.3, 1.7  # the window's centre, off to one side of the object seen from the -y side
    mesh_object("window", cube(2.0, 0.02, 1.4), glow, location=(wx, half - 0.02, wz))
    frame_mat = material("window frame", (0.95, 0.95, 0.95))
    for (x, z, sx, sz) in [(0, 0.72, 2.1, 0.06), (0, -0.72, 2.1, 0.06), (-1.02, 0, 0.06, 1.5),
                           (1.02, 0, 0.06, 1.5), (0, 0, 0.05, 1.4), (0, 0, 2.0, 0.04)]:
        mesh_object("window bar", cube(sx, 0.06, sz), frame_mat, location=(wx + x, half - 0.05, wz + z))
    door = material("door", waves(3.0, [(0.0, (0.35, 0.18, 0.1)), (1.0, (0.45, 0.25, 0.12))], bands="Z"))
    mesh_object("door", cube(0.05, 0.95, 2.05), door, location=(-half + 0.03, -1.5, 1.025))
    # Furniture and clutter around the walls, and small things on the table.
    shelf = material("shelf", (0.3, 0.22, 0.16))
    mesh_object("shelf", cube(0.4, 1.6, 2.0), shelf, location=(half - 0.25, 1.8, 1.0))
    book_colours = [(0.7, 0.1, 0.1), (0.1, 0.3, 0.7), (0.9, 0.7, 0.1), (0.1, 0.5, 0.2), (0.6, 0.3, 0.6)]
    for row in range(3):
        for j in range(6):
            c = book_colours[(row * 7 + j * 3) % len(book_colours)]
            mesh_object("book", cube(0.3, 0.16, 0.32 + 0.04 * ((j + row) % 3)), material(f"book {row} {j}", c),
                        location=(half - 0.45, 1.2 + 0.22 * j, 0.55 + 0.62 * row))
    box_mats = [material("cardboard", noise_ramp(20.0, [(0.3, (0.45, 0.3, 0.15)), (0.7, (0.6, 0.42, 0.22))])),
                material("crate", checker((0.8, 0.2, 0.15), (0.9, 0.85, 0.8), 6.0)),
                material("blue box", (0.15, 0.3, 0.6))]
    for i, (x, y, s, rot) in enumerate([(-4.2, 4.1, 0.7, 0.3), (-4.3, 3.3, 0.5, -0.2), (-4.2, 4.1, 0.45, 0.5),
                                        (3.9, -4.2, 0.8, 0.1), (3.0, -4.4, 0.5, 0.7), (-3.6, -4.0, 0.6, -0.4),
                                        (0.5, 4.3, 0.5, 0.2)]):
        z = s / 2 + (0.7 if i == 2 else 0.0)
        mesh_object(f"box {i}", cube(s, s * 1.2, s), box_mats[i % 3], location=(x, y, z), rotation=(0, 0, rot))
    sofa = material("sofa", noise_ramp(30.0, [(0.4, (0.35, 0.1, 0.12)), (0.6, (0.45, 0.15, 0.15))]))
    mesh_object("sofa seat", cube(2.4, 0.9, 0.45), sofa, location=(-1.0, -4.45, 0.225))
    mesh_object("sofa back", cube(2.4, 0.25, 0.9), sofa, location=(-1.0, -4.85, 0.45))
    pot = material("pot", (0.7, 0.35, 0.2))
    leaves = material("leaves", noise_ramp(10.0, [(0.3, (0.05, 0.25, 0.05)), (0.7, (0.2, 0.5, 0.1))]))
    mesh_object("pot", cylinder(0.25, 0.5, 24, 0.18), pot, location=(4.2, -2.5, 0.25))
    mesh_object("plant", sphere(0.45), leaves, location=(4.2, -2.5, 0.9), smooth=True)
    mesh_object("lamp pole", cylinder(0.03, 1.7, 12), material("metal", (0.2, 0.2, 0.22), 0.5),
                location=(-4.3, 1.5, 0.85))
    mesh_object("lamp shade", cylinder(0.3, 0.35, 24, 0.18), material("shade", (0.95, 0.9, 0.75)),
                location=(-4.3, 1.5, 1.75))
    # The table: a wooden top on four legs; a mug and two books near its corners.
    wood = material("table", waves(4.0, [(0.0, (0.55, 0.35, 0.18)), (0.5, (0.75, 0.52, 0.3)),
                                         (1.0, (0.45, 0.27, 0.12))], distortion=6.0, bands="X"))
    mesh_object("table top", cube(2.6, 2.2, 0.06), wood, location=(0, 0, TABLE_TOP - 0.03))
    for sx in (-1, 1):
        for sy in (-1, 1):
            mesh_object("table leg", cube(0.08, 0.08, TABLE_TOP - 0.06), wood,
                        location=(sx * 1.2, sy * 1.0, (TABLE_TOP - 0.06) / 2))
    mesh_object("mug", cylinder(0.07, 0.16, 24), material("mug", (0.9, 0.9, 0.2)),
                location=(1.1, -0.9, TABLE_TOP + 0.08))
    mesh_object("book on table", cube(0.3, 0.22, 0.05), material("table book", (0.2, 0.2, 0.7)),
                location=(-1.05, 0.85, TABLE_TOP + 0.025), rotation=(0, 0, 0.4))
    # Light: a ceiling panel, the window's light, dim ambient.
    panel = bpy.data.lights.new("ceiling light", "AREA")
    panel.shape, panel.size, panel.size_y, panel.energy = "RECTANGLE", 1.5, 1.5, 150.0
    link(bpy.data.objects.new("ceiling light", panel)).location = (1.5, -1.5, height - 0.02)
    win = bpy.data.lights.new("window light", "AREA")
    win.shape, win.size, win.size_y, win.energy, win.color = "RECTANGLE", 2.0, 1.4, 120.0, (0.9, 0.95, 1.0)
    w = link(bpy.data.objects.new("window light", win))
    w.location, w.rotation_euler = (wx, half - 0.1, wz), (math.radians(-90), 0, 0)  # shining along -y
    world = bpy.data.worlds.new("world")
    bpy.context.scene.world = world
    bg = world.node_tree.nodes["Background"]
    bg.inputs["Color"].default_value, bg.inputs["Strength"].default_value = (0.5, 0.5, 0.5, 1), 0.1


def _wallpaper(nodes, links):
    stripes = waves(1.2, [(0.0, (0.75, 0.68, 0.55)), (0.5, (0.85, 0.8, 0.68)), (1.0, (0.6, 0.5, 0.4))],
                    distortion=0.0, bands="X")(nodes, links)
    dots = checker((1.0, 1.0, 1.0), (0.8, 0.75, 0.85), 4.0)(nodes, links)
    return mix_colours(nodes, links, stripes, dots, "MULTIPLY", 1.0)


def phone_poses(centre):
    """48 poses around the object at a phone's height, with hand-held jitter (seeded)."""
    rng = np.random.default_rng(SEED + 1)
    poses = []
    for i in range(PHOTO_FRAMES):
        a = 2 * math.pi * i / PHOTO_FRAMES + math.radians(rng.normal(0, 1.5)) + math.radians(200)
        r = 3.2 + 0.15 * math.sin(3 * a) + rng.normal(0, 0.04)
        z = TABLE_TOP + 1.5 + 0.12 * math.sin(2 * a + 1.0) + rng.normal(0, 0.03)
        eye = (centre[0] + r * math.cos(a), centre[1] + r * math.sin(a), z)
        target = (centre[0] + rng.normal(0, 0.05), centre[1] + rng.normal(0, 0.05), centre[2] + rng.normal(0, 0.05))
        poses.append(look_at(eye, target, math.radians(rng.normal(0, 1.5))))
    return poses


def make_photo(out: Path) -> dict:
    t0 = time.time()
    reset()
    centre = (0.0, 0.0, TABLE_TOP + 0.8)  # the object's plate stands on the table
    _, parts = build_object(centre)
    bounds = object_bounds(parts)
    build_room()
    xu, yu, f_render, (render_w, render_h), err = photo_lens()
    log(f"photo lens self-check: max |distort(undistort(pixel)) - pixel| = {err:.2e} px over the "
        f"{PHOTO_W * SUPER} x {PHOTO_H * SUPER} sub-pixel grid ({'ok' if err < 1e-4 else 'FAILED'}); "
        f"undistorted render {render_w} x {render_h} at f = {f_render:g} px")
    if not err < 1e-4:
        raise SystemExit("the lens self-check failed")
    setup_render(PHOTO_SAMPLES, False, (render_w, render_h), bounces=(3, 1, 0), prefilter="FAST")
    cam = new_camera()
    cam.data.sensor_fit, cam.data.sensor_width = "HORIZONTAL", 36.0
    cam.data.lens = f_render * 36.0 / render_w
    cam.data.clip_start, cam.data.clip_end = 0.05, 50.0
    # Where each output sub-pixel falls in the undistorted render (principal point at its centre).
    px, py = render_w / 2 + f_render * xu, render_h / 2 + f_render * yu

    folder = out / "photo"
    if folder.exists():
        shutil.rmtree(folder)
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, pose in enumerate(phone_poses(centre)):
            cam.matrix_world = pose
            exr = Path(tmp) / "undistorted.exr"
            render_to(exr, "OPEN_EXR", "RGB", "32")
            undistorted = load_linear(exr)
            sub = bilinear(undistorted, px, py)
            img = sub.reshape(PHOTO_H, SUPER, PHOTO_W, SUPER, 3).mean((1, 3))
            name = f"images/frame_{i + 1:05d}.png"
            write_png(folder / name, srgb8(img))
            frames.append({"file_path": name, "transform_matrix": matrix_rows(cam)})
            log(f"photo frame {i + 1}/{PHOTO_FRAMES}: {time.time() - t0:.1f} s")
            if i == 0:  # for comparison: the same view before the lens
                write_png(out / "photo_undistorted_frame_00001.png", srgb8(undistorted))
    transforms = {"camera_model": "OPENCV", "fl_x": PHOTO_FX, "fl_y": PHOTO_FY, "cx": PHOTO_CX, "cy": PHOTO_CY,
                  "w": PHOTO_W, "h": PHOTO_H, **DISTORTION, "frames": frames}
    write_json(folder / "transforms.json", transforms)
    write_json(folder / "bench_truth.json", {
        "object_bounds": bounds,
        "distortion": {"camera_model": "OPENCV", **DISTORTION,
                       "applied": "rendered undistorted at 2x with a wider field of view, resampled bilinearly "
                                  "through the OpenCV model (Newton), 2x2 sub-pixels averaged in linear light",
                       "self_check_max_error_px": err},
        "note": "the table, the mug and the book on it and the room are not the object"})
    seconds = time.time() - t0
    return {"photo": {"path": str(folder), "frames": PHOTO_FRAMES, "size": [PHOTO_W, PHOTO_H],
                      "undistorted_render": [render_w, render_h], "seconds": round(seconds, 1),
                      "bytes": folder_bytes(folder), "object_bounds": bounds, "lens_self_check_px": err}}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(args: argparse.Namespace) -> None:
    t0 = time.time()
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    summary = {}
    if args.only in (None, "synthetic"):
        summary.update(make_synthetic(out))
    if args.only in (None, "photo"):
        summary.update(make_photo(out))
    summary["total_seconds"] = round(time.time() - t0, 1)
    summary["threads"] = THREADS
    summary["blender"] = bpy.app.version_string
    SUMMARY_OUT.write(json.dumps(summary, indent=2) + "\n")
    SUMMARY_OUT.flush()


if __name__ == "__main__":
    main(ARGS)
