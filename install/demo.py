"""The README's demo, run by the Blender-side Python (bpy): prompt -> engine job -> object.

Started by `python3 install/text3d.py demo`, which sets up both environments first. It
enables the add-on in headless Blender, generates one object through the add-on's console
API (the same path as the panel's Generate), then saves OUT/demo.blend and renders
OUT/demo.png with Cycles.

Models: the real default CLIP when it is on this machine (or downloads are allowed); otherwise
the starter CLIP that ships in the repository (engine/models/starter/clip), which knows 8 shapes
in 8 colours and nothing else, with a prompt in its vocabulary ("a purple cylinder" unless --prompt
names another); --tiny forces tiny random-weight models (every part runs, the shape means nothing).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path


def say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def engine_json(engine_python: str, engine_root: str, *args: str) -> dict:
    """Run `python -m engine ARGS` (no shell) and parse its one JSON line."""
    out = subprocess.run([engine_python, "-m", "engine", *args], capture_output=True, text=True, cwd=engine_root)
    if out.returncode != 0:
        raise SystemExit(f"[demo] `python -m engine {' '.join(args)}` failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


REAL_PROMPT = "a ceramic mug with a red glaze"
"""The demo's prompt with the real CLIP."""


def choose_models(args) -> tuple[dict, dict, str, str]:
    """(models for job.json, settings overrides, the prompt, which models: "real", "starter" or "tiny")."""
    from engine.models.starter import STARTER_CLIP, starter_job
    from engine.models.starter.vocabulary import COLOURS, DEMO_PROMPT, SHAPES, unknown_words

    report = engine_json(args.engine_python, args.engine_root, "check", "--json")
    clip = report["models"]["clip"]
    gpu = any(d["name"].startswith("cuda") for d in report["devices"])
    if not (args.tiny or args.starter) and (clip["available"] or args.allow_downloads):
        say(f"using the real CLIP model {clip['name']}" + ("" if clip["available"] else " (downloading it)"))
        if not gpu:
            say("no CUDA GPU here: the draft preset with the real model takes a long time on the CPU "
                "(about 20 s a step on 2 cores); use --tiny for a quick check of the pipeline")
        return {"clip": clip["name"]}, {}, args.prompt or REAL_PROMPT, "real"
    if args.tiny:
        tiny_dir = Path(args.out) / "tiny-models"
        models = engine_json(args.engine_python, args.engine_root, "models", "make-tiny", str(tiny_dir))
        say("TINY RANDOM models (--tiny): every part runs, but the shape and colours are meaningless")
        # Small enough to finish in about a minute on a laptop CPU.
        overrides = {"quality": "custom", "steps": 60, "render_size": 32, "samples_per_ray": 32,
                     "mesh_resolution": 96, "options": {"n_augments": 4}}
        return {"clip": models["clip"]}, overrides, args.prompt or REAL_PROMPT, "tiny"
    prompt = args.prompt or DEMO_PROMPT
    why = ("--starter" if args.starter else
           f"the real CLIP model ({clip['name']}) is not on this machine and downloads are off")
    say(f"{why}, so the demo uses the STARTER CLIP that ships with Text3D ({STARTER_CLIP}). It knows {len(SHAPES)} shapes "
        f"({', '.join(SHAPES)}) in {len(COLOURS)} colours ({', '.join(COLOURS)}) and nothing else: "
        f"prompts such as \"a red cube\" or \"a photo of a green cone\". Real prompts need the real model: "
        f"`python -m engine models download {clip['name']}` (or pass --allow-downloads).")
    unknown = unknown_words(prompt)
    if unknown:
        say(f"warning: the starter CLIP does not know {', '.join(repr(w) for w in unknown)} in {prompt!r}; "
            "the object will not show them")
    # Draft is the benchmark's settings (bench/bench_text_to_3d.py, docs/BENCHMARKS.md): about 110 s on 2 CPU cores.
    overrides = ({"quality": "custom", "steps": 200, "render_size": 48, "mesh_resolution": 128}
                 if args.quality == "draft" else {})
    return starter_job("dream_fields")["models"], overrides, prompt, "starter"


def build_scene(obj, out: Path, size: int) -> None:
    """A camera, a light and a floor-less grey world around the object; render with Cycles."""
    import bpy
    from mathutils import Vector

    scene = bpy.context.scene
    centre = obj.matrix_world @ (sum((Vector(c) for c in obj.bound_box), Vector()) / 8)
    cam_data = bpy.data.cameras.new("Text3D demo camera")
    cam_data.lens_unit = "FOV"
    cam_data.angle = math.radians(40)
    cam = bpy.data.objects.new("Text3D demo camera", cam_data)
    scene.collection.objects.link(cam)
    # 30 degrees right of the front view (camera on -Y), 20 degrees up, as the engine's previews.
    az, el, r = math.radians(30), math.radians(20), 4.0
    cam.location = centre + Vector((r * math.cos(el) * math.sin(az), -r * math.cos(el) * math.cos(az), r * math.sin(el)))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    light = bpy.data.objects.new("Text3D demo light", bpy.data.lights.new("Text3D demo light", "SUN"))
    light.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    light.data.energy = 3.0
    scene.collection.objects.link(light)
    world = scene.world or bpy.data.worlds.new("World")
    scene.world = world
    world.color = (0.6, 0.6, 0.62)
    if world.node_tree and "Background" in world.node_tree.nodes:
        world.node_tree.nodes["Background"].inputs[0].default_value = (0.6, 0.6, 0.62, 1.0)
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.filepath = str(out / "demo.png")
    bpy.ops.render.render(write_still=True)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--engine-python", required=True)
    p.add_argument("--engine-root", required=True)
    p.add_argument("--prompt", help="default: the starter vocabulary's demo prompt, or a mug with the real CLIP")
    p.add_argument("--quality", default="draft")
    models = p.add_mutually_exclusive_group()
    models.add_argument("--tiny", action="store_true")
    models.add_argument("--starter", action="store_true")
    p.add_argument("--allow-downloads", action="store_true")
    p.add_argument("--image-size", type=int, default=384)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, args.engine_root)
    models, overrides, prompt, which = choose_models(args)

    import bpy

    import blender_text3d
    from blender_text3d import api

    bpy.ops.wm.read_factory_settings(use_empty=True)
    blender_text3d.register()
    settings = {"quality": args.quality, "seed": 0, "device": "auto", "live_preview": False,
                "allow_downloads": args.allow_downloads, **overrides}
    t = time.monotonic()
    say(f"generating {prompt!r} ({which} models); engine output goes to the job folder")
    job = api.generate(prompt, wait=True, models=models, engine_python=args.engine_python,
                       engine_root=args.engine_root, jobs_dir=str(out / "jobs"), location=(0.0, 0.0, 0.0), **settings)
    if job.status != "succeeded":
        error = job.error or {}
        say(f"the job {job.status}: {error.get('message', '')}\n[demo] hint: {error.get('hint', '')}\n"
            f"[demo] job folder: {job.job_dir}")
        return 1
    obj = job.result
    say(f"imported {obj.name!r}: {len(obj.data.vertices)} vertices, {len(obj.data.polygons)} faces "
        f"in {time.monotonic() - t:.0f} s (job folder {job.job_dir})")
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))
    build_scene(obj, out, args.image_size)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))
    say(f"wrote {out / 'demo.blend'} and {out / 'demo.png'}")
    if which == "tiny":
        say("reminder: tiny random models were used; the object shows the pipeline works, not what the prompt says")
    elif which == "starter":
        say("reminder: the starter CLIP knows simple shapes in plain colours only; real prompts need the real model")
    blender_text3d.unregister()
    return 0


if __name__ == "__main__":
    sys.exit(main())
