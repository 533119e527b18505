"""A stand-in for `install/text3d.py engine`: "[text3d] ..." progress on stderr, then an
engine environment in TEXT3D_HOME whose python runs this interpreter (so the fake engine
on PYTHONPATH answers `engine check`). TEXT3D_FAKE_INSTALL (a JSON object) steers it:
  mode: "ok" | "fail" (a set-up error and hint, exit code 2, as text3d.py reports them)
  steps: progress lines; step_s: seconds between them.
"""
import json
import os
import sys
import time
from pathlib import Path


def say(message):
    print(f"[text3d] {message}", file=sys.stderr, flush=True)


def main(argv):
    assert argv == ["engine"], argv
    fake = json.loads(os.environ.get("TEXT3D_FAKE_INSTALL") or "{}")
    venv = Path(os.environ["TEXT3D_HOME"]) / "engine-venv"
    say(f"creating the engine environment in {venv}")
    for i in range(1, fake.get("steps", 3) + 1):
        time.sleep(fake.get("step_s", 0.01))
        say(f"installing requirements-engine.txt, part {i}")
    if fake.get("mode") == "fail":
        say("error: installing the engine environment failed; last lines of install-engine.log:\n"
            "  OSError: [Errno 28] No space left on device")
        say("hint: the disk is full: free space where TEXT3D_HOME points")
        say("engine took 0 s")
        return 2
    python = venv / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    say("engine environment ready in 0 s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
