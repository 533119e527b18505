"""Capture methods that start from a finished job (`inputs.source_job`) instead of reconstructing the capture
first: NeRF-Art restyles a reconstruction, latent tri-plane editing edits an inversion."""
from __future__ import annotations

import logging
from pathlib import Path

from ..captures import ObjectFrame
from ..errors import EngineError
from ..options import FieldOptions
from ..spec import JobSpec, load_job
from . import get_card

log = logging.getLogger("engine.source_job")


def source_spec(spec: JobSpec) -> JobSpec | None:
    """The finished job named by inputs.source_job, checked against the method card's source_methods; None when
    the job names none. Raises EngineError("invalid_job") naming the folder and what to give instead."""
    if spec.inputs.source_job is None:
        return None
    folder = Path(spec.inputs.source_job).expanduser()
    source_methods = get_card(spec.method).source_methods
    try:
        source = load_job(folder)
    except EngineError as e:
        raise EngineError("invalid_job", f"inputs.source_job: {folder} is not a readable job ({e.message})",
                          f"give the folder of a finished {' or '.join(source_methods)} job") from None
    if source.method not in source_methods:
        raise EngineError("invalid_job", f"inputs.source_job: {folder} is a {source.method} job",
                          f"give a job of method {' or '.join(source_methods)}")
    return source


def field_options(spec: JobSpec) -> FieldOptions:
    """The field settings of the source job when there is one (its checkpoint is loaded into this job's field):
    what its checkpoint recorded, else its job.json's options.field; without a source job, this job's."""
    from ..jobs.checkpoint import read_checkpoint_meta

    source = source_spec(spec)
    if source is None:
        return spec.options.field
    meta = read_checkpoint_meta(Path(spec.inputs.source_job).expanduser()) or {}
    recorded = (meta.get("representation") or {}).get("field")
    return FieldOptions(**recorded) if recorded else source.options.field


def load_source(method, device) -> None:
    """Load the source job's field (and its empty-space grid, when it has the same resolution) into
    `method.field`, and re-express the capture's cameras in the frame the source field was fitted in.

    method: a Reconstruct (its field, empty_space, capture and frame). Raises EngineError("invalid_job") when
    the source has no checkpoint or its weights do not fit this job's field."""
    from ..jobs.checkpoint import load_checkpoint, read_checkpoint_meta

    folder, source = method.spec.inputs.source_job, source_spec(method.spec)
    meta = read_checkpoint_meta(folder)
    if meta is None:
        raise EngineError("invalid_job", f"inputs.source_job: {folder} has no checkpoint",
                          "run the source job to the end first")
    modules = {"field": method.field}
    grid = method.empty_space.grid
    if grid is not None and source.options.occupancy.resolution == grid.resolution:
        modules["occupancy"] = grid
    try:
        load_checkpoint(folder, modules, None, device)
    except RuntimeError as e:
        raise EngineError("invalid_job", f"inputs.source_job: its checkpoint does not fit this job's field ({e})",
                          "use the same options.occupancy.resolution as the source job") from None
    if meta.get("object_frame"):
        frame = ObjectFrame.from_dict(meta["object_frame"])
        method.capture.c2w = frame.c2w_to_object(method.frame.c2w_to_world(method.capture.c2w))
        method.frame = method.capture.frame = frame
    log.info("starting from %s (step %d)", folder, meta["step"])


def frozen_source(method, device) -> int:
    """Give a Reconstruct-based method its frozen source: `method.source`, a copy of its field kept in checkpoints
    (modules["source"]), loaded from inputs.source_job when the job names one (load_source). Returns the
    reconstruction steps still to run: options.reconstruct_steps, or 0 when the source job is the reconstruction."""
    import copy

    method.source = copy.deepcopy(method.field).requires_grad_(False)
    method.modules["source"] = method.source
    if method.spec.inputs.source_job is None:
        return method.spec.options.reconstruct_steps
    load_source(method, device)
    method.source.load_state_dict(method.field.state_dict())
    return 0
