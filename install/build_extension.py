"""Build dist/blender_text3d-<version>.zip, a Blender extension, and validate it.

The repository keeps blender_manifest.toml at the top and the add-on in blender_text3d/;
an extension needs its __init__.py beside the manifest, so the zip holds the manifest and
the package's files together at its root. Beside them, engine_src/ carries what the
add-on's Install Engine button runs, laid out like a checkout so install/text3d.py works
unchanged: engine/ (its .py files), install/text3d.py with the requirements, and the
blender_text3d/paths.py that text3d.py loads. The add-on never imports any of it; the
engine environment gets engine_src/ on its path through the .pth text3d.py writes.

    python install/build_extension.py [--out-dir dist] [--blender PATH | --no-validate]

Validation runs Blender's own `extension validate` (blender_ext.py, with Blender's tag
list): from `--blender PATH` (`blender --command extension validate`), else from the
`bpy` module of this interpreter when it has one. Exit code 1 if validation fails, 2 if
no validator was found and --no-validate was not given.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "blender_manifest.toml"
PACKAGE = REPO / "blender_text3d"


ENGINE_SRC = "engine_src"


def package_files() -> list[Path]:
    """The add-on's source files, without caches."""
    return sorted(p for p in PACKAGE.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def engine_src_files() -> list[Path]:
    """What `text3d.py engine` and the engine need at run time, as repository paths."""
    install = [REPO / "install" / "text3d.py", *(REPO / "install").glob("requirements-*.txt")]
    engine = [p for p in (REPO / "engine").rglob("*.py") if "__pycache__" not in p.parts]
    return sorted([*install, *engine, PACKAGE / "paths.py"])


def build(out_dir: Path) -> Path:
    """Write the extension zip and return its path."""
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(MANIFEST, MANIFEST.name)
        for path in package_files():
            zf.write(path, path.relative_to(PACKAGE).as_posix())
        for path in engine_src_files():
            zf.write(path, f"{ENGINE_SRC}/{path.relative_to(REPO).as_posix()}")
    return zip_path


def bpy_validator() -> list[str] | None:
    """`python blender_ext.py validate --valid-tags TAGS` from this interpreter's bpy module, if any."""
    spec = importlib.util.find_spec("bpy")  # locates bpy without starting Blender
    if spec is None or not spec.submodule_search_locations:
        return None
    for scripts in sorted(Path(spec.submodule_search_locations[0]).glob("*/scripts")):
        cli = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
        tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
        if cli.is_file():
            return [sys.executable, str(cli), "validate", "--valid-tags", str(tags) if tags.is_file() else ""]
    return None


def validate(zip_path: Path, blender: str | None) -> int:
    command = [blender, "--factory-startup", "--command", "extension", "validate"] if blender else bpy_validator()
    if command is None:
        print("no validator: pass --blender PATH, run with a Python that has the bpy module, "
              "or pass --no-validate", file=sys.stderr)
        return 2
    proc = subprocess.run([*command, str(zip_path)])
    return 0 if proc.returncode == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "dist", help="where the zip goes (default: dist/)")
    parser.add_argument("--blender", help="a Blender executable to validate with")
    parser.add_argument("--no-validate", action="store_true", help="only build the zip")
    args = parser.parse_args(argv)
    zip_path = build(args.out_dir)
    print(zip_path)
    return 0 if args.no_validate else validate(zip_path, args.blender)


if __name__ == "__main__":
    sys.exit(main())
