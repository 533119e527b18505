"""Which device a job runs on, and recognising that it ran out of memory."""
from __future__ import annotations

import torch

from ..errors import EngineError


def pick_device(name: str) -> torch.device:
    """job.json `device` -> a torch device: "auto" is the first CUDA GPU, else Apple's GPU, else the CPU.

    Raises EngineError("invalid_job") naming the device when it is not on this machine."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise EngineError("invalid_job", f"device: {name!r} is not available on this machine "
                          f"({torch.cuda.device_count()} CUDA devices)", 'use "auto" or "cpu"')
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EngineError("invalid_job", "device: 'mps' is not available on this machine", 'use "auto" or "cpu"')
    return device


def is_out_of_memory(exc: BaseException) -> bool:
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
