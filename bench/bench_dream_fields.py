"""Dream Fields step cost against its CLIP floor, and mesh extraction + bake at 256^3.

Prints one JSON object. The CLIP model is a random-weight open_clip of a real architecture
(default ViT-B-16), written as a local folder and loaded through engine.models.load_clip,
as the real one would be; random weights cost the same time as trained ones.

    python bench/bench_dream_fields.py [--size 88] [--samples 128] [--clip ViT-B-16] [--repeats 3]

ratio = (ms per full Dream Fields step) / (ms of CLIP forward+backward on the same batch of
crops): what the NeRF side (render, augmentation, optimiser) adds on top of the guidance.
Timings interleave step and CLIP measurements so that load on the machine hits both.

Two states of the field are timed: "fresh" (initial fog everywhere: the empty-space grid
skips nothing) and "shaped" (density first fitted to a ball of radius 0.6, about 11% of the
cube, standing in for a field part-way through training, whose surroundings have cleared).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.jobs.outputs import export_result  # noqa: E402
from engine.jobs.run import optimise_step  # noqa: E402
from engine.methods.dream_fields import method as dream_fields  # noqa: E402
from engine.models.tiny import TINY_CLIP_CONFIG  # noqa: E402
from engine.spec import parse_job  # noqa: E402


def write_random_clip(folder: Path, arch: str) -> None:
    """A local open_clip folder with random weights of architecture `arch`."""
    import open_clip
    from safetensors.torch import save_file

    config = {"model_cfg": open_clip.get_model_config(arch), "preprocess_cfg": TINY_CLIP_CONFIG["preprocess_cfg"]}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    save_file(open_clip.CLIP(**config["model_cfg"]).state_dict(), folder / "open_clip_model.safetensors")


def shape_field(field, device, steps: int = 150) -> None:
    """Regress the field's density onto a ball of radius 0.6 (30 inside, 0 outside)."""
    opt = torch.optim.Adam(field.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = (torch.rand(65536, 3, generator=g) * 2 - 1).to(device)
        target = (x.norm(dim=-1) < 0.6).float() * 30
        loss = (torch.log1p(field(x).density) - torch.log1p(target)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=None, help="render size (default: the method's)")
    p.add_argument("--samples", type=int, default=None, help="samples per ray (default: the method's)")
    p.add_argument("--clip", default="ViT-B-16")
    p.add_argument("--field", default="hashgrid")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mesh-resolution", type=int, default=256)
    p.add_argument("--no-occupancy", action="store_true", help="turn empty-space skipping off")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-df-"))
    write_random_clip(tmp / "clip", args.clip)
    render = {k: v for k, v in (("size", args.size), ("samples_per_ray", args.samples)) if v}
    spec = parse_job({"spec_version": 1, "method": "dream_fields", "prompt": "a bench", "device": args.device,
                      "render": render, "models": {"clip": str(tmp / "clip")},
                      "options": {"field": {"backbone": args.field},
                                  "occupancy": {"resolution": 0 if args.no_occupancy else 64}}})
    device = torch.device(args.device)
    torch.manual_seed(0)
    method = dream_fields.build(spec, device)
    clip = method.guidance.clip

    def full_step(k: int) -> None:
        optimise_step(method, 0, k)

    n = spec.options.n_augments
    crops = torch.rand(n, 3, clip.image_size, clip.image_size, device=device)

    def clip_only() -> None:
        x = crops.clone().requires_grad_()
        (-(clip.encode_image(x) @ method.guidance.text.T).mean()).backward()

    def timed(fn, *a) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn(*a)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) * 1000

    full_step(0)  # warm-up: allocator, lazy initialisation
    clip_only()
    states = {}
    for state in ("fresh", "shaped"):
        if state == "shaped":
            shape_field(method.field, device)
            grid = method.empty_space.grid
            if grid is not None:
                # A grid that has seen only the shaped field: in training the fog's decaying
                # maximum fades over ~70 updates (0.95 per update), as in instant-ngp.
                grid.density.zero_()
                grid.update(method.field, torch.Generator().manual_seed(0))
        step_ms, clip_ms = [], []
        for k in range(1, args.repeats + 1):  # steps 1..repeats: no scheduled occupancy update inside
            step_ms.append(timed(full_step, k))
            clip_ms.append(timed(clip_only))
        step, bare = statistics.median(step_ms), statistics.median(clip_ms)
        states[state] = {"step_ms": round(step, 1), "clip_fwd_bwd_ms": round(bare, 1), "ratio": round(step / bare, 3),
                         "step_ms_all": [round(v) for v in step_ms], "clip_ms_all": [round(v) for v in clip_ms],
                         "occupied": method.empty_space.metrics().get("occupied")}

    # Extraction + vertex bake at the export resolution, with this field (no texture).
    from dataclasses import replace

    job_dir = tmp / "job"
    (job_dir / "result").mkdir(parents=True)
    export = replace(spec.export, resolution=args.mesh_resolution, texture_size=0, formats=("npz",))
    t = time.perf_counter()
    try:
        export_result(method.scene, spec, job_dir, device, export)
        mesh = {"ok": True}
    except Exception as e:  # noqa: BLE001 - an untrained field may have no surface; report it
        mesh = {"ok": False, "error": str(e)[:200]}
    mesh["seconds"] = round(time.perf_counter() - t, 3)

    print(json.dumps({
        "device": str(device), "torch_threads": torch.get_num_threads(), "clip": args.clip, "field": args.field,
        "render_size": spec.render.size, "samples_per_ray": spec.render.samples_per_ray, "n_augments": n,
        **states, "mesh_extract_bake_256": mesh,
    }))


if __name__ == "__main__":
    main()
