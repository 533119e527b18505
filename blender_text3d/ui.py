"""The sidebar panel (3D Viewport > Sidebar > Text3D) and the preferences; draws only.

The jobs come from jobs.MANAGER, the set-up tasks from setup.SETUP.
"""
from __future__ import annotations

import textwrap

import bpy

from . import api, captures, estimate, jobspec, paths, props, tokens
from .jobs import MANAGER, resume_refusal
from .setup import SETUP

STATUS_ICONS = {"queued": "SORTTIME", "running": "PLAY", "succeeded": "CHECKMARK",
                "failed": "ERROR", "cancelled": "CANCEL"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def _wrapped(layout, text: str, width: int = 48, icon: str = "NONE") -> None:
    """Labels cut at word boundaries, since panel labels do not wrap."""
    for i, line in enumerate(textwrap.wrap(text, width) or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


class Text3DPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Text3D"


class VIEW3D_PT_text3d(Text3DPanel, bpy.types.Panel):
    bl_label = "Text3D"

    def draw(self, context):
        s = context.scene.text3d
        layout = self.layout
        layout.prop(s, "prompt", text="")
        _draw_tokens(layout, s.prompt)
        diffusion = jobspec.uses_diffusion(s.method)
        if diffusion:
            layout.prop(s, "negative_prompt", text="Not")
            _draw_tokens(layout, s.negative_prompt, count_row=False)
        col = layout.column(align=True)
        col.prop(s, "method", text="")
        if diffusion:
            col.prop(s, "guidance_scale")
            row = col.row(align=True)
            row.label(text="Timesteps")
            row.prop(s, "t_range_min", text="")
            row.prop(s, "t_range_max", text="")
        col.prop(s, "quality", text="")
        if s.quality == "custom":
            col.prop(s, "steps")
            col.prop(s, "render_size")
        else:
            q = jobspec.preset(s.method, s.quality)
            layout.label(text=f"{q.steps} steps, {q.render_size} px renders, mesh {q.mesh_resolution}"
                         + _preset_budget(q, s.custom_budget))
        _draw_budget(layout, s, "custom_budget", "budget_minutes")
        row = layout.row()
        row.prop(s, "seed")
        row.prop(s, "live_preview", text="Live")
        _draw_job_check(layout, api.settings_for)
        row = layout.row()
        row.scale_y = 1.5
        row.operator("text3d.generate", icon="PLAY")


class VIEW3D_PT_text3d_orbit(Text3DPanel, bpy.types.Panel):
    bl_label = "Camera Orbit"
    bl_parent_id = "VIEW3D_PT_text3d"
    bl_options = {"DEFAULT_CLOSED"}

    def draw_header(self, context):
        self.layout.prop(context.scene.text3d, "custom_orbit", text="")

    def draw(self, context):
        s = context.scene.text3d
        layout = self.layout
        if not s.custom_orbit:
            layout.label(text="The method's default orbit")
        layout.active = s.custom_orbit
        for lo, hi, label in (("radius_min", "radius_max", "Radius"), ("elevation_min", "elevation_max",
                              "Elevation"), ("azimuth_min", "azimuth_max", "Azimuth"), ("fov_min", "fov_max", "FOV")):
            row = layout.row(align=True)
            row.label(text=label)
            row.prop(s, lo, text="")
            row.prop(s, hi, text="")


class VIEW3D_PT_text3d_export(Text3DPanel, bpy.types.Panel):
    bl_label = "Export"
    bl_parent_id = "VIEW3D_PT_text3d"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        s = context.scene.text3d
        layout = self.layout
        row = layout.row()
        if s.quality == "custom":
            row.prop(s, "mesh_resolution")
        else:
            row.label(text=f"Mesh Resolution: {jobspec.preset(s.method, s.quality).mesh_resolution} (preset)")
        layout.prop(s, "texture_size")


class VIEW3D_PT_text3d_restyle(Text3DPanel, bpy.types.Panel):
    bl_label = "Restyle"
    bl_parent_id = "VIEW3D_PT_text3d"

    def draw(self, context):
        s = context.scene.text3d
        layout = self.layout
        row = layout.row(align=True)
        row.operator("text3d.capture_selected", icon="RESTRICT_RENDER_OFF")
        row.operator("text3d.import_capture", text="Import", icon="IMPORT")
        layout.prop(s, "capture_path", text="")
        views = _views(s.capture_path)
        if isinstance(views, int):
            layout.label(text=f"{views} views", icon="OUTLINER_OB_CAMERA")
        layout.prop(s, "restyle_method", text="")
        if isinstance(views, int) and captures.suggested_method(views) not in (None, s.restyle_method):
            _wrapped(layout, f"Only {views} views: DietNeRF is made for fewer than {captures.FEW_VIEWS}", icon="INFO")
        words = jobspec.prompt_words(s.restyle_method)
        if jobspec.takes_prompt(s.restyle_method):
            layout.prop(s, "style_prompt", text=words.label)
            _draw_tokens(layout, s.style_prompt)
        options = jobspec.option_names(s.restyle_method)
        if "keep_original" in options:
            layout.prop(s, "keep_original", slider=True)
        if "face" in options:
            layout.prop(s, "face")
        layout.prop(s, "restyle_quality", text="")
        q = jobspec.preset(s.restyle_method, s.restyle_quality)
        own = f"{words.label.lower()} steps" if words.label else "steps"
        steps = f"{q.reconstruct_steps} + {q.steps} {own}" if q.reconstruct_steps else f"{q.steps} steps"
        layout.label(text=f"{steps}, {q.render_size} px, mesh {q.mesh_resolution}"
                     + _preset_budget(q, s.restyle_custom_budget))
        _draw_budget(layout, s, "restyle_custom_budget", "restyle_budget_minutes")
        _draw_job_check(layout, api.restyle_settings_for)
        row = layout.row()
        row.scale_y = 1.5
        row.operator("text3d.restyle", text=words.button, icon="PLAY")


def _draw_tokens(layout, text: str, count_row: bool = True) -> None:
    """The text's CLIP token count ("≈" when estimated), and a warning row when the text encoders' 77 tokens
    cannot hold it (the engine then drops words from its end)."""
    if not text.strip():
        return
    count = tokens.count(text, props.engine_python(props.preferences()))
    if count_row or count.over:
        layout.label(text=count.label)
    if count.over:
        _wrapped(layout, count.warning, icon="ERROR")


def _preset_budget(q: jobspec.Quality, custom: bool) -> str:
    """The preset's time budget for its summary line, "" when it has none or the user sets their own."""
    return f", at most {estimate.duration(q.budget_s)}" if q.budget_s and not custom else ""


def _draw_budget(layout, s, toggle: str, minutes: str) -> None:
    """The time budget: the preset's, or the user's minutes (0 = none) once the toggle is on."""
    row = layout.row(align=True)
    row.prop(s, toggle, text="Budget")
    sub = row.row(align=True)
    sub.active = getattr(s, toggle)
    sub.prop(s, minutes, text="Minutes")


def _draw_job_check(layout, settings_for) -> None:
    """What the engine would refuse in these settings, else how long the job should take on this machine."""
    try:
        job = jobspec.build_job(settings_for())
    except jobspec.SettingsError as exc:
        _wrapped(layout.box(), str(exc), icon="ERROR")
        return
    _wrapped(layout, estimate.estimate(job, props.jobs_dir(props.preferences())).text, icon="TIME")


def _views(capture_path: str) -> int | None:
    """The capture's training views, None without a readable capture (build_job says why)."""
    if not capture_path:
        return None
    try:
        return captures.cached_view_count(bpy.path.abspath(capture_path))
    except captures.CaptureError:
        return None


class VIEW3D_PT_text3d_jobs(Text3DPanel, bpy.types.Panel):
    bl_label = "Jobs"
    bl_parent_id = "VIEW3D_PT_text3d"

    def draw(self, context):
        layout = self.layout
        for running in MANAGER.running_jobs:  # this machine's job, and a cluster batch's
            _draw_running(layout.box(), running)
        for job in MANAGER.queued:
            row = layout.row()
            row.label(text=job.title, icon=STATUS_ICONS["queued"])
            row.operator("text3d.cancel", text="", icon="X").job_id = job.id
        finished = [j for j in MANAGER.jobs if j.done]
        for job in reversed(finished):
            _draw_finished(layout, job)
        row = layout.row()
        row.operator("text3d.import_job", icon="IMPORT")
        if finished:
            row.operator("text3d.clear_finished", text="", icon="TRASH")


def _draw_running(layout, job) -> None:
    state = job.run.state
    layout.label(text=job.title, icon=STATUS_ICONS["running"])
    cluster = getattr(job.run, "batch", None) is not None
    if state.status in ("queued", "starting") and cluster:
        layout.label(text="Waiting for a worker of the Ray cluster...")
    elif state.status == "starting":
        layout.label(text="Starting the engine...")
    elif state.info:
        layout.label(text=f"{state.info.get('method', '')} on {state.info.get('device', '?')}")
    if state.total:
        phase = f"{state.phase.capitalize()} " if state.phase else ""
        text = f"{phase}{state.step}/{state.total}  ETA {_duration(state.eta_s)}"
        layout.progress(factor=state.step / state.total, type="BAR", text=text)
    if job.preview_image is not None and job.preview_image.icon_id:  # 0 in background Blender
        layout.template_icon(icon_value=job.preview_image.icon_id, scale=8)
    col = layout.column(align=True)
    for name, value in sorted(state.losses.items()):
        col.label(text=f"{name}: {value:.4f}")
    for message in (job.messages + getattr(job.run, "messages", []))[-2:]:
        _wrapped(layout, message, icon="INFO")
    if job.run.cancel_requested_at is not None:
        layout.label(text="Cancelling...", icon="CANCEL")
    else:
        layout.operator("text3d.cancel", icon="CANCEL").job_id = job.id


def _draw_finished(layout, job) -> None:
    box = layout.box() if job.error else layout
    row = box.row()
    row.label(text=job.title, icon=STATUS_ICONS.get(job.status, "QUESTION"))
    if job.job_dir is not None:
        row.operator("wm.path_open", text="", icon="FILE_FOLDER").filepath = str(job.job_dir)
    if resume_refusal(job) is None:
        row.operator("text3d.resume", text="", icon="PLAY").job_id = job.id
    if job.error:
        _wrapped(box, f"{job.error.get('kind', 'error')}: {job.error.get('message', '')}")
        if job.error.get("hint"):
            _wrapped(box, job.error["hint"], icon="INFO")
        col = box.column(align=True)
        col.scale_y = 0.7
        for line in job.error.get("log_tail", "").splitlines()[-6:]:
            col.label(text=line[:80])


def draw_preferences(prefs, layout) -> None:
    col = layout.column()
    col.prop(prefs, "engine_python")
    if not prefs.engine_python:
        col.label(text=f"Using {paths.default_engine_python()}", icon="INFO")
    col.prop(prefs, "device")
    col.prop(prefs, "clip_model")
    col.prop(prefs, "diffusion_model")
    col.prop(prefs, "perceptual_model")
    col.prop(prefs, "downloads")
    if prefs.downloads == "FOLLOW":
        state = "on" if bpy.app.online_access else "off"
        col.label(text=f"Blender's Allow Online Access is {state}", icon="INFO")
    col.prop(prefs, "jobs_dir")
    col.prop(prefs, "batch_backend")
    if prefs.batch_backend == "RAY":
        col.prop(prefs, "ray_address")
        col.prop(prefs, "gpus_per_job")
        _wrapped(col, "The Jobs Folder must be shared by every node, at the same path", icon="INFO")
    row = layout.row()
    row.operator("text3d.check_engine", icon="CHECKMARK")
    row.operator("text3d.install_engine", icon="IMPORT")
    install = SETUP.tasks.get("install")
    if install is not None:
        box = layout.box()
        _draw_task(box, "install", install, "Installing the engine")
        if install.status == "succeeded" and prefs.engine_python:
            _wrapped(box, "Clear Engine Python above to use the installed engine", icon="INFO")
    check = SETUP.check
    if check.get("running"):
        row.label(text="Checking...")
    elif check:
        box = layout.box()
        box.label(text="Engine ready" if check["ok"] else "Engine not usable",
                  icon="CHECKMARK" if check["ok"] else "ERROR")
        if check.get("error"):
            _wrapped(box, check["error"])
        for line in _report_lines(check.get("report") or {}):
            _wrapped(box, line)
    _draw_models(prefs, layout.box())


def _draw_task(layout, key: str, task, title: str) -> None:
    """A background task: its state and time; its latest stderr line (the progress) and, while
    it runs, Cancel; once it failed, the error and the hint."""
    row = layout.row()
    row.label(text=f"{title}: {task.status} ({_duration(task.elapsed_s)})",
              icon=STATUS_ICONS.get(task.status, "QUESTION"))
    if task.status == "running" and task.cancel_requested_at is None:
        row.operator("text3d.cancel_task", text="", icon="CANCEL").task = key
    if task.status in ("running", "succeeded") and task.last_line:
        _wrapped(layout, task.last_line[-200:], width=80)
    elif task.status == "failed":
        _wrapped(layout, task.error, width=80, icon="ERROR")
        if task.hint:
            _wrapped(layout, task.hint, width=80, icon="INFO")


def _draw_models(prefs, layout) -> None:
    """The engine's model list, a Download button (or the download's progress) for each missing one."""
    row = layout.row()
    row.label(text="Models")
    row.operator("text3d.refresh_models", icon="FILE_REFRESH")
    listing = SETUP.tasks.get("models")
    if listing is None:
        layout.label(text="Refresh asks the engine which models it uses and which are here")
    elif listing.status == "running":
        layout.label(text="Asking the engine...", icon="SORTTIME")
    elif listing.status == "failed":
        _wrapped(layout, f"Listing failed: {listing.error}", icon="ERROR")
        _wrapped(layout, "Set Engine Python or press Install Engine, then Refresh", icon="INFO")
    refusal = props.downloads_refusal(prefs)
    for model in SETUP.model_rows:
        box = layout.box()
        row = box.row()
        role = model["role"] if model["default"] else f"{model['role']}, alternative"
        row.label(text=f"{model['name']} ({role})", icon="CHECKMARK" if model["available"] else "IMPORT")
        size = f"{model['size_mb'] / 1000:.1f} GB" if isinstance(model["size_mb"], (int, float)) else "size ?"
        key = f"download:{model['name']}"
        task = SETUP.tasks.get(key)
        if model["available"]:
            row.label(text=f"{size}, present")
        elif task is not None and task.status in ("running", "succeeded"):
            _draw_task(box, key, task, "Download")
        else:
            row.operator("text3d.download_model", text=f"Download {size}", icon="IMPORT").name = model["name"]
            if task is not None:
                _draw_task(box, key, task, "Download")
    if refusal and any(not m["available"] for m in SETUP.model_rows):
        _wrapped(layout, refusal, icon="INFO")


def _report_lines(report: dict):
    """`engine check --json` as short lines: models and devices one per line, by name."""
    for key, value in report.items():
        if isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()):
            yield from (f"{key} {k}: {_brief(v)}" for k, v in value.items())
        else:
            yield f"{key}: {_brief(value)}"


def _brief(value) -> str:
    if isinstance(value, dict):
        state = {True: "available", False: "MISSING"}.get(value.get("available"), "")
        return " ".join(str(x) for x in (value.get("name", ""), state) if x) or str(value)
    if isinstance(value, list):
        return ", ".join(_brief(v) for v in value)
    return str(value)


classes = (VIEW3D_PT_text3d, VIEW3D_PT_text3d_orbit, VIEW3D_PT_text3d_export, VIEW3D_PT_text3d_restyle,
           VIEW3D_PT_text3d_jobs)
