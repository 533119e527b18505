"""The extension zip: built by install/, accepted by Blender's `extension validate`, and
installed and enabled by Blender's own extension installer in an isolated user folder."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile

from addon_support import REPO

INSTALL_AND_ENABLE = textwrap.dedent("""
    import sys, bpy, addon_utils
    result = bpy.ops.extensions.package_install_files(filepath=sys.argv[-1], repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}, result
    name = "bl_ext.user_default.blender_text3d"
    for _ in range(2):
        assert name in bpy.context.preferences.addons and hasattr(bpy.types.Scene, "text3d")
        addon_utils.disable(name, default_set=True)
        assert not hasattr(bpy.types.Scene, "text3d")
        addon_utils.enable(name, default_set=True)
    package = sys.modules[name]
    from bl_ext.user_default.blender_text3d import paths, props
    assert paths.checkout_engine_root() is None  # an installed extension has no engine beside it
    script = paths.engine_install_script()  # but Install Engine runs the copy shipped in engine_src/
    assert script.parent.parent.parent == paths.Path(package.__file__).parent, script
    assert (script.parent.parent / "engine" / "__main__.py").is_file(), script
    jobs = props.jobs_dir(props.preferences())
    assert jobs.is_dir() and "extensions" in jobs.parts, jobs
    print("INSTALLED", package.__file__)
""")


def test_extension_builds_validates_and_installs(tmp_path):
    build = subprocess.run([sys.executable, str(REPO / "install" / "build_extension.py"), "--out-dir", str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    assert "Success parsing TOML" in build.stdout  # Blender's validator ran and accepted it
    zip_path = tmp_path / "blender_text3d-0.1.0.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
    expected = {p.relative_to(REPO / "blender_text3d").as_posix() for p in (REPO / "blender_text3d").rglob("*.py")}
    shipped = {n for n in names if n.startswith("engine_src/")}
    assert names - shipped == expected | {"blender_manifest.toml"} and "__init__.py" in names
    # engine_src/ is laid out like a checkout, so install/text3d.py runs unchanged from it.
    assert {"engine_src/engine/__main__.py", "engine_src/engine/cli.py", "engine_src/install/text3d.py",
            "engine_src/install/requirements-engine.txt", "engine_src/blender_text3d/paths.py"} <= shipped
    assert not any("__pycache__" in n or n.endswith((".pyc", ".pyo")) for n in names)
    assert all(n.endswith(".py") for n in shipped if n.startswith("engine_src/engine/"))

    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "user")}
    env.pop("PYTHONPATH", None)
    install = subprocess.run([sys.executable, "-c", INSTALL_AND_ENABLE, str(zip_path)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert f"INSTALLED {tmp_path / 'user'}" in install.stdout
