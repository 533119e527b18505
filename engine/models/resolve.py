"""Where a model's files are on this machine. Offline only: reads the disk, the HF cache, torch's hub cache and
facenet-pytorch's cache."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache

from engine.errors import EngineError
from engine.models.registry import (
    DEFAULT_MODELS, DOWNLOAD_SIZES_MB, IDENTITY_FILE_SUFFIXES, ROLE_KINDS, ModelRef, parse_model, sd2_note,
)

# open_clip weights in a folder or hub repo, preferred first (open_clip's own names).
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

# Weights file stem of each Stable Diffusion component in a diffusers folder.
SD_WEIGHTS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}

# What a diffusers folder must hold: one file of each group, the first named when all are missing.
DIFFUSERS_FILES = (
    ("model_index.json",),
    ("scheduler/scheduler_config.json",),
    ("tokenizer/tokenizer.json", "tokenizer/vocab.json"),
    *(group for comp, stem in SD_WEIGHTS.items() for group in (
        (f"{comp}/config.json",),
        (f"{comp}/{stem}.safetensors", f"{comp}/{stem}.fp16.safetensors", f"{comp}/{stem}.bin"),
    )),
)
OPEN_CLIP_FILES = (("open_clip_config.json",), OPEN_CLIP_WEIGHTS)
PERCEPTUAL_CONFIG, PERCEPTUAL_WEIGHTS = "perceptual_config.json", "model.safetensors"
PERCEPTUAL_FILES = ((PERCEPTUAL_CONFIG,), (PERCEPTUAL_WEIGHTS,))
IDENTITY_CONFIG, IDENTITY_WEIGHTS = "identity_config.json", "model.safetensors"
IDENTITY_FILES = ((IDENTITY_CONFIG,), (IDENTITY_WEIGHTS,))

_LAYOUTS = {
    "open_clip": "a folder with open_clip_config.json + open_clip_model.safetensors",
    "diffusers": "a folder saved by StableDiffusionPipeline.save_pretrained "
                 "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)",
    "torchvision": "a folder with perceptual_config.json (VGG layers and feature taps) + model.safetensors",
    "facenet": "a folder with identity_config.json + model.safetensors, or a .pt/.pth/.safetensors file of "
               "facenet-pytorch's InceptionResnetV1 state dict",
}
_EXAMPLES = {"open_clip": DEFAULT_MODELS["clip"], "diffusers": DEFAULT_MODELS["diffusion"],
             "torchvision": DEFAULT_MODELS["perceptual"], "facenet": DEFAULT_MODELS["identity"]}
# What a local folder of each kind holds, for hints about hub models.
FOLDER_FILES = {"open_clip": "open_clip_config.json + open_clip_model.safetensors",
                "diffusers": "a StableDiffusionPipeline.save_pretrained folder",
                "torchvision": "perceptual_config.json + model.safetensors",
                "facenet": "identity_config.json + model.safetensors; or a .pt/.pth/.safetensors state dict file"}
# Where the weights of a URL model are cached, by kind, for messages.
_URL_CACHES = {"torchvision": "torch's hub cache", "facenet": "facenet-pytorch's cache"}


@dataclass(frozen=True)
class Located:
    """Where a model is, or why it is not there."""

    path: Path | None
    """The folder (or, for open_clip NAME/TAG, torchvision/NAME, facenet/NAME and an identity file, the weights
    file) to load; None when missing."""
    problem: str | None
    """What is missing and where it was looked for; None when found."""


def open_clip_weight_files(ref: ModelRef) -> tuple[str, ...]:
    """Candidate weight files of an open_clip NAME/TAG in its hub repo, preferred first."""
    import open_clip

    filename = os.path.split(open_clip.get_pretrained_cfg(ref.arch, ref.tag)["hf_hub"])[1]
    if not filename:
        return OPEN_CLIP_WEIGHTS
    # As open_clip does: a .safetensors twin of a named .bin/.pth is preferred when present.
    stem, ext = os.path.splitext(filename)
    return (stem + ".safetensors", filename) if ext in (".bin", ".pth") else (filename,)


def torch_hub_file(url: str) -> Path:
    """Where torchvision caches the weights at `url`: $TORCH_HOME/hub/checkpoints/ + the URL's file name."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def facenet_file(url: str) -> Path:
    """Where facenet-pytorch caches the weights at `url`: $TORCH_HOME/checkpoints/ + the URL's file name, with
    TORCH_HOME defaulting to $XDG_CACHE_HOME/torch (~/.cache/torch), as its get_torch_home() says. Not torch's
    hub cache ($TORCH_HOME/hub/checkpoints): facenet-pytorch keeps its own, so files it fetched are found here."""
    home = os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")))
    return Path(home) / "checkpoints" / os.path.basename(urlparse(url).path)


def url_file(ref: ModelRef) -> Path:
    """Where the weights file of a URL model (torchvision/NAME, facenet/NAME) is cached."""
    return facenet_file(ref.url) if ref.kind == "facenet" else torch_hub_file(ref.url)


def locate(ref: ModelRef) -> Located:
    """Find a model's files without touching the network."""
    if ref.path is not None:
        if not ref.path.exists():
            return Located(None, f"{ref.path} does not exist")
        if ref.path.is_file():  # only an identity model may be one weights file
            if ref.kind == "facenet" and ref.path.suffix.lower() in IDENTITY_FILE_SUFFIXES:
                return Located(ref.path, None)
            suffixes = "/".join(IDENTITY_FILE_SUFFIXES)
            return Located(None, f"{ref.path} is " + (f"not a {suffixes} weights file" if ref.kind == "facenet"
                                                      else "a file, not a model folder"))
        if ref.kind is None:
            return Located(None, f"{ref.path} holds none of model_index.json (diffusers), open_clip_config.json "
                                 "(open_clip), perceptual_config.json (torchvision) and identity_config.json (facenet)")
        return _check_folder(ref.path, _required(ref.kind), str(ref.path))

    if ref.url is not None:
        weights = url_file(ref)
        if weights.is_file():
            return Located(weights, None)
        return Located(None, f"{weights.name} is not in {_URL_CACHES[ref.kind]} ({weights.parent})")

    cache = hf_constants.HF_HUB_CACHE
    if ref.arch is not None:
        files = open_clip_weight_files(ref)
        for filename in files:
            cached = try_to_load_from_cache(ref.repo_id, filename)
            if isinstance(cached, str):
                return Located(Path(cached), None)
        return Located(None, f"{ref.repo_id}/{files[0]} is not in the Hugging Face cache ({cache})")

    first = _required(ref.kind)[0][0]
    cached = try_to_load_from_cache(ref.repo_id, first)
    if not isinstance(cached, str):
        return Located(None, f"{ref.repo_id} is not in the Hugging Face cache ({cache})")
    return _check_folder(Path(cached).parent, _required(ref.kind),
                         f"the cached snapshot of {ref.repo_id} ({Path(cached).parent})")


def model_status(name: str) -> dict:
    """Availability of a model on this machine, offline. Raises only for a malformed name.

    Returns {"name", "kind", "available", "location", "size_mb"}: size_mb is the size on disk
    when available, else the approximate download size when known, else None.
    """
    ref = parse_model(name)
    found = locate(ref).path
    size_mb = _disk_mb(found) if found is not None else DOWNLOAD_SIZES_MB.get(name)
    return {"name": name, "kind": ref.kind, "available": found is not None,
            "location": str(found) if found is not None else None, "size_mb": size_mb}


def missing_error(ref: ModelRef, role: str | None, located: Located) -> EngineError:
    """The model_missing error for a model that is not on this machine (role None: not from a job)."""
    where = f"models.{role}" if role else "model"
    if ref.path is not None:
        kind = ROLE_KINDS[role] if role else ref.kind
        if kind is None:
            hint = ("give a diffusers pipeline folder (model_index.json), an open_clip folder (open_clip_config.json), "
                    "a perceptual network folder (perceptual_config.json) or a face recogniser folder "
                    "(identity_config.json)")
        else:
            example = _EXAMPLES[kind]
            hint = (f"point {where} at {_LAYOUTS[kind]} (`python -m engine models make-tiny DIR` writes tiny ones), "
                    f"or use the hub model {example!r} after `python -m engine models download {example}`")
        return EngineError("model_missing", f"{where}: local model {ref.name!r} not usable: {located.problem}", hint)
    hint = (f"run `python -m engine models download {ref.name}` (or allow downloads), "
            f"or set {where} to a local folder with the model ({FOLDER_FILES[ref.kind]}).{sd2_note(ref)}")
    if ref.url is not None:
        hint += f" The file itself: {ref.url}, put at {url_file(ref)}."
    return EngineError(
        "model_missing", f"{where}: model {ref.name!r} is not available offline: {located.problem}", hint)


def _required(kind: str) -> tuple[tuple[str, ...], ...]:
    return {"diffusers": DIFFUSERS_FILES, "open_clip": OPEN_CLIP_FILES, "torchvision": PERCEPTUAL_FILES,
            "facenet": IDENTITY_FILES}[kind]


def _check_folder(folder: Path, required, described: str) -> Located:
    missing = [group[0] for group in required if not any((folder / f).is_file() for f in group)]
    if missing:
        return Located(None, f"{described} lacks {', '.join(missing)}")
    return Located(folder, None)


def _disk_mb(path: Path) -> float:
    # stat follows the HF cache's symlinks to the blobs.
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 1e6, 1)
