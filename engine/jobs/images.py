"""PNG output (sRGB uint8), written atomically so a reader never sees half a file."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(H,W,C) float in [0,1] -> (H,W,C) uint8."""
    return (image.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


def save_png(image: torch.Tensor, path: Path) -> None:
    """(H,W,3) or (H,W,4) float in [0,1] -> PNG at path (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    os.replace(tmp, path)
