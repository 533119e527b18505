"""Where Text3D keeps things on disk. No bpy and no relative imports: install/ scripts
load this file by path, and the add-on uses it to find the engine."""
from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import sys
import time
from pathlib import Path

HINT_JOBS_DIR = ("Choose a folder you can write in the Jobs Folder preference (Preferences > Add-ons > Text3D), "
                 "or pass jobs_dir= to the console API")
HINT_DISK_FULL = ("Free some space on that disk, or choose a folder on another disk in the Jobs Folder preference "
                  "(Preferences > Add-ons > Text3D) or with jobs_dir= in the console API")
HINT_JOB_DIR_LOST = ("Nothing was imported. Leave a job's folder alone until the job ends, "
                     "then run the job again")
# What an errno means to someone choosing a folder; others keep the system's words.
_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (read-only or immutable)",
    errno.EROFS: "the file system is read-only",
    errno.ENOENT: "it does not exist",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.ENAMETOOLONG: "the path is too long",
}
DISK_FULL = {errno.ENOSPC}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _REASONS[errno.EDQUOT] = "the disk quota is used up"
    DISK_FULL.add(errno.EDQUOT)


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


class FolderError(Exception):
    """A file-system failure the user can act on: where and what (the message names the path) and what
    to change (hint). kind: jobs_dir_unwritable, disk_full or job_dir_lost (docs/ARCHITECTURE.md's
    error dict, as the add-on shows it for a job)."""

    def __init__(self, kind: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint = kind, message, hint

    def as_error(self) -> dict:
        """{"kind", "message", "hint"}: a failed job's `error`."""
        return {"kind": self.kind, "message": self.message, "hint": self.hint}


def os_reason(exc: OSError) -> str:
    """What went wrong, in words: "permission denied", "the disk is full", else the system's own."""
    return _REASONS.get(exc.errno) or exc.strerror or str(exc) or type(exc).__name__


def jobs_dir_error(exc: OSError, jobs_root: str | os.PathLike, path: str | os.PathLike | None = None) -> FolderError:
    """The FolderError for failing to make a job folder in jobs_root (path None) or to write the file
    `path` in one: disk_full, else jobs_dir_unwritable. The message names the jobs folder, and the path
    that failed unless it is the new job folder itself."""
    jobs_root = Path(jobs_root)
    where = Path(os.fsdecode(exc.filename)) if exc.filename is not None else Path(path or jobs_root)
    if exc.errno in DISK_FULL:
        return FolderError("disk_full", f"the disk is full: cannot write {where} in the jobs folder {jobs_root}",
                           HINT_DISK_FULL)
    # A new job folder's own name tells the user nothing: the jobs folder is what to change.
    new_job_folder = path is None and where.parent == jobs_root
    shown = "" if where == jobs_root or new_job_folder else f" ({where})"
    return FolderError("jobs_dir_unwritable", f"the jobs folder {jobs_root} cannot be written: {os_reason(exc)}{shown}",
                       HINT_JOBS_DIR)


def create_job_dir(jobs_root: str | os.PathLike, title: str, files: dict[str, str]) -> Path:
    """A fresh job folder (new_job_dir) holding `files` (name -> UTF-8 text), all or nothing.

    Raises FolderError (jobs_dir_unwritable or disk_full) naming the jobs folder and the path that
    failed; a job folder made before the failure is removed again.
    """
    try:
        job_dir = new_job_dir(Path(jobs_root), title)
    except OSError as exc:
        raise jobs_dir_error(exc, jobs_root) from exc
    name = None
    try:
        for name, text in files.items():
            (job_dir / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        shutil.rmtree(job_dir, ignore_errors=True)
        raise jobs_dir_error(exc, jobs_root, job_dir / name) from exc
    return job_dir


def job_dir_problem(job_dir: str | os.PathLike) -> str | None:
    """Why a job can no longer use its folder ("was deleted or moved", "cannot be read or written any
    more"), None while it can. A stat and an access check: cheap enough for every poll."""
    try:
        mode = os.stat(job_dir).st_mode
    except FileNotFoundError:
        return "was deleted or moved"
    except OSError as exc:
        return f"cannot be reached any more ({os_reason(exc)})"
    if not stat.S_ISDIR(mode):
        return "is no longer a folder"
    if not os.access(job_dir, os.R_OK | os.W_OK | os.X_OK):
        return "cannot be read or written any more (permission denied)"
    return None
