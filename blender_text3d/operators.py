"""Operators: generate, cancel, import a job folder, clear finished jobs; capture selected
objects, import a capture's cameras, restyle a capture; and the preferences' set-up: check and
install the engine, list and download models (background tasks, held by setup.SETUP).

No `from __future__ import annotations` here: Blender reads property annotations as objects.
"""
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import api, captures, importer, jobspec, paths, props, scene_capture, tasks
from .jobs import MANAGER, redraw
from .setup import SETUP


def _override_props(names=jobspec.SETTING_NAMES) -> dict:
    """The panel's settings (those named) as operator properties: set ones override the scene's values.

    SKIP_SAVE, so a value from an earlier call is never mistaken for an explicit one.
    """
    out = {}
    for name, prop in props.Text3DSettings.__annotations__.items():
        if name in names:
            out[name] = prop.function(**{**prop.keywords, "options": {"SKIP_SAVE"}})
    return out


def _in_panel(context) -> bool:
    """Whether an operator's button is drawn in the sidebar (not called by a script)."""
    return context.region is not None and context.region.type == "UI" \
        and context.area is not None and context.area.type == "VIEW_3D"


def _settings_poll(cls, context, settings) -> bool:
    """The panel's button stands for the panel's settings, so it greys out with the reason.
    Scripts pass their own settings as properties, which poll cannot see: they are validated in
    execute instead."""
    if not hasattr(context.scene, "text3d"):
        return False
    if _in_panel(context):
        try:
            jobspec.build_job(settings())
        except jobspec.SettingsError as exc:
            cls.poll_message_set(str(exc))
            return False
    return True


def _run_props() -> dict:
    """How a job runs, not what it makes: the properties Generate and Restyle share."""
    return {
        "wait": BoolProperty(name="Wait", options={"SKIP_SAVE"},
                             description="Block until the job ends (background Blender, scripts)"),
        "engine_python": StringProperty(name="Engine Python", options={"SKIP_SAVE"},
                                        description="Override the preference for this job"),
        "device": StringProperty(name="Device", options={"SKIP_SAVE"},
                                 description="Override the preference: auto, cpu, cuda or cuda:N"),
    }


def _set_overrides(op) -> dict:
    """The operator's properties the caller set (all but wait): they override panel and preferences."""
    return {name: getattr(op, name) for name in op.__annotations__
            if name != "wait" and op.properties.is_property_set(name)}


def _error_text(error: dict) -> str:
    """A failed job's error as one report line: what went wrong, then what to change."""
    hint = error.get("hint")
    return f"Text3D: {error['message']}" + (f". {hint}" if hint else "")


def _submit(op, start) -> set:
    """Start a job with start() -> api.JobHandle and report how it went, as Generate and Restyle do."""
    try:
        handle = start()
    except jobspec.SettingsError as exc:
        op.report({"ERROR"}, f"Text3D: {exc}")
        return {"CANCELLED"}
    except OSError as exc:  # api turns its own into failed handles; anything else still ends here, not in a traceback
        op.report({"ERROR"}, f"Text3D: {paths.os_reason(exc)}: {exc.filename or exc}")
        return {"CANCELLED"}
    if handle.status == "failed":
        op.report({"ERROR"}, _error_text(handle.error))
        return {"CANCELLED"}
    op.report({"INFO"}, f"Text3D: {handle.title!r} {handle.status}")
    return {"FINISHED"}


# The panel's settings a text job uses: all but the Restyle section's settings of capture methods.
GENERATE_SETTINGS = tuple(name for name in jobspec.SETTING_NAMES if name not in props.EDIT_KEYS)


class TEXT3D_OT_generate(bpy.types.Operator):
    """Generate a 3D object from the prompt in a background engine job"""

    bl_idname = "text3d.generate"
    bl_label = "Generate"
    # No UNDO flag: the import at the end of the job pushes its own single undo step.

    __annotations__ = {
        **_override_props(GENERATE_SETTINGS),
        **_run_props(),
    }

    @classmethod
    def poll(cls, context):
        return _settings_poll(cls, context, api.settings_for)

    def execute(self, context):
        overrides = _set_overrides(self)
        return _submit(self, lambda: api.generate(overrides.pop("prompt", context.scene.text3d.prompt),
                                                  wait=self.wait, **overrides))


# The panel's settings a capture job uses; the Restyle section has its own method, prompt and quality.
RESTYLE_SETTINGS = ("quality", "steps", "render_size", "mesh_resolution", "seed", "live_preview", "texture_size",
                    *props.EDIT_KEYS)


class TEXT3D_OT_restyle(bpy.types.Operator):
    """Restyle the capture with the style prompt (NeRF-Art), edit it toward the prompt (latent editing), or
    reconstruct it, in a background engine job"""

    bl_idname = "text3d.restyle"
    bl_label = "Restyle"
    # No UNDO flag: the import at the end of the job pushes its own single undo step.

    __annotations__ = {
        **_override_props(RESTYLE_SETTINGS),
        "capture": StringProperty(name="Capture", options={"SKIP_SAVE"},
                                  description="Capture folder or transforms.json; unset = the panel's"),
        "prompt": StringProperty(name="Prompt", options={"SKIP_SAVE"},
                                 description="The style (nerf_art) or the edited object (latent_edit); "
                                 "unset = the panel's"),
        "method": EnumProperty(name="Method", items=props.RESTYLE_METHOD_ITEMS, options={"SKIP_SAVE"},
                               description="What to do with the capture; unset = the panel's"),
        "reconstruct_steps": IntProperty(name="Reconstruct Steps", min=0, options={"SKIP_SAVE"},
                                         description="nerf_art, latent_edit: reconstruction steps before the "
                                         "style or edit steps; unset = the quality preset's"),
        "source_job": StringProperty(name="Source Job", subtype="DIR_PATH", options={"SKIP_SAVE"},
                                     description="nerf_art, latent_edit: restyle or edit this finished job (a "
                                     "reconstruction) instead of reconstructing the capture"),
        **_run_props(),
    }

    @classmethod
    def poll(cls, context):
        return _settings_poll(cls, context, api.restyle_settings_for)

    def execute(self, context):
        overrides = _set_overrides(self)
        s = context.scene.text3d
        method = overrides.pop("method", s.restyle_method)
        capture = overrides.pop("capture", bpy.path.abspath(s.capture_path) if s.capture_path else "")
        prompt = overrides.pop("prompt", s.style_prompt if jobspec.takes_prompt(method) else "")
        return _submit(self, lambda: api.restyle(capture, prompt, method, wait=self.wait, **overrides))


class TEXT3D_OT_capture_selected(bpy.types.Operator):
    """Render the selected objects from cameras all around them into a new capture folder, for Restyle"""

    bl_idname = "text3d.capture_selected"
    bl_label = "Capture Selected"

    views: IntProperty(name="Views", default=24, min=1, soft_max=200,
                       description="Number of cameras (under 10: reconstruct with DietNeRF)")
    size: IntProperty(name="Size", default=256, min=8, max=4096, description="Side of the square images in pixels")
    engine: EnumProperty(name="Render Engine", default="WORKBENCH", items=[
        ("WORKBENCH", "Workbench", "Fast: the materials' colours, flat-lit (true albedo)"),
        ("CYCLES", "Cycles", "Path-traced with the scene's lights and materials (slower)")])
    samples: IntProperty(name="Samples", default=16, min=1, soft_max=256, description="Cycles samples per pixel")
    layout: EnumProperty(name="Orbit", default="sphere", items=[
        ("sphere", "Sphere", "Views spread evenly from slightly below to well above the objects"),
        ("ring", "Ring", "Views on one circle, slightly above the objects")])
    directory: StringProperty(name="Folder", subtype="DIR_PATH", options={"SKIP_SAVE"},
                              description="Capture folder; empty = a new one in the jobs folder's captures/")

    @classmethod
    def poll(cls, context):
        if not context.selected_objects:
            cls.poll_message_set("Select the objects to capture")
            return False
        return True

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        out_dir = bpy.path.abspath(self.directory) if self.directory else None
        try:
            folder = api.capture_selected(out_dir, self.views, self.size, self.engine, samples=self.samples,
                                          layout=self.layout)
        except paths.FolderError as exc:
            self.report({"ERROR"}, _error_text(exc.as_error()))
            return {"CANCELLED"}
        except OSError as exc:
            self.report({"ERROR"}, f"Text3D: cannot write the capture: {paths.os_reason(exc)}: {exc.filename or exc}")
            return {"CANCELLED"}
        except (scene_capture.NothingToCapture, RuntimeError) as exc:
            self.report({"ERROR"}, f"Text3D: {exc}")
            return {"CANCELLED"}
        context.scene.text3d.capture_path = str(folder)
        self.report({"INFO"}, f"Text3D: captured {self.views} views into {folder}")
        return {"FINISHED"}


class TEXT3D_OT_import_capture(bpy.types.Operator):
    """Add a capture's cameras (transforms.json) to the scene, in a collection named after it"""

    bl_idname = "text3d.import_capture"
    bl_label = "Import Capture"
    bl_options = {"REGISTER", "UNDO"}

    filepath: StringProperty(name="Capture", subtype="FILE_PATH",
                             description="A transforms.json, or a capture folder holding one")
    filter_glob: StringProperty(default="*.json", options={"HIDDEN"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        path = bpy.path.abspath(self.filepath)
        try:
            collection = scene_capture.import_cameras(path, context.scene.collection)
        except captures.CaptureError as exc:
            self.report({"ERROR"}, f"Text3D: {exc}")
            return {"CANCELLED"}
        context.scene.text3d.capture_path = path
        self.report({"INFO"}, f"Text3D: {len(collection.objects)} cameras in {collection.name!r}")
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


class TEXT3D_OT_resume(bpy.types.Operator):
    """Continue a cancelled job from its last checkpoint (from the start when it stopped before one)"""

    bl_idname = "text3d.resume"
    bl_label = "Resume"

    job_id: IntProperty(name="Job", description="Job number", options={"SKIP_SAVE"})

    def execute(self, context):
        job = MANAGER.find(self.job_id)
        if job is None:
            self.report({"WARNING"}, "Text3D: that job is no longer listed")
            return {"CANCELLED"}
        why = MANAGER.resume(job)
        if why:
            self.report({"WARNING"}, f"Text3D: cannot resume {job.title!r}: {why}")
            return {"CANCELLED"}
        redraw()
        return {"FINISHED"}


class TEXT3D_OT_import_job(bpy.types.Operator):
    """Import the mesh of a finished job folder at the 3D cursor (a restyled capture where the capture was)"""

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
            obj = importer.import_job(job_dir, context.collection)
        except importer.MeshFileError as exc:
            self.report({"ERROR"}, f"Text3D: {exc}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Text3D: imported {obj.name!r}")
        return {"FINISHED"}


def _follow(op, task: tasks.Task, wait: bool) -> set:
    """Wait for the task (and what follows it) or leave it to the timer; report a failure."""
    if wait:
        SETUP.drive()
    redraw("PREFERENCES")
    if task.status == "failed":
        op.report({"ERROR"}, _error_text({"message": task.error, "hint": task.hint}))
        return {"CANCELLED"}
    return {"FINISHED"}


class TEXT3D_OT_check_engine(bpy.types.Operator):
    """Run `python -m engine check --json` with the configured engine Python and show its answer"""

    bl_idname = "text3d.check_engine"
    bl_label = "Check Engine"

    wait: BoolProperty(name="Wait", options={"SKIP_SAVE"}, description="Block until the check ends")

    def execute(self, context):
        SETUP.start_check()
        if self.wait:
            SETUP.drive()
        return {"FINISHED"}


def _downloads_poll(cls) -> bool:
    refusal = props.downloads_refusal(props.preferences())
    if refusal:
        cls.poll_message_set(refusal)
    return not refusal


class TEXT3D_OT_install_engine(bpy.types.Operator):
    """Install the engine's environment (several GB) in the background, as `install/text3d.py engine` does"""

    bl_idname = "text3d.install_engine"
    bl_label = "Install Engine"

    script: StringProperty(name="Installer", options={"HIDDEN", "SKIP_SAVE"},
                           description="The install/text3d.py to run; empty = the checkout's or the extension's copy")
    wait: BoolProperty(name="Wait", options={"SKIP_SAVE"}, description="Block until the installation ends")

    @classmethod
    def poll(cls, context):
        if SETUP.running("install"):
            cls.poll_message_set("The engine is being installed")
            return False
        return _downloads_poll(cls)  # pip needs the network, which Blender's user may have forbidden

    def execute(self, context):
        return _follow(self, SETUP.install(self.script or paths.engine_install_script()), self.wait)


class TEXT3D_OT_refresh_models(bpy.types.Operator):
    """Ask the engine which models it uses, their size and whether each is on this machine"""

    bl_idname = "text3d.refresh_models"
    bl_label = "Refresh"

    wait: BoolProperty(name="Wait", options={"SKIP_SAVE"}, description="Block until the list arrives")

    def execute(self, context):
        return _follow(self, SETUP.refresh_models(), self.wait)


class TEXT3D_OT_download_model(bpy.types.Operator):
    """Download a model into the Hugging Face cache with the engine, in the background"""

    bl_idname = "text3d.download_model"
    bl_label = "Download"

    name: StringProperty(name="Model", description="Hub id of the model, as the model list names it")
    wait: BoolProperty(name="Wait", options={"SKIP_SAVE"}, description="Block until the download ends")

    @classmethod
    def poll(cls, context):
        return _downloads_poll(cls)

    def execute(self, context):
        if not self.name.strip():
            self.report({"ERROR"}, "Text3D: no model name given")
            return {"CANCELLED"}
        if SETUP.running(f"download:{self.name}"):
            self.report({"WARNING"}, f"Text3D: {self.name} is already being downloaded")
            return {"CANCELLED"}
        return _follow(self, SETUP.download(self.name), self.wait)


class TEXT3D_OT_cancel_task(bpy.types.Operator):
    """Stop a model download or the engine installation"""

    bl_idname = "text3d.cancel_task"
    bl_label = "Cancel"

    task: StringProperty(name="Task", description="install, or download:NAME", options={"SKIP_SAVE"})

    def execute(self, context):
        if not SETUP.cancel(self.task):
            self.report({"WARNING"}, f"Text3D: {self.task!r} is not running")
            return {"CANCELLED"}
        redraw("PREFERENCES")
        return {"FINISHED"}


class TEXT3D_OT_clear_finished(bpy.types.Operator):
    """Remove finished jobs from the list (their folders stay on disk)"""

    bl_idname = "text3d.clear_finished"
    bl_label = "Clear Finished"

    def execute(self, context):
        MANAGER.clear_finished()
        redraw()
        return {"FINISHED"}


classes = (TEXT3D_OT_generate, TEXT3D_OT_restyle, TEXT3D_OT_capture_selected, TEXT3D_OT_import_capture,
           TEXT3D_OT_cancel, TEXT3D_OT_resume, TEXT3D_OT_import_job, TEXT3D_OT_check_engine,
           TEXT3D_OT_clear_finished, TEXT3D_OT_install_engine, TEXT3D_OT_refresh_models, TEXT3D_OT_download_model,
           TEXT3D_OT_cancel_task)
