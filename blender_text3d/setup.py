"""The preferences' set-up tasks in Blender: SETUP, a tasks.SetupTasks that takes the engine from
the preferences, and the timer that follows it, as jobs.py's MANAGER and timer follow the jobs.

The operators start and cancel tasks through SETUP; ui.draw_preferences shows it.
"""
from __future__ import annotations

import bpy

from . import paths, props, tasks
from .jobs import redraw

TICK_S = 0.5  # downloads and installs take minutes: half a second is live enough


def engine() -> tuple[str, str | None]:
    """The engine Python and the folder on its path, as jobs get them."""
    root = paths.checkout_engine_root()
    return props.engine_python(props.preferences()), str(root) if root else None


def timer_callback() -> float | None:
    """The bpy.app.timers callback: act on ended tasks, redraw, and stop when nothing runs."""
    SETUP.tick()
    redraw("PREFERENCES")
    return TICK_S if SETUP.busy else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(timer_callback):
        bpy.app.timers.register(timer_callback, first_interval=TICK_S)


SETUP = tasks.SetupTasks(engine, on_start=ensure_timer)


def unregister() -> None:
    """Stop the tasks and forget them: their processes must not outlive the add-on."""
    if bpy.app.timers.is_registered(timer_callback):
        bpy.app.timers.unregister(timer_callback)
    SETUP.clear()
