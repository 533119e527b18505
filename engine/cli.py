"""python -m engine: the engine's command line. stdout carries only JSON; people read stderr."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import EXIT_CODES, EngineError

NOTES = """`run` prints JSON-lines events on stdout (also appended to JOB_DIR/events.jsonl) and its log
on stderr (also JOB_DIR/log.txt). Only `models download` and jobs with
"allow_downloads": true may use the network."""


def epilog() -> str:
    """The methods (from their cards), the exit codes and the notes under --help."""
    from .methods import CARDS

    methods = "\n".join(f"  {c.name:<14}{c.input:<9}{c.summary}" for c in CARDS.values())
    codes = "\n".join(f"  {code:>2}  {name}" for name, code in EXIT_CODES.items())
    return f"methods (job.json \"method\", input):\n{methods}\n\nexit codes:\n{codes}\n\n{NOTES}"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Text3D optimisation engine.",
                                epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the job in JOB_DIR/job.json")
    run.add_argument("job_dir", type=Path)
    run.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    check = sub.add_parser("check", help="torch, devices and model availability")
    check.add_argument("--json", action="store_true", help="one JSON object on stdout")
    check.add_argument("--models", type=json.loads, default={}, help='JSON object as job.json "models"')
    render = sub.add_parser("render", help="render a job's latest field from cameras or a turntable")
    render.add_argument("job_dir", type=Path)
    render.add_argument("--out", type=Path, required=True, help="folder for PNGs and their transforms.json")
    views = render.add_mutually_exclusive_group()
    views.add_argument("--cameras", type=Path, help="a transforms.json whose cameras to render from")
    views.add_argument("--turntable", type=int, metavar="N", help="N views around the object (default 36)")
    render.add_argument("--size", type=int, help="image width in pixels (default: the cameras' or 4x the render size)")
    render.add_argument("--background", choices=("white", "black", "transparent"), default="white")
    capture = sub.add_parser("capture", help="check a capture; prints its frames, cameras (world) and object frame as JSON")
    capture.add_argument("path", type=Path, help="capture folder or transforms JSON file")
    capture.add_argument("--max-image-size", type=int, default=512, help="longest image side after loading")
    export = sub.add_parser("export", help="re-extract result/ from the latest checkpoint")
    export.add_argument("job_dir", type=Path)
    export.add_argument("--resolution", type=int)
    export.add_argument("--threshold", type=lambda s: s if s == "auto" else float(s))
    export.add_argument("--texture-size", type=int)
    models = sub.add_parser("models", help="model management")
    msub = models.add_subparsers(dest="models_command", required=True)
    tiny = msub.add_parser("make-tiny", help="write tiny random-weight models; prints the job.json models value")
    tiny.add_argument("dir", type=Path)
    download = msub.add_parser("download", help="fetch models into the Hugging Face cache (uses the network)")
    download.add_argument("names", nargs="+")
    listing = msub.add_parser("list", help="default models per role, their size and whether they are present")
    listing.add_argument("--json", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        from .jobs.events import claim_stdout
        from .jobs.run import run_job

        return run_job(args.job_dir, args.resume, claim_stdout())
    try:
        if args.command == "check":
            return check(args.json, args.models)
        if args.command == "capture":
            from .jobs.events import claim_stdout

            out = claim_stdout()
            from .captures import describe, load_capture

            print(json.dumps(describe(load_capture(args.path, args.max_image_size))), file=out)
            return 0
        if args.command in ("render", "export"):
            from .jobs.events import claim_stdout, setup_logging

            out = claim_stdout()
            setup_logging(None, None)
            from .jobs import offline

            if args.command == "render":
                result = offline.render_command(args.job_dir, args.out, args.cameras, args.turntable, args.size,
                                                args.background)
            else:
                result = offline.export_command(args.job_dir, args.resolution, args.threshold, args.texture_size)
            print(json.dumps(result), file=out)
            return 0
        from .models import commands

        if args.models_command == "make-tiny":
            return commands.make_tiny_command(args.dir)
        if args.models_command == "download":
            return commands.download_command(args.names)
        return commands.list_command(args.json)
    except EngineError as e:
        print(f"error ({e.kind}): {e.message}\nhint: {e.hint}", file=sys.stderr)
        return e.exit_code


def check(as_json: bool, models: dict) -> int:
    """Report torch, devices and whether each configured model is available locally."""
    from .jobs.events import claim_stdout

    out = claim_stdout()
    import torch

    from .models import DEFAULT_MODELS, model_status

    devices = [{"name": "cpu", "threads": torch.get_num_threads()}]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"name": f"cuda:{i}", "model": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    configured = {**DEFAULT_MODELS, **models}
    report = {"torch": torch.__version__, "cuda": torch.version.cuda, "devices": devices,
              "models": {role: model_status(name) for role, name in configured.items()}}
    if as_json:
        print(json.dumps(report), file=out)
    else:
        print(f"torch {report['torch']} (CUDA build {report['cuda']})", file=out)
        for d in devices:
            print("device " + ", ".join(f"{k}={v}" for k, v in d.items()), file=out)
        for role, status in report["models"].items():
            state = "available" if status["available"] else "MISSING"
            print(f"model {role}: {status['name']} {state} {status.get('location') or ''}", file=out)
    return 0
