"""Operators: generate, cancel, import a job folder, check the engine, clear finished jobs.

No `from __future__ import annotations` here: Blender reads property annotations as objects.
"""
import threading
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty

from . import api, importer, jobspec, paths, props, runner
from .jobs import MANAGER, redraw


def _override_props() -> dict:
    """The panel's settings as operator properties: set ones override the scene's values.

    SKIP_SAVE, so a value from an earlier call is never mistaken for an explicit one.
    """
    out = {}
    for name, prop in props.Text3DSettings.__annotations__.items():
        if name in jobspec.SETTING_NAMES:
            out[name] = prop.function(**{**prop.keywords, "options": {"SKIP_SAVE"}})
    return out


class TEXT3D_OT_generate(bpy.types.Operator):
    """Generate a 3D object from the prompt in a background engine job"""

    bl_idname = "text3d.generate"
    bl_label = "Generate"
    # No UNDO flag: the import at the end of the job pushes its own single undo step.

    __annotations__ = {
        **_override_props(),
        "wait": BoolProperty(name="Wait", options={"SKIP_SAVE"},
                             description="Block until the job ends (background Blender, scripts)"),
        "engine_python": StringProperty(name="Engine Python", options={"SKIP_SAVE"},
                                        description="Override the preference for this job"),
        "device": StringProperty(name="Device", options={"SKIP_SAVE"},
                                 description="Override the preference: auto, cpu, cuda or cuda:N"),
    }

    @classmethod
    def poll(cls, context):
        if not hasattr(context.scene, "text3d"):
            return False
        # The panel's button stands for the panel's settings, so it greys out with the reason.
        # Scripts pass their own settings as properties, which poll cannot see: they are
        # validated in execute instead.
        in_panel = context.region is not None and context.region.type == "UI" \
            and context.area is not None and context.area.type == "VIEW_3D"
        if in_panel:
            try:
                jobspec.build_job(api.settings_for())
            except jobspec.SettingsError as exc:
                cls.poll_message_set(str(exc))
                return False
        return True

    def execute(self, context):
        overrides = {name: getattr(self, name) for name in self.__annotations__
                     if name != "wait" and self.properties.is_property_set(name)}
        try:
            handle = api.generate(overrides.pop("prompt", context.scene.text3d.prompt),
                                  wait=self.wait, **overrides)
        except jobspec.SettingsError as exc:
            self.report({"ERROR"}, f"Text3D: {exc}")
            return {"CANCELLED"}
        if handle.status == "failed":
            self.report({"ERROR"}, f"Text3D: {handle.error['message']}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Text3D: {handle.prompt!r} {handle.status}")
        return {"FINISHED"}


class TEXT3D_OT_cancel(bpy.types.Operator):
    """Stop a running job or drop a waiting one; nothing is added to the scene"""

    bl_idname = "text3d.cancel"
    bl_label = "Cancel"

    job_id: IntProperty(name="Job", description="Job number; 0 = the running job", options={"SKIP_SAVE"})

    @classmethod
    def poll(cls, context):
        if not any(not j.done for j in MANAGER.jobs):
            cls.poll_message_set("No job is running or waiting")
            return False
        return True

    def execute(self, context):
        job = MANAGER.find(self.job_id) if self.job_id else MANAGER.running
        if job is None or job.done:
            self.report({"WARNING"}, "Text3D: that job has already ended")
            return {"CANCELLED"}
        MANAGER.cancel(job)
        redraw()
        return {"FINISHED"}


class TEXT3D_OT_import_job(bpy.types.Operator):
    """Import the mesh of a finished job folder at the 3D cursor"""

    bl_idname = "text3d.import_job"
    bl_label = "Import Job"
    bl_options = {"REGISTER", "UNDO"}

    directory: StringProperty(name="Job Folder", subtype="DIR_PATH",
                              description="A job folder with result/mesh.npz")

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        job_dir = Path(bpy.path.abspath(self.directory))
        try:
            obj = importer.import_job(job_dir, context.collection, tuple(context.scene.cursor.location))
        except importer.MeshFileError as exc:
            self.report({"ERROR"}, f"Text3D: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Text3D: imported {obj.name!r}")
        return {"FINISHED"}


# The last `engine check` answer, shown in the preferences: {"ok", "report", "error"}.
CHECK_RESULT: dict = {}


class TEXT3D_OT_check_engine(bpy.types.Operator):
    """Run `python -m engine check --json` with the configured engine Python and show its answer"""

    bl_idname = "text3d.check_engine"
    bl_label = "Check Engine"

    wait: BoolProperty(name="Wait", options={"SKIP_SAVE"}, description="Block until the check ends")

    def execute(self, context):
        python = props.engine_python(props.preferences())
        root = paths.checkout_engine_root()
        CHECK_RESULT.clear()
        CHECK_RESULT["running"] = True
        # Importing torch takes seconds: check on a thread so the interface stays live.
        thread = threading.Thread(target=_check, args=(python, root), daemon=True)
        thread.start()
        if self.wait:
            thread.join()
        else:
            bpy.app.timers.register(_redraw_when_checked, first_interval=0.5)
        return {"FINISHED"}


def _check(python, root) -> None:
    CHECK_RESULT.update(runner.check_engine(python, root), running=False)


def _redraw_when_checked():
    redraw("PREFERENCES")
    return 0.5 if CHECK_RESULT.get("running") else None


class TEXT3D_OT_clear_finished(bpy.types.Operator):
    """Remove finished jobs from the list (their folders stay on disk)"""

    bl_idname = "text3d.clear_finished"
    bl_label = "Clear Finished"

    def execute(self, context):
        MANAGER.clear_finished()
        redraw()
        return {"FINISHED"}


classes = (TEXT3D_OT_generate, TEXT3D_OT_cancel, TEXT3D_OT_import_job, TEXT3D_OT_check_engine,
           TEXT3D_OT_clear_finished)
