"""Console and batch interface.

    import blender_text3d.api as t3d
    job = t3d.generate("a ceramic teapot", steps=300, seed=1)   # returns at once
    job.wait(); job.status, job.result                          # blocks, drives the job itself
    t3d.batch(["a red chair", "a blue lamp"], quality="draft")  # one after another, on a grid
    t3d.batch(prompts, backend="ray", address="head-node:6379")  # all at once on a Ray cluster
    folder = t3d.capture_selected(views=24)                     # renders the selected objects
    t3d.restyle(folder, "a bronze statue", wait=True)           # NeRF-Art on that capture
    t3d.restyle(folder, "a man with a beard", "latent_edit", keep_original=2.0, face=True)  # latent editing

Settings start from the scene's Text3D panel (its Restyle section for restyle) and the add-on
preferences; any keyword of jobspec.Settings overrides them (budget_s=300 fits the run into five
minutes on this machine, budget_s=0 runs every step), as do engine_python=, engine_root=,
jobs_dir=, location=. estimate(...) says how long a job would take, from the jobs run here.
`wait=True` drives the job from the calling thread, which background Blender needs
because its timers never fire.

A job whose folder cannot be made (an unwritable jobs folder, a full disk) gets a failed handle
whose error (kind jobs_dir_unwritable or disk_full) names the folder and the preference to
change; nothing is left on disk or started.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import bpy

from . import estimate as estimates
from . import jobspec, paths, props, scene_capture
from .cluster import ClusterBatch
from .jobs import MANAGER, Job, read_preview_mesh_tagged

RUN_OPTIONS = ("engine_python", "engine_root", "jobs_dir", "location", "cancel_grace_s")
BATCH_BACKENDS = ("local", "ray")
GRID_SPACING = 2.5  # metres between batch results: each object fills the cube [-1, 1]^3


class JobHandle:
    """A submitted (or refused) job: status, error, result, wait(), cancel()."""

    def __init__(self, job: Job | None, prompt: str, error: dict | None = None) -> None:
        self._job = job
        self.prompt = prompt
        self._error = error

    @property
    def status(self) -> str:
        """queued, running, succeeded, failed or cancelled."""
        return self._job.status if self._job else "failed"

    @property
    def done(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled")

    @property
    def title(self) -> str:
        """The prompt, or for a capture job the capture's name and the style."""
        return self._job.title if self._job else self.prompt

    @property
    def error(self) -> dict | None:
        """kind, message and hint when the job failed or was refused."""
        return self._job.error if self._job else self._error

    @property
    def result(self) -> bpy.types.Object | None:
        """The imported object once the job succeeded."""
        return self._job.result if self._job else None

    @property
    def job_dir(self) -> Path | None:
        return self._job.job_dir if self._job else None

    @property
    def progress(self) -> tuple[int, int]:
        """(step, total) as last reported by the engine."""
        run = self._job.run if self._job else None
        return (run.state.step, run.state.total) if run else (0, 0)

    @property
    def pid(self) -> int | None:
        """The engine's process id while it runs."""
        return self._job.run.pid if self._job and self._job.run else None

    def wait(self, timeout: float | None = None, interval: float = 0.05) -> str:
        """Drive the job manager until this job ends (or timeout passes); returns status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done and (deadline is None or time.monotonic() < deadline):
            MANAGER.tick()
            if not self.done:
                time.sleep(interval)
        return self.status

    def cancel(self) -> None:
        """Ask the job to stop; a waiting job is dropped from the queue."""
        if self._job:
            MANAGER.cancel(self._job)

    def resume(self, *, wait: bool = False, timeout: float | None = None) -> JobHandle:
        """Queue a cancelled job (or one whose engine crashed) again, to continue from its last checkpoint.

        Raises ValueError naming why it cannot be (still running, succeeded, failed for its own reasons, ran in
        a cluster batch, folder gone). Returns self; wait=True drives it to its end as generate(wait=True) does.
        """
        why = "it was never started" if self._job is None else MANAGER.resume(self._job)
        if why:
            raise ValueError(f"cannot resume {self.title!r}: {why}")
        if wait:
            self.wait(timeout)
        return self

    def __repr__(self) -> str:
        return f"<Text3D job {self.prompt!r} {self.status}>"


def generate(prompt: str, *, wait: bool = False, timeout: float | None = None, **overrides) -> JobHandle:
    """Start (or queue) one job; raises jobspec.SettingsError before anything starts. A job folder
    that cannot be made gives a failed handle (see the module's docstring)."""
    run_options = _run_options(overrides)
    return _submit(settings_for(prompt, **overrides), run_options, wait, timeout)


def restyle(capture: str | Path, prompt: str = "", method: str = "nerf_art", *, wait: bool = False,
            timeout: float | None = None, **overrides) -> JobHandle:
    """Start (or queue) a capture job: restyle (nerf_art, with a style prompt), edit (latent_edit, with a prompt
    describing the edited object; keep_original= and face= tune it), reconstruct or dietnerf.

    The mesh is imported where the captured objects were (location= moves it); raises
    jobspec.SettingsError before anything starts. A job folder that cannot be made gives a failed
    handle, as in generate().
    """
    run_options = _run_options(overrides)
    settings = restyle_settings_for(str(capture), prompt, method, **overrides)
    return _submit(settings, run_options, wait, timeout)


def capture_selected(out_dir: str | Path | None = None, views: int = 24, size: int = 256, engine: str = "WORKBENCH",
                     *, samples: int = 16, layout: str = "sphere", objects=None, jobs_dir: str | Path | None = None
                     ) -> Path:
    """Render the selected objects (or `objects`) into a capture folder for restyle(); returns it.

    out_dir: the capture folder (a capture already there is replaced); None = a new one in the
    jobs folder's captures/ (or jobs_dir's).
    engine: WORKBENCH (fast) or CYCLES (`samples` per pixel). layout: "sphere" (views spread
    over a cap from slightly below to well above) or "ring". Raises scene_capture.NothingToCapture
    when nothing selected has a size, before any folder is made; paths.FolderError naming the folder
    when the new capture folder cannot be made (it is removed again if rendering into it fails).
    """
    objects = list(bpy.context.selected_objects if objects is None else objects)
    scene_capture.world_bounds(objects)
    if out_dir is not None:
        return scene_capture.render_capture(bpy.context, objects, Path(out_dir), views, size, engine, samples,
                                            layout)
    root = _jobs_root(jobs_dir)
    try:
        out_dir = paths.new_job_dir(root / "captures", objects[0].name)
    except OSError as exc:
        raise paths.jobs_dir_error(exc, root) from exc
    try:
        return scene_capture.render_capture(bpy.context, objects, out_dir, views, size, engine, samples, layout)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)  # a half-rendered capture would pass for a whole one
        raise


def batch(prompts: list[str], *, wait: bool = True, columns: int | None = None, backend: str | None = None,
          address: str | None = None, gpus_per_job: float | None = None, max_retries: int = 3,
          **overrides) -> list[JobHandle]:
    """Queue one job per prompt, results laid out on a grid from the 3D cursor (or location=).

    One handle per prompt, in order; a prompt with invalid settings, or whose job folder cannot
    be made, gets a failed handle with the reason, and the batch goes on.

    backend: "local" (one job after another on this machine) or "ray" (every job at once on a Ray
    cluster through `python -m engine batch --backend ray`, each imported as it ends); None = the
    preference Run Batches On. address: the cluster's (host:port); "" or None = the preference's, and
    when that is empty too, a local Ray cluster on this machine. gpus_per_job: GPUs each job takes on the
    cluster (None = the preference's); max_retries: how often a job whose worker died is resumed from its
    checkpoint. The jobs folder must be one every node sees at the same path (README, "Batches on a
    cluster"). Raises ValueError for an unknown backend.
    """
    prefs = props.preferences()
    backend = (backend or getattr(prefs, "batch_backend", "LOCAL")).lower()
    if backend not in BATCH_BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {', '.join(BATCH_BACKENDS)}")
    columns = columns or max(1, math.ceil(math.sqrt(len(prompts))))
    origin = overrides.pop("location", None) or tuple(bpy.context.scene.cursor.location)
    run_options = _run_options(overrides)
    handles, cluster_jobs = [], []
    for i, prompt in enumerate(prompts):
        row, col = divmod(i, columns)
        location = (origin[0] + col * GRID_SPACING, origin[1] - row * GRID_SPACING, origin[2])
        options = {**run_options, "location": location}
        try:
            settings = settings_for(prompt, **overrides)
            if backend == "local":
                handles.append(_submit(settings, options, wait=False, timeout=None))
                continue
            job = _make_job(settings, options)
        except jobspec.SettingsError as exc:
            handles.append(JobHandle(None, prompt, {"kind": "invalid_settings", "message": str(exc),
                                                    "hint": f"fix the setting {exc.key!r}"}))
            continue
        except paths.FolderError as exc:
            handles.append(JobHandle(None, prompt, exc.as_error()))
            continue
        cluster_jobs.append(job)
        handles.append(JobHandle(job, prompt))
    if cluster_jobs:
        first = cluster_jobs[0]
        cluster = ClusterBatch(first.engine_python, [job.job_dir for job in cluster_jobs],
                               address=address or getattr(prefs, "ray_address", ""),
                               gpus_per_job=gpus_per_job if gpus_per_job is not None else
                               getattr(prefs, "gpus_per_job", 1.0),
                               max_retries=max_retries, engine_root=first.engine_root,
                               prepare=read_preview_mesh_tagged)
        MANAGER.submit_batch(cluster_jobs, cluster)
    if wait:
        for handle in handles:
            handle.wait()
    return handles


def estimate(prompt: str | None = None, *, restyle: bool = False, jobs_dir: str | Path | None = None,
             **overrides) -> estimates.Estimate:
    """How long generate(prompt, **overrides) (restyle=True: restyle(**overrides)) would take on this machine, from
    the jobs already run in the jobs folder: .text is the panel's line, .seconds and .steps the numbers.
    Raises jobspec.SettingsError for settings that make no job."""
    settings = restyle_settings_for(prompt=prompt, **overrides) if restyle else settings_for(prompt, **overrides)
    return estimates.estimate(jobspec.build_job(settings), jobs_dir or props.jobs_dir(props.preferences()))


def settings_for(prompt: str | None = None, **overrides) -> jobspec.Settings:
    """The settings a job would get: preferences, then the panel, then the overrides."""
    values = props.preference_settings(props.preferences())
    if hasattr(bpy.context.scene, "text3d"):
        values.update(props.panel_settings(bpy.context.scene.text3d))
    values.update(overrides)
    if prompt is not None:
        values["prompt"] = prompt
    return jobspec.settings_from(values)


def restyle_settings_for(capture: str | None = None, prompt: str | None = None, method: str | None = None,
                         **overrides) -> jobspec.Settings:
    """The settings a capture job would get: preferences, then the panel's Restyle section, then
    the overrides; capture, prompt and method None = the panel's. The section's settings of one method
    (latent_edit's keep_original and face) apply only to a job of that method."""
    values = props.preference_settings(props.preferences())
    if hasattr(bpy.context.scene, "text3d"):
        values.update(props.restyle_settings(bpy.context.scene.text3d, method))
    values.update(overrides)
    values.update({k: v for k, v in (("capture", capture), ("prompt", prompt), ("method", method)) if v is not None})
    return jobspec.settings_from(values)


def _run_options(overrides: dict) -> dict:
    """Take the options of the run (not of the job) out of the overrides."""
    return {k: overrides.pop(k) for k in RUN_OPTIONS if k in overrides}


def _submit(settings: jobspec.Settings, run_options: dict, wait: bool, timeout: float | None) -> JobHandle:
    """Make the job and queue it; a folder that cannot be made is a failed handle, not an exception."""
    try:
        job = _make_job(settings, run_options)
    except paths.FolderError as exc:
        return JobHandle(None, settings.prompt, exc.as_error())
    handle = JobHandle(MANAGER.submit(job), settings.prompt)
    if wait:
        handle.wait(timeout)
    return handle


def _jobs_root(jobs_dir: str | Path | None) -> Path:
    """jobs_dir, else the Jobs Folder preference's (the default one is made on first use, which can
    fail: paths.FolderError)."""
    if jobs_dir:
        return Path(jobs_dir)
    try:
        return props.jobs_dir(props.preferences())
    except OSError as exc:
        raise paths.jobs_dir_error(exc, exc.filename or "(the extension's user folder)") from exc


def _make_job(settings: jobspec.Settings, run_options: dict) -> Job:
    """The job, its folder made and job.json written; raises jobspec.SettingsError before anything is
    made, paths.FolderError when the folder cannot be made (nothing is left of it)."""
    spec = jobspec.build_job(settings)  # refuses bad settings before a folder or process exists
    prefs = props.preferences()
    title = jobspec.job_title(spec)
    job_dir = paths.create_job_dir(_jobs_root(run_options.get("jobs_dir")), title,
                                   {"job.json": json.dumps(spec, indent=2) + "\n"})
    root = run_options.get("engine_root") or paths.checkout_engine_root()
    context = bpy.context
    # A capture job's mesh comes back in the capture's world frame: at the origin it lands
    # where the captured objects are.
    home = (0.0, 0.0, 0.0) if jobspec.is_capture_method(settings.method) else context.scene.cursor.location
    return Job(settings=settings, spec=spec, job_dir=job_dir,
               engine_python=str(run_options.get("engine_python") or props.engine_python(prefs)),
               engine_root=str(root) if root else None,
               collection=getattr(context, "collection", None) or context.scene.collection,
               location=tuple(run_options.get("location") or home),
               cancel_grace_s=run_options.get("cancel_grace_s", 15.0))
