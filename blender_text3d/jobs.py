"""The job manager: one running engine, a queue of waiting jobs, and what their events do
in Blender (panel preview image, live preview object, import at the end).

Everything here runs on Blender's main thread, driven by `timer_callback` in the UI or
by `tick()` from blocking API calls (timers never fire in background Blender).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import bpy.utils.previews

from . import importer, jobspec
from .cluster import ClusterBatch, job_key
from .runner import EngineRun

TICK_S = 0.2  # timer interval: progress feels live, and an idle tick costs well under 1 ms
KEEP_FINISHED = 5  # finished jobs the panel keeps listing, for their status and errors


@dataclass(eq=False)
class Job:
    """One requested generation or restyle, from the queue to its imported object."""

    settings: jobspec.Settings
    """What was asked for."""
    spec: dict
    """The job.json written for it."""
    job_dir: Path
    """Its job folder."""
    engine_python: str
    """Interpreter that runs the engine."""
    engine_root: str | None
    """Folder put on the engine's PYTHONPATH (a checkout), or None."""
    collection: bpy.types.Collection
    """Where the object goes."""
    location: tuple
    """Where the object goes in the scene: the 3D cursor when it was asked for; the origin for a
    capture job, whose mesh is in the capture's world frame."""
    cancel_grace_s: float = 15.0
    """Seconds between the cancel file and terminating the engine."""
    id: int = 0
    """Manager-wide number, for operators that act on one job."""
    status: str = "queued"
    """queued, running, succeeded, failed or cancelled."""
    error: dict | None = None
    """kind, message, hint (and log_tail for crashes) when it failed."""
    run: EngineRun | None = None
    """The engine subprocess once started."""
    result: bpy.types.Object | None = None
    """The imported object once it succeeded."""
    preview_object: bpy.types.Object | None = None
    """The live preview object while it runs."""
    preview_mesh_step: int = -1
    """Step of the mesh shown by preview_object."""
    preview_image: bpy.types.ImagePreview | None = None
    """The latest preview image, loaded for the panel."""
    messages: list = field(default_factory=list)
    """Notes for the panel (e.g. a preview mesh that could not be read)."""
    resume: bool = False
    """Start the engine with --resume (JobManager.resume): continue from the job folder's checkpoint."""

    @property
    def prompt(self) -> str:
        return self.settings.prompt

    @property
    def title(self) -> str:
        """What the panel and the objects call it: the prompt, or the capture and the style."""
        return jobspec.job_title(self.spec)

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")


def _alive(obj) -> bool:
    """Whether a stored ID reference still points at data (undo and file loads free it)."""
    try:
        return obj is not None and obj.name is not None
    except ReferenceError:
        return False


class JobManager:
    """Holds the jobs; at most one engine runs here at a time (it wants the whole GPU). The jobs of a batch
    on a Ray cluster (submit_batch) run there side by side and are followed alongside."""

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.previews: bpy.utils.previews.ImagePreviewCollection | None = None
        self._ids = itertools.count(1)

    @property
    def running(self) -> Job | None:
        """The job whose engine runs on this machine."""
        return next((j for j in self.jobs if j.status == "running" and not on_cluster(j)), None)

    @property
    def running_jobs(self) -> list[Job]:
        """Every running job: this machine's and a cluster's."""
        return [j for j in self.jobs if j.status == "running"]

    @property
    def queued(self) -> list[Job]:
        return [j for j in self.jobs if j.status == "queued"]

    @property
    def busy(self) -> bool:
        return any(not j.done for j in self.jobs)

    def find(self, job_id: int) -> Job | None:
        return next((j for j in self.jobs if j.id == job_id), None)

    def submit(self, job: Job) -> Job:
        """Queue a job; it starts at once when no other job runs."""
        job.id = next(self._ids)
        finished = [j for j in self.jobs if j.done]
        for old in finished[:max(0, len(finished) - KEEP_FINISHED + 1)]:
            self.jobs.remove(old)
        self.jobs.append(job)
        self.tick()
        ensure_timer()
        return job

    def submit_batch(self, jobs: list[Job], batch: ClusterBatch) -> list[Job]:
        """Start a cluster batch of these jobs (batch.runs holds one run per job folder); they run at once,
        beside this machine's queue, and each is imported when it ends."""
        for job in jobs:
            job.id = next(self._ids)
            job.run = batch.runs[job_key(job.job_dir)]
            job.status = "running"
            self.jobs.append(job)
        batch.start()
        self.tick()
        ensure_timer()
        return jobs

    def tick(self) -> bool:
        """Follow the running jobs, finish them, start the next local one; True if anything changed."""
        changed = False
        for job in self.running_jobs:
            events = job.run.poll()
            changed = changed or bool(events)
            if job.run.done:
                self._finish(job)
                changed = True
            elif events:
                self._show_progress(job, events)
        if self.running is None and self.queued:
            self._start(self.queued[0])
            changed = True
        return changed

    def cancel(self, job: Job) -> None:
        """Drop a waiting job, or ask the running one to stop."""
        if job.status == "queued":
            job.status = "cancelled"
        elif job.status == "running":
            job.run.cancel()

    def resume(self, job: Job) -> str | None:
        """Queue a cancelled job (or one whose engine crashed) again, at the end of the queue, to continue from
        its folder's last checkpoint (from the start when it stopped before one); returns why it cannot be, or
        None. The cancel file that stopped it is removed."""
        why = resume_refusal(job)
        if why:
            return why
        try:
            (job.job_dir / "cancel").unlink(missing_ok=True)
        except OSError as exc:
            return f"its cancel file cannot be removed ({exc.strerror or exc}): {job.job_dir / 'cancel'}"
        job.resume = (job.job_dir / "checkpoints" / "latest.json").is_file()
        job.status, job.error, job.run, job.messages, job.preview_mesh_step = "queued", None, None, [], -1
        self.jobs.remove(job)
        self.jobs.append(job)
        self.tick()
        ensure_timer()
        return None

    def stop_all(self) -> None:
        """Cancel everything and wait for the engine to exit (file load, quit, unregister)."""
        for batch in {id(j.run.batch): j.run.batch for j in self.running_jobs if on_cluster(j)}.values():
            batch.stop()  # every cancel file at once, rather than one job's grace after another's
        for job in self.jobs:
            if job.status == "queued":
                job.status = "cancelled"
            elif job.status == "running":
                job.run.stop()
                self._remove_preview(job)
                job.status, job.error = job.run.state.status, job.run.state.error
                if not job.done:  # it outlived SIGKILL's grace: say so rather than wait on
                    job.status = "failed"
                    job.error = {"kind": "engine_crashed", "message": f"the engine (pid {job.run.pid}) did not stop",
                                 "hint": "End the process by hand"}

    def clear_finished(self) -> None:
        for job in [j for j in self.jobs if j.done]:
            self.jobs.remove(job)
            self._release_preview_image(job)

    def open_previews(self) -> None:
        if self.previews is None:
            self.previews = bpy.utils.previews.new()

    def close_previews(self) -> None:
        if self.previews is not None:
            bpy.utils.previews.remove(self.previews)
            self.previews = None

    def _start(self, job: Job) -> None:
        job.status = "running"
        job.run = EngineRun(job.engine_python, job.job_dir, engine_root=job.engine_root,
                            cancel_grace_s=job.cancel_grace_s, prepare=_read_preview_mesh(job.job_dir),
                            resume=job.resume)
        job.run.start()

    def _show_progress(self, job: Job, events: list[dict]) -> None:
        state = job.run.state
        if state.preview is not None and any(e["event"] == "preview" for e in events):
            self._load_preview_image(job, state.preview)
        meshes = [e for e in events if "preview_arrays" in e or "preview_error" in e]
        if meshes:  # only the latest of those that arrived since the last tick is worth building
            self._update_preview(job, meshes[-1])

    def _load_preview_image(self, job: Job, path: Path) -> None:
        if self.previews is None:
            return
        key = f"job{job.id}"
        if key in self.previews:
            del self.previews[key]
        job.preview_image = self.previews.load(key, str(path), "IMAGE")

    def _release_preview_image(self, job: Job) -> None:
        if self.previews is not None and f"job{job.id}" in self.previews:
            del self.previews[f"job{job.id}"]
        job.preview_image = None

    def _update_preview(self, job: Job, event: dict) -> None:
        """Show an intermediate mesh, rebuilding one object's mesh in place."""
        job.preview_mesh_step = job.run.state.preview_mesh_step
        if "preview_error" in event:
            job.messages.append(f"preview mesh skipped: {event['preview_error']}")
            return
        data = event["preview_arrays"]
        if _alive(job.preview_object):
            importer.fill_mesh(job.preview_object.data, data)
        else:
            job.preview_object = importer.new_object(f"Text3D preview: {job.title}", data,
                                                     _collection(job), job.location)
            job.preview_object["text3d_preview"] = True

    def _remove_preview(self, job: Job) -> None:
        if _alive(job.preview_object):
            importer.remove_object(job.preview_object)
        job.preview_object = None

    def _finish(self, job: Job) -> None:
        """Import a succeeded job (replacing its preview object); nothing stays for the others."""
        state = job.run.state
        self._remove_preview(job)
        self._release_preview_image(job)
        job.status, job.error = state.status, state.error
        if job.status != "succeeded":
            return
        try:
            job.result = importer.import_job(job.job_dir, _collection(job), job.location,
                                             state.artifacts.get("mesh"))
        except (importer.MeshFileError, OSError) as exc:
            job.status = "failed"
            job.error = {"kind": "import_failed", "message": str(exc),
                         "hint": "The engine said it succeeded but its mesh cannot be read; see the job folder"}
            return
        undo_push(f"Text3D: {job.title}")


RESUMABLE_ERRORS = ("engine_crashed",)
"""Error kinds of a failed job worth resuming as it was: its engine died (killed, out of the machine's memory)
rather than the job being wrong (invalid_job, model_missing, diverged: the same settings fail again)."""


def resume_refusal(job: Job) -> str | None:
    """Why `job` cannot be resumed from the panel, or None: it must have ended cancelled (or with its engine
    crashed), on this machine, its folder still there."""
    if not job.done:
        return "it has not ended"
    if on_cluster(job):
        return "it ran in a cluster batch: continue the batch with `python -m engine batch --resume`"
    if job.status == "succeeded":
        return "it has already succeeded"
    kind = (job.error or {}).get("kind")
    # A resume the engine refused (job.json changed since the checkpoint) may be tried again once it is fixed.
    if job.status == "failed" and kind not in RESUMABLE_ERRORS and not (job.resume and kind == "invalid_job"):
        return f"it failed ({kind}): the same settings would fail again; start a new job"
    if not (job.job_dir / "job.json").is_file():
        return f"its job folder {job.job_dir} is gone or has no job.json"
    return None


def on_cluster(job: Job) -> bool:
    """Whether the job runs in a cluster batch (its run is a cluster.ClusterJobRun)."""
    return getattr(job.run, "batch", None) is not None


def read_preview_mesh_tagged(event: dict) -> None:
    """ClusterBatch's `prepare` hook: _read_preview_mesh for the job the event is tagged with."""
    _read_preview_mesh(Path(event["job_dir"]))(event)


def _read_preview_mesh(job_dir: Path):
    """A runner `prepare` hook: read preview meshes on the reader thread (numpy only, no bpy),
    so the timer tick only builds the Blender mesh."""
    def prepare(event: dict) -> None:
        if event["event"] == "artifact" and event.get("kind") == "preview_mesh" and isinstance(event.get("path"), str):
            try:
                event["preview_arrays"] = importer.load_npz(job_dir / event["path"])
            except importer.MeshFileError as exc:
                event["preview_error"] = str(exc)
    return prepare


def _collection(job: Job) -> bpy.types.Collection:
    return job.collection if _alive(job.collection) else bpy.context.scene.collection


def undo_push(message: str) -> None:
    """One undo step for an import that happened outside an operator (timer, API)."""
    if bpy.ops.ed.undo_push.poll():
        bpy.ops.ed.undo_push(message=message)


MANAGER = JobManager()


def timer_callback() -> float | None:
    """The bpy.app.timers callback: drain events, redraw, and stop when nothing is left."""
    if MANAGER.tick():
        redraw()
    return TICK_S if MANAGER.busy else None


def ensure_timer() -> None:
    if not bpy.app.timers.is_registered(timer_callback):
        bpy.app.timers.register(timer_callback, first_interval=TICK_S)


def redraw(area_type: str = "VIEW_3D") -> None:
    """Redraw the areas of a type: by default the 3D Viewports, whose sidebar holds the panel."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == area_type:
                area.tag_redraw()


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    MANAGER.stop_all()
    # The load frees the closing file's datablocks: no job (nor a handle a script keeps)
    # may still point at them. Blender 4.2 crashes at exit when Python releases such
    # stale references.
    for job in MANAGER.jobs:
        job.collection = job.result = job.preview_object = None
    MANAGER.clear_finished()


def register():
    MANAGER.open_previews()
    bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister():
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    if bpy.app.timers.is_registered(timer_callback):
        bpy.app.timers.unregister(timer_callback)
    MANAGER.stop_all()
    MANAGER.clear_finished()
    MANAGER.close_previews()
