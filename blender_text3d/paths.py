"""Where Text3D keeps things on disk. No bpy and no relative imports: install/ scripts
load this file by path, and the add-on uses it to find the engine."""
from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path


def text3d_home() -> Path:
    """TEXT3D_HOME, else the platform's per-user data folder for Text3D."""
    if os.environ.get("TEXT3D_HOME"):
        return Path(os.environ["TEXT3D_HOME"]).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "Text3D"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "Text3D"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "text3d"


def venv_python(venv: Path) -> Path:
    """The interpreter inside a virtual environment folder."""
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def default_engine_python() -> Path:
    """Where install/ puts the engine's interpreter: TEXT3D_HOME/engine-venv."""
    return venv_python(text3d_home() / "engine-venv")


def checkout_engine_root(package_dir: Path | None = None) -> Path | None:
    """The repository root when the add-on runs from a checkout that also holds engine/.

    An installed extension has no engine beside it and gets None; the engine venv then
    finds the engine through the .pth file install/ writes.
    """
    root = (package_dir or Path(__file__).resolve().parent).parent
    return root if (root / "engine" / "__main__.py").is_file() else None


def engine_install_script(package_dir: Path | None = None) -> Path | None:
    """install/text3d.py of the checkout, else the copy an extension zip ships in engine_src/; None if neither."""
    package_dir = package_dir or Path(__file__).resolve().parent
    root = checkout_engine_root(package_dir)
    for script in (root / "install" / "text3d.py" if root else None,
                   package_dir / "engine_src" / "install" / "text3d.py"):
        if script is not None and script.is_file():
            return script
    return None


def new_job_dir(jobs_root: Path, prompt: str) -> Path:
    """Create and return a fresh, sortable job folder named after the prompt."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "job"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = Path(jobs_root) / f"{stamp}-{slug}" if n == 0 else Path(jobs_root) / f"{stamp}-{slug}-{n}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free job folder name under {jobs_root}")
