"""Checkpoints: safetensors for tensors, JSON for the rest, committed by an atomic rename.

checkpoints/latest.json names the tensor file it belongs to and is replaced last, so a
crash mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FORMAT = 1


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def save_checkpoint(job_dir: Path, step: int, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer | None, job: dict, object_frame: dict | None = None,
                    representation: dict | None = None, schedule: dict | None = None,
                    phases: list | None = None) -> Path:
    """Write the state after `step` completed steps; returns the tensor file.

    object_frame: where the object cube sits in the world (ObjectFrame.to_dict()), so that
    `render` and `export` put results where the run would have. representation: the method's
    Method.representation(), what its make_scene needs besides job.json (the job folder is then
    self-contained). schedule: the time budget's fits so far ({"job_phases", "fits"}), which --resume replays;
    kept in latest.json itself so that a checkpoint and its schedule are replaced together. phases: the job's
    [[name, steps], ...] before any budget fit, so that `batch --resume` knows the total a job.json asks without
    building the method.
    """
    folder = Path(job_dir) / "checkpoints"
    folder.mkdir(exist_ok=True)
    tensors, scalars = {}, {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"module.{name}.{key}"] = value.detach().cpu().contiguous()
    groups = []
    if optimizer is not None:
        state = optimizer.state_dict()
        for idx, entry in state["state"].items():
            for key, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{idx}.{key}"] = value
        groups = state["param_groups"]
    name = f"step_{step:06d}.safetensors"
    tmp = folder / (name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / name)
    _write_json(folder / "latest.json", {"format": FORMAT, "step": step, "tensors": name, "job": job,
                                         "object_frame": object_frame, "representation": representation or {},
                                         "schedule": schedule, "phases": phases,
                                         "optimizer": {"param_groups": groups, "scalars": scalars}})
    for old in folder.glob("step_*.safetensors"):
        if old.name != name:
            old.unlink()
    return folder / name


def read_checkpoint_meta(job_dir: Path) -> dict | None:
    """The latest checkpoint's JSON, or None when there is none."""
    path = Path(job_dir) / "checkpoints" / "latest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_checkpoint(job_dir: Path, modules: dict[str, torch.nn.Module],
                    optimizer: torch.optim.Optimizer | None, device: torch.device) -> dict:
    """Restore modules (and the optimizer when given) in place; returns the checkpoint's JSON."""
    meta = read_checkpoint_meta(job_dir)
    if meta is None:
        raise FileNotFoundError(f"no checkpoint in {Path(job_dir) / 'checkpoints'}")
    tensors = load_file(str(Path(job_dir) / "checkpoints" / meta["tensors"]), device=str(device))
    for name, module in modules.items():
        prefix = f"module.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    if optimizer is not None:
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                state.setdefault(int(idx), {})[name] = value
        for key, value in meta["optimizer"]["scalars"].items():
            idx, name = key.split(".", 1)
            state.setdefault(int(idx), {})[name] = value
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer"]["param_groups"]})
    return meta
