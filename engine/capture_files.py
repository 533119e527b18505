"""Finding a capture's files as exporters write their paths: Windows separators, absolute paths of another
machine, missing suffixes, names in another case.

Standard library only (no torch, no numpy): the add-on reads captures by the same rules through
blender_text3d/engine_rules.py, so a capture the engine loads is one the panel accepts.
"""
from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".exr", ".tif", ".tiff")
"""Suffixes tried for a file_path written without one (NeRF-synthetic's "./train/r_0")."""

# A path written on Windows: drive letter ("C:\\", "C:/") or UNC ("\\\\server").
WINDOWS_ABSOLUTE = re.compile(r"^(?:[A-Za-z]:[\\/]|\\\\)")


def find_file(folder: Path, file_path: str, guess_suffix: bool = True) -> tuple[Path | None, str]:
    """A frame's file (image or mask) as exporters write its path -> (the file or None, what else was tried).

    Candidates, first existing wins: the path as written, relative to the transforms file's folder
    (or absolute); with `\\` read as a separator (Windows exporters write "images\\frame_1.png"; a
    file whose name really holds a backslash is found first); for an absolute path that is not
    there (the capture was moved, or written on another machine), its tails inside `folder`, longest
    first ("/home/a/scan/images/x.png": scan/images/x.png, then images/x.png, then x.png). Each
    candidate also matches with an image suffix added when it has none (guess_suffix: NeRF-synthetic's
    "./train/r_0", instant-ngp's extensionless paths) and by its name regardless of case when exactly
    one file in its folder matches (captures written on Windows or macOS: "IMG_1.jpg" for IMG_1.JPG), and
    so do its folders ("Images\\x.png" for images/x.png).
    The second value, for a "not found" message, says which other paths were tried ("" if none).
    """
    candidates, notes = [file_path], []
    posix = file_path.replace("\\", "/")
    if posix != file_path:
        candidates.append(posix)
        notes.append(f"the path uses Windows (\\) separators, also tried {posix!r}")
    if posix.startswith("/") or WINDOWS_ABSOLUTE.match(file_path):
        parts = [part for part in posix.split("/") if part and part not in (".", "..")]
        if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
            parts = parts[1:]
        tails = ["/".join(parts[k:]) for k in range(len(parts))]
        candidates += tails
        if tails:
            notes.append(f"the path is absolute, also tried its tails {', '.join(repr(t) for t in tails)} in {folder}")
    for candidate in candidates:
        found = _existing(folder / candidate, guess_suffix)
        if found is not None:
            return found, ""
    return None, "; ".join(notes)


def _existing(path: Path, guess_suffix: bool) -> Path | None:
    """path, or path with an image suffix added (guess_suffix, when it has none), or the one file of its folder
    whose name matches either regardless of case; None."""
    names = [path.name]
    if guess_suffix and path.suffix.lower() not in IMAGE_SUFFIXES:
        names += [path.name + suffix for suffix in IMAGE_SUFFIXES]
    for name in names:
        if (path.parent / name).is_file():
            return (path.parent / name).resolve()
    if not path.parent.is_dir():  # "Images\\x.png" written on Windows for images/x.png
        parent = _folder_in_any_case(path.parent)
        if parent is None:
            return None
        path = parent / path.name
    try:
        lower = {name.lower() for name in names}
        matches = [e for e in path.parent.iterdir() if e.name.lower() in lower and e.is_file()]
    except OSError:  # the folder does not exist (or cannot be listed)
        return None
    return matches[0].resolve() if len(matches) == 1 else None


def _folder_in_any_case(folder: Path) -> Path | None:
    """folder with the components below its deepest existing ancestor matched regardless of case (each must
    match exactly one folder), or None. Windows and macOS treat "Images" and "images" as one folder."""
    missing = []
    while not folder.is_dir():
        if folder.parent == folder:
            return None
        missing.append(folder.name)
        folder = folder.parent
    for name in reversed(missing):
        try:
            matches = [e for e in folder.iterdir() if e.name.lower() == name.lower() and e.is_dir()]
        except OSError:
            return None
        if len(matches) != 1:
            return None
        folder = matches[0]
    return folder
