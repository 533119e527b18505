"""The engine's torch-free modules, as the add-on reads them: job validation (spec), the method cards
(methods), the model roles (models.registry), the exit codes (errors) and the time budget's margins
(jobs.budget).

One source of truth: the add-on derives its method menus, quality presets, defaults and limits from
these modules instead of restating them. They import neither torch nor bpy, and ship with the
extension (engine_src/engine/, see install/build_extension.py); in a checkout they are the
repository's engine/. They are loaded under a private package name, so that no other add-on's
`engine` package can shadow them and they shadow nothing. No bpy: plain pytest covers this module.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = "_text3d_engine"
"""The engine package's name inside Blender's Python."""


def engine_package_dir(package_dir: Path | None = None) -> Path:
    """The engine/ folder: the checkout's beside this add-on, else the extension's engine_src/engine.

    Raises FileNotFoundError naming both places when neither exists (a broken install)."""
    package_dir = package_dir or Path(__file__).resolve().parent
    candidates = (package_dir.parent / "engine", package_dir / "engine_src" / "engine")
    for folder in candidates:
        if (folder / "spec.py").is_file() and (folder / "methods" / "__init__.py").is_file():
            return folder
    raise FileNotFoundError("the engine's sources are in neither " + " nor ".join(map(str, candidates))
                            + "; reinstall the extension")


def _package() -> ModuleType:
    if PACKAGE not in sys.modules:
        folder = engine_package_dir()
        spec = importlib.util.spec_from_file_location(PACKAGE, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = module
        spec.loader.exec_module(module)
    return sys.modules[PACKAGE]


def engine_module(name: str) -> ModuleType:
    """engine.<name> (e.g. "spec", "methods", "errors"), loaded on first use."""
    _package()
    return importlib.import_module(f"{PACKAGE}.{name}")


spec = engine_module("spec")
"""engine/spec.py: parse_job, the section dataclasses and their limits."""
methods = engine_module("methods")
"""engine/methods: CARDS (name -> MethodCard), in menu order."""
errors = engine_module("errors")
"""engine/errors.py: EXIT_CODES and EngineError."""
budget = engine_module("jobs.budget")
"""engine/jobs/budget.py: how the engine fits a run into job.json `budget_s` (its margins), for the estimates."""
