"""Models: model strings, offline status, loading (open_clip, diffusers, torchvision VGG, facenet), downloads,
tiny models.

Offline first: nothing here touches the network unless a download is asked for.
The loaders import torch and model libraries; they are imported on first use, so that
`engine.models.registry` (model roles and strings, read by job validation and the add-on)
stays importable without them.
"""
from __future__ import annotations

import importlib

from .registry import DEFAULT_MODELS, ModelRef, parse_model

# Public name -> the submodule that defines it, imported when the name is first used.
_LAZY = {
    "ClipModel": "clip", "load_clip": "clip",
    "DiffusionModels": "diffusion", "load_diffusion": "diffusion",
    "download": "hub",
    "FaceEmbedder": "identity", "load_identity": "identity",
    "VggFeatures": "perceptual", "load_perceptual": "perceptual",
    "model_status": "resolve",
    "make_tiny": "tiny",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DEFAULT_MODELS", "ModelRef", "parse_model", *_LAZY]
