"""Which device a job runs on, and recognising that it ran out of memory.

torch is imported inside the functions: mps_fallback() must run before the first `import torch`.
"""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from ..errors import EngineError

if TYPE_CHECKING:
    import torch

MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"
"""With it set to 1, an operator Apple's GPU backend lacks runs on the CPU (slower) instead of failing.
torch reads it once, when it is imported."""


def mps_fallback() -> None:
    """On macOS, let operators MPS lacks fall back to the CPU, unless the user set PYTORCH_ENABLE_MPS_FALLBACK.

    Call before torch is imported (the CLI does, first thing). It changes nothing for tensors on the CPU."""
    if sys.platform == "darwin":
        os.environ.setdefault(MPS_FALLBACK, "1")


def _mps_available() -> bool:
    import torch

    mps = getattr(torch.backends, "mps", None)  # absent from old or stripped torch builds
    return bool(mps and mps.is_available())


def available_devices() -> list[str]:
    """The job.json `device` values this machine can run, besides "auto": "cpu", then "cuda:0"..., then "mps"."""
    import torch

    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def pick_device(name: str) -> torch.device:
    """job.json `device` -> a torch device: "auto" is the first CUDA GPU, else Apple's GPU (MPS), else the CPU.

    Raises EngineError("invalid_job") naming the requested device, what this machine has and the torch
    build, when the device is not on this machine (no CUDA GPU, a GPU index past the last, no MPS)."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", built without CUDA")
            raise _absent(name, f"this machine has no CUDA GPU ({build})")
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            raise _absent(name, f"this machine has {count} CUDA GPU{'s' if count != 1 else ''} "
                                f"(cuda:0 to cuda:{count - 1})")
    if device.type == "mps" and not _mps_available():
        mps = getattr(torch.backends, "mps", None)
        why = ("torch {} was built without MPS" if not (mps and mps.is_built()) else
               "torch {} finds no Apple GPU (MPS needs Apple Silicon or an AMD GPU, and macOS 12.3 or newer)")
        raise _absent(name, f"this machine has no Apple GPU ({why.format(torch.__version__)})")
    return device


def _absent(name: str, why: str) -> EngineError:
    return EngineError("invalid_job", f"device {name!r} requested but {why}; available: "
                       f"{', '.join(available_devices())}", 'set job.json "device" to "auto" or to one of those')


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def out_of_memory_error(spec, device) -> EngineError:
    """The out_of_memory error, with the job's settings that cost memory and their values."""
    return EngineError(
        "out_of_memory", f"the {device} device ran out of memory",
        f"lower render.size (now {spec.render.size}), render.samples_per_ray (now {spec.render.samples_per_ray})"
        f" or export.resolution (now {spec.export.resolution}); or close other programs using the GPU")
