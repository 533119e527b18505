"""Models: model strings, offline status, loading (open_clip, diffusers, torchvision VGG), downloads, tiny models.

Offline first: nothing here touches the network unless a download is asked for.
"""
from engine.models.clip import ClipModel, load_clip
from engine.models.diffusion import DiffusionModels, load_diffusion
from engine.models.hub import download
from engine.models.perceptual import VggFeatures, load_perceptual
from engine.models.registry import DEFAULT_MODELS, ModelRef, parse_model
from engine.models.resolve import model_status
from engine.models.tiny import make_tiny

__all__ = [
    "DEFAULT_MODELS", "ClipModel", "DiffusionModels", "ModelRef", "VggFeatures", "download", "load_clip",
    "load_diffusion", "load_perceptual", "make_tiny", "model_status", "parse_model",
]
