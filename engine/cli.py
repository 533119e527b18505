"""python -m engine: the engine's command line. stdout carries only JSON; people read stderr.

Each subcommand is an `add_NAME(sub)` that declares its arguments and sets its handler (args -> exit code);
adding one is a new add_ function and a line in parser(). Every failure is one `error (KIND): ...` line and a
`hint: ...` line on stderr, with KIND's exit code (engine/errors.py EXIT_CODES): a command line argparse
refuses, or a flag's value outside its limits, is `usage` (9); what the job, capture or models say is their
own kind. Nothing is left half-written: arguments are checked before anything is created.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import signal
import sys

from .arguments import path_arg
from .batch.driver import add_batch
from .errors import EXIT_CODES, EngineError
from .spec import DEVICE_PATTERN

NOTES = """`run` prints JSON-lines events on stdout (also appended to JOB_DIR/events.jsonl) and its log
on stderr (also JOB_DIR/log.txt). Only `models download` and jobs with
"allow_downloads": true may use the network.
A command line that cannot be acted on (unknown command or flag, a flag's value out of range) exits with
`usage` (9), not argparse's 2, which is invalid_job's."""

MAX_IMAGE_SIZE = 8192
"""Largest image side `render --size` and `capture --max-image-size` take (pixels)."""
MAX_TURNTABLE_VIEWS = 3600


def epilog() -> str:
    """The methods (from their cards), the exit codes and the notes under --help."""
    from .methods import CARDS

    methods = "\n".join(f"  {c.name:<14}{c.input:<9}{c.summary}" for c in CARDS.values())
    codes = "\n".join(f"  {code:>2}  {name}" for name, code in EXIT_CODES.items())
    return f"methods (job.json \"method\", input):\n{methods}\n\nexit codes:\n{codes}\n\n{NOTES}"


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line raises EngineError("usage") (one line and a hint, exit code 9) instead of
    printing the usage and exiting with 2. Subcommand parsers are of this class too. Flags are never abbreviated
    (--resum is not --resume): a script's flags keep their meaning when a new flag arrives."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str):
        raise EngineError("usage", f"{self.prog}: {message}", f"see `{self.prog} --help`")


# Argument types: each refuses a bad value with a message argparse prefixes with the flag's name.

def whole_number(low: int, high: int | None = None):
    """An argparse type: an int within [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            limits = f"between {low} and {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {limits} (got {value})")
        return value
    return parse


def export_setting(name: str):
    """An argparse type for `export --NAME`: the value job.json's export.NAME takes, within the same limits
    (engine/spec.py ExportConfig.validate); --threshold also takes "auto" and refuses nan and infinity."""
    def parse(text: str):
        from .spec import ExportConfig

        if name == "threshold":
            if text == "auto":
                return text
            try:
                value = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f'must be a number or "auto" (got {text!r})') from None
            if not math.isfinite(value):
                raise argparse.ArgumentTypeError(f'must be a finite number or "auto" (got {text!r})')
        else:
            value = whole_number(-2**31)(text)
        try:
            ExportConfig(**{name: value}).validate("export")
        except EngineError as e:  # "export.NAME: why (got value)": argparse names the flag
            raise argparse.ArgumentTypeError(e.message.split(": ", 1)[-1]) from None
        return value
    return parse


def models_value(text: str) -> dict:
    """An argparse type: a JSON object as job.json "models" (role -> model name or local path)."""
    from .models.registry import DEFAULT_MODELS

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e})") from None
    if not isinstance(value, dict) or not all(isinstance(v, str) and v for v in value.values()):
        raise argparse.ArgumentTypeError(f"must be a JSON object of role -> model name (got {text[:80]!r})")
    unknown = sorted(set(value) - set(DEFAULT_MODELS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown role {unknown[0]!r} (roles: {', '.join(DEFAULT_MODELS)})")
    return value


def add_run(sub) -> None:
    p = sub.add_parser("run", help="run the job in JOB_DIR/job.json")
    p.add_argument("job_dir", type=path_arg)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.set_defaults(handler=run_command)


def add_check(sub) -> None:
    p = sub.add_parser("check", help="torch, devices and model availability")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--models", type=models_value, default={}, help='JSON object as job.json "models"')
    p.set_defaults(handler=lambda args: check(args.json, args.models))


def add_render(sub) -> None:
    p = sub.add_parser("render", help="render a job's latest field from cameras or a turntable")
    p.add_argument("job_dir", type=path_arg)
    p.add_argument("--out", type=path_arg, required=True,
                   help="folder for PNGs and their transforms.json (written only once every image is)")
    views = p.add_mutually_exclusive_group()
    views.add_argument("--cameras", type=path_arg,
                       help="a capture folder or transforms JSON file whose (world) cameras to render from")
    views.add_argument("--turntable", type=whole_number(1, MAX_TURNTABLE_VIEWS), metavar="N",
                       help="N views around the object (default 36)")
    p.add_argument("--size", type=whole_number(1, MAX_IMAGE_SIZE),
                   help="image width in pixels (default: the cameras' or 4x the render size)")
    p.add_argument("--background", choices=("white", "black", "transparent"), default="white")
    add_device(p)
    p.set_defaults(handler=render_or_export)


def add_capture(sub) -> None:
    p = sub.add_parser("capture", help="check a capture; prints its frames, cameras (world) and object frame as JSON")
    p.add_argument("path", type=path_arg, help="capture folder or transforms JSON file")
    p.add_argument("--max-image-size", type=whole_number(1, MAX_IMAGE_SIZE), default=512,
                   help="longest image side after loading")
    p.set_defaults(handler=capture_command)


def add_export(sub) -> None:
    p = sub.add_parser("export", help="re-extract result/ from the latest checkpoint")
    p.add_argument("job_dir", type=path_arg)
    p.add_argument("--resolution", type=export_setting("resolution"), help="marching-cubes grid (16 to 1024)")
    p.add_argument("--threshold", type=export_setting("threshold"), help='density iso-level (> 0) or "auto"')
    p.add_argument("--texture-size", type=export_setting("texture_size"),
                   help="UV texture side (64 to 8192), 0 = vertex colours only")
    add_device(p)
    p.set_defaults(handler=render_or_export)


def add_device(p) -> None:
    """--device of render and export: a job made on a GPU machine opens on any other."""
    def device(text: str) -> str:
        if not re.fullmatch(DEVICE_PATTERN, text):
            raise argparse.ArgumentTypeError(f'must be "auto", "cpu", "cuda", "cuda:N" or "mps" (got {text!r})')
        return text
    p.add_argument("--device", type=device, help='where to run (default: job.json\'s "device"), e.g. cpu or auto')


def add_models(sub) -> None:
    p = sub.add_parser("models", help="model management")
    msub = p.add_subparsers(dest="models_command", required=True)
    tiny = msub.add_parser("make-tiny", help="write tiny random-weight models; prints the job.json models value")
    tiny.add_argument("dir", type=path_arg)
    download = msub.add_parser("download", help="fetch models into the Hugging Face cache (uses the network)")
    download.add_argument("names", nargs="+")
    listing = msub.add_parser("list", help="default models per role, their size and whether they are present")
    listing.add_argument("--json", action="store_true")
    p.set_defaults(handler=models_command)


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m engine", description="Text3D optimisation engine.",
               epilog=epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for add in (add_run, add_check, add_render, add_capture, add_export, add_models, add_batch):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse argv (default sys.argv[1:]) and run the subcommand; returns the exit code (--help exits with 0)."""
    from .jobs.device import mps_fallback

    mps_fallback()  # before anything imports torch, which reads the setting once
    try:
        args, extras = parser().parse_known_args(argv)
        if extras:  # named by the subcommand they were given to (argparse names the top-level program)
            prog = " ".join(["python -m engine"] + [w for w in (args.command, getattr(args, "models_command", None)) if w])
            raise EngineError("usage", f"{prog}: unrecognized arguments: {' '.join(extras)}", f"see `{prog} --help`")
        return args.handler(args)
    except EngineError as e:
        print_error(e)
        return e.exit_code


def print_error(e: EngineError) -> None:
    print(f"error ({e.kind}): {e.message}\nhint: {e.hint}", file=sys.stderr)


def run_command(args) -> int:
    from .jobs.events import EventStream, claim_stdout

    out = claim_stdout()
    if not (args.job_dir / "job.json").is_file():
        # No job folder to keep events.jsonl and log.txt in: the error goes to stdout and stderr only, and
        # nothing is created.
        from .spec import load_job

        try:
            load_job(args.job_dir)
        except EngineError as e:
            events = EventStream(out, None)
            events.emit("error", kind=e.kind, message=e.message, hint=e.hint)
            events.emit("finished", status="failed")
            print_error(e)
            return e.exit_code
    from .jobs.run import run_job

    watch = ErrorWatch(out)
    code = run_job(args.job_dir, args.resume, watch)
    if watch.error:  # after the log, the same last two lines as every other command
        print(f"error ({watch.error['kind']}): {watch.error['message']}\nhint: {watch.error['hint']}", file=sys.stderr)
    return code


class ErrorWatch:
    """Passes a run's event lines on to `out`, keeping the last `error` event's fields."""

    def __init__(self, out) -> None:
        self.out, self.error = out, None

    def write(self, text: str) -> int:
        if '"error"' in text:
            event = json.loads(text)
            self.error = event if event.get("event") == "error" else self.error
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


def capture_command(args) -> int:
    from .jobs.events import claim_stdout

    out = claim_stdout()
    from .captures import describe, load_capture

    print(json.dumps(describe(load_capture(args.path, args.max_image_size))), file=out)
    return 0


def render_or_export(args) -> int:
    from .jobs.events import claim_stdout, setup_logging

    out = claim_stdout()
    setup_logging(None, None)
    from .jobs import offline

    def interrupt(signum, frame):
        raise KeyboardInterrupt
    # SIGTERM as Ctrl-C: the staged output folder is removed on the way out, not left half-written.
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        if args.command == "render":
            result = offline.render_command(args.job_dir, args.out, args.cameras, args.turntable, args.size,
                                            args.background, args.device)
        else:
            result = offline.export_command(args.job_dir, args.resolution, args.threshold, args.texture_size,
                                            args.device)
    except KeyboardInterrupt:
        print(f"cancelled: --out {args.out} is as it was" if args.command == "render" else
              "cancelled: the export stopped before it finished; run it again for a complete result/", file=sys.stderr)
        return EXIT_CODES["cancelled"]
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(result), file=out)
    return 0


def models_command(args) -> int:
    from .models import commands

    if args.models_command == "make-tiny":
        if args.dir.exists() and not args.dir.is_dir():
            raise EngineError("usage", f"models make-tiny: {args.dir} is a file, not a folder",
                              "give a new or existing folder to write the tiny models into")
        return commands.make_tiny_command(args.dir)
    if args.models_command == "download":
        return commands.download_command(args.names)
    return commands.list_command(args.json)


def check(as_json: bool, models: dict) -> int:
    """Report torch, devices and whether each configured model is available locally."""
    from .jobs.events import claim_stdout

    out = claim_stdout()
    import torch

    from .jobs.device import available_devices
    from .models import DEFAULT_MODELS, model_status

    devices = [{"name": "cpu", "threads": torch.get_num_threads()}]
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append({"name": f"cuda:{i}", "model": props.name, "memory_gb": round(props.total_memory / 2**30, 1)})
    if "mps" in available_devices():
        devices.append({"name": "mps", "model": "Apple GPU"})
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
