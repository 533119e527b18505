"""Capture -> reconstruct demo, run by the Blender-side Python (bpy), as a user would do it:

    ~/.local/share/text3d/blender-venv/bin/python install/capture_demo.py [--steps N] [--out DIR]

(TEXT3D_HOME/blender-venv, made by `python3 install/text3d.py blender`; the engine comes from
TEXT3D_HOME/engine-venv, `python3 install/text3d.py engine`, or --engine-python.)

It builds a scene with Blender's Suzanne in two colours (orange, blue ears), captures her with the
add-on's Capture Selected (Workbench renders showing the material colours), reconstructs the capture
with the real engine through the add-on's console API (the Restyle panel's Reconstruct), imports the
mesh, moves it beside the original and renders both with Cycles under the same lights into
docs/capture_demo.png. No model is needed: reconstruction fits the photos alone.

Every 8th view is held out of training; the engine reports their PSNR (result/metrics.json), printed
at the end with the steps, the job's wall time and the mesh's face count (one JSON line on stdout).
The default 350 steps take about 4 minutes on 2 CPU cores (the whole script under 5); on a GPU
(--device auto picks it) raise --steps: instant-ngp-style fields keep improving for thousands.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The two colours of the original, linear RGB: Workbench shows them (Material colour type) in the
# capture, Cycles in the final picture.
BODY, EARS = (0.80, 0.22, 0.03, 1.0), (0.03, 0.18, 0.80, 1.0)
EAR_X = 0.9  # faces whose centre is farther than this from Suzanne's (size 2) mid-plane are her ears
SPACING = 3.0  # metres between the original and the reconstruction in the picture
# A small but reasonable field for a CPU: instant-ngp's hash grid, scaled down.
FIELD = {"rays_per_step": 2048, "hash_levels": 8, "hash_log2_size": 16, "hash_max_resolution": 256,
         "mlp_width": 32, "holdout_every": 8}


def say(message: str) -> None:
    print(f"[capture demo] {message}", file=sys.stderr, flush=True)


def material(name: str, colour) -> "bpy.types.Material":
    """A material in `colour` for both engines: Workbench reads diffuse_color, Cycles the Principled BSDF."""
    import bpy

    mat = bpy.data.materials.new(name)
    mat.diffuse_color = colour
    if mat.node_tree is None:  # before Blender 5.0 a new material has no nodes
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = colour
    bsdf.inputs["Roughness"].default_value = 0.6
    return mat


def make_suzanne():
    """Suzanne at the origin, orange with blue ears, smooth shaded and selected (what Capture Selected takes)."""
    import bpy

    bpy.ops.mesh.primitive_monkey_add(size=2.0, location=(0.0, 0.0, 0.0))
    monkey = bpy.context.active_object
    monkey.name = "Suzanne (original)"
    bpy.ops.object.shade_smooth()
    monkey.data.materials.append(material("Suzanne body", BODY))
    monkey.data.materials.append(material("Suzanne ears", EARS))
    ears = 0
    for poly in monkey.data.polygons:
        if abs(poly.center.x) > EAR_X:
            poly.material_index, ears = 1, ears + 1
    bpy.ops.object.select_all(action="DESELECT")
    monkey.select_set(True)
    bpy.context.view_layer.objects.active = monkey
    say(f"Suzanne: {len(monkey.data.polygons)} faces, {ears} of them (the ears) blue")
    return monkey


def label(text: str, location, size: float = 0.35):
    """A dark text object lying in the picture plane (facing -Y, the camera)."""
    import bpy

    curve = bpy.data.curves.new(text, "FONT")
    curve.body, curve.size, curve.align_x = text, size, "CENTER"
    obj = bpy.data.objects.new(text, curve)
    obj.location, obj.rotation_euler = location, (math.radians(90), 0.0, 0.0)
    obj.data.materials.append(material(f"{text} label", (0.02, 0.02, 0.02, 1.0)))
    bpy.context.scene.collection.objects.link(obj)
    return obj


def render_side_by_side(reconstruction, path: Path, width: int, height: int, samples: int) -> None:
    """One Cycles picture: the original on the left, the reconstruction on the right, the same lights."""
    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    reconstruction.location = (SPACING, 0.0, 0.0)
    bpy.context.view_layer.update()
    label("original", (0.0, 0.0, -1.45))
    label("reconstructed", (SPACING, 0.0, -1.45))
    centre = Vector((SPACING / 2, 0.0, -0.15))
    cam_data = bpy.data.cameras.new("Capture demo camera")
    cam_data.sensor_fit, cam_data.angle = "HORIZONTAL", math.radians(40)
    cam = bpy.data.objects.new("Capture demo camera", cam_data)
    scene.collection.objects.link(cam)
    # In front of both (Suzanne looks down -Y), a little above.
    az, el, r = math.radians(0), math.radians(12), 9.0
    cam.location = centre + Vector((r * math.cos(el) * math.sin(az), -r * math.cos(el) * math.cos(az),
                                    r * math.sin(el)))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    sun = bpy.data.objects.new("Capture demo sun", bpy.data.lights.new("Capture demo sun", "SUN"))
    sun.rotation_euler = (math.radians(50), math.radians(0), math.radians(-30))
    sun.data.energy = 3.0
    scene.collection.objects.link(sun)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    if world.node_tree is None:  # before Blender 5.0 a new world has no nodes
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (0.55, 0.55, 0.58, 1.0)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.film_transparent = False
    scene.view_settings.view_transform = "Standard"
    image = scene.render.image_settings
    if hasattr(image, "media_type"):
        image.media_type = "IMAGE"
    image.file_format, image.color_mode = "PNG", "RGB"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from blender_text3d import paths

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "out" / "capture_demo"), help="capture, job and .blend folder")
    p.add_argument("--image", default=str(ROOT / "docs" / "capture_demo.png"), help="the picture")
    p.add_argument("--engine-python", default=str(paths.default_engine_python()))
    p.add_argument("--engine-root", default=str(ROOT))
    p.add_argument("--steps", type=int, default=350,
                   help="reconstruction steps (350: about 4 minutes on 2 shared CPU cores, 0.7 s a step)")
    p.add_argument("--views", type=int, default=32)
    p.add_argument("--capture-size", type=int, default=96)
    p.add_argument("--mesh-resolution", type=int, default=128)
    p.add_argument("--samples-per-ray", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--options", type=json.loads, default={}, help="JSON object merged into the job's options")
    p.add_argument("--size", default="640x320", help="picture size WxH")
    p.add_argument("--render-samples", type=int, default=32, help="Cycles samples of the picture")
    args = p.parse_args()
    out, image_path = Path(args.out).resolve(), Path(args.image).resolve()
    out.mkdir(parents=True, exist_ok=True)
    image_path.parent.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if not Path(args.engine_python).is_file():
        say(f"no engine Python at {args.engine_python}: run `python3 install/text3d.py engine` or pass --engine-python")
        return 2

    import bpy

    import blender_text3d
    from blender_text3d import api

    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_text3d.register()
    try:
        # 1. The scene: Suzanne in two colours (Capture Selected renders them flat, as albedo).
        make_suzanne()
        # 2. Capture Selected: an orbit of Workbench renders with a transparent background.
        t = time.monotonic()
        capture = api.capture_selected(out / "capture", views=args.views, size=args.capture_size, engine="WORKBENCH")
        say(f"captured {args.views} views of {args.capture_size} px in {time.monotonic() - t:.0f} s: {capture}")
        # 3. Reconstruct it with the real engine, as the Restyle panel's Reconstruct does.
        say(f"reconstructing: {args.steps} steps on {args.device}; the engine's log is in the job folder")
        t = time.monotonic()
        job = api.restyle(capture, method="reconstruct", wait=True, steps=args.steps, render_size=64,
                          samples_per_ray=args.samples_per_ray, mesh_resolution=args.mesh_resolution,
                          device=args.device, live_preview=False, options={**FIELD, **args.options},
                          engine_python=args.engine_python, engine_root=args.engine_root, jobs_dir=str(out / "jobs"))
        wall = time.monotonic() - t
        if job.status != "succeeded":
            error = job.error or {}
            say(f"the job {job.status}: {error.get('message', '')}\n[capture demo] hint: {error.get('hint', '')}\n"
                f"[capture demo] job folder: {job.job_dir}")
            return 1
        obj = job.result
        obj.name = "Suzanne (reconstructed)"
        metrics_file = job.job_dir / "result" / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        events = [json.loads(line) for line in (job.job_dir / "events.jsonl").read_text().splitlines()]
        last = [e for e in events if e["event"] == "progress"][-1]
        summary = {"steps": last["step"], "job_wall_s": round(wall, 1), "train_s": last["elapsed_s"],
                   "train_psnr_last_batch": round(last.get("metrics", {}).get("psnr", float("nan")), 2),
                   "test_psnr": round(metrics["test_psnr"], 2) if "test_psnr" in metrics else None,
                   "test_views": metrics.get("test_views", 0), "faces": len(obj.data.polygons),
                   "vertices": len(obj.data.vertices), "job_dir": str(job.job_dir), "image": str(image_path)}
        say(f"reconstructed in {wall:.0f} s: {summary['faces']} faces, held-out PSNR {summary['test_psnr']} dB "
            f"over {summary['test_views']} views")
        # 4. Side by side, the same lights, one Cycles picture.
        t = time.monotonic()
        render_side_by_side(obj, image_path, width, height, args.render_samples)
        say(f"rendered {image_path} in {time.monotonic() - t:.0f} s")
        bpy.ops.wm.save_as_mainfile(filepath=str(out / "capture_demo.blend"))
        print(json.dumps(summary), flush=True)
        return 0
    finally:
        blender_text3d.unregister()


if __name__ == "__main__":
    sys.exit(main())
