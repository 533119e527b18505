"""`python -m engine models ...`: each command prints only JSON (or nothing) on stdout, humans read stderr."""
from __future__ import annotations

import json
import sys

from engine.errors import EXIT_CODES, EngineError
from engine.methods import CARDS
from engine.models.hub import download
from engine.models.registry import ALTERNATIVES, DEFAULT_MODELS
from engine.models.resolve import model_status
from engine.models.tiny import make_tiny


def make_tiny_command(out_dir: str) -> int:
    """`models make-tiny DIR`: prints {"clip": path, "diffusion": path, "perceptual": path, "identity": path} as one
    JSON line."""
    try:
        paths = make_tiny(out_dir)
    except OSError as e:
        print(f"make-tiny: {e}", file=sys.stderr)
        return EXIT_CODES["internal"]
    print(json.dumps(paths), flush=True)
    return 0


def download_command(names: list[str]) -> int:
    """`models download NAME...`: progress on stderr, {name: location} of those fetched as one JSON line."""
    locations, code = {}, 0
    for name in names:
        try:
            locations[name] = download(name, progress=True)
        except EngineError as e:
            print(f"error ({e.kind}): {e.message}\nhint: {e.hint}", file=sys.stderr)  # as every command
            code = code or e.exit_code
            continue
        print(f"{name}: {locations[name]}", file=sys.stderr)
    print(json.dumps(locations), flush=True)
    return code


def list_command(as_json: bool) -> int:
    """`models list [--json]`: the default model of each role, the models methods default to (used_by names the
    methods), and the alternatives, with size and availability."""
    used_by: dict[tuple[str, str], list[str]] = {(role, name): [] for role, name in DEFAULT_MODELS.items()}
    for card in CARDS.values():
        for role, name in card.roles.items():
            used_by.setdefault((role, name or DEFAULT_MODELS[role]), []).append(card.name)
    rows = [{"role": role, "default": True, "used_by": methods, **model_status(name)}
            for (role, name), methods in used_by.items()]
    rows += [{"role": role, "default": False, **model_status(name)}
             for role, names in ALTERNATIVES.items() for name in names]
    if as_json:
        print(json.dumps({"models": rows}), flush=True)
        return 0
    print(f"{'ROLE':<12} {'MODEL':<44} {'SIZE':>9}  WHERE")
    for row in rows:
        size = f"{row['size_mb'] / 1000:.1f} GB" if row["size_mb"] else "?"
        where = row["location"] if row["available"] else "not downloaded"
        role = row["role"] if row["default"] else f"({row['role']})"
        print(f"{role:<12} {row['name']:<44} {size:>9}  {where}")
    print("\nParenthesised roles are alternatives. Fetch a model with: python -m engine models download NAME")
    print("identity (a face recogniser) is loaded only for face captures (options.face); facenet's weights were "
          "trained on VGGFace2 or CASIA-WebFace, whose terms restrict use: see README.md, Models.")
    return 0
