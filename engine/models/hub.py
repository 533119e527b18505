"""Fetching models into the Hugging Face cache (torchvision weights into torch's hub cache, facenet weights
into facenet-pytorch's cache): the only module here that touches the network."""
from __future__ import annotations

import fnmatch
import sys
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from torch.hub import HASH_REGEX, download_url_to_file
from tqdm.auto import tqdm

from engine.errors import EngineError
from engine.models.registry import (
    ALTERNATIVES, DEFAULT_MODELS, DOWNLOAD_SIZES_MB, ModelRef, parse_model, sd2_note,
)
from engine.models.resolve import (
    FOLDER_FILES, OPEN_CLIP_FILES, SD_WEIGHTS, locate, missing_error, open_clip_weight_files, url_file,
)

# What `download` fetches of a diffusers repository: of each group, the first name or pattern the
# repository has. fp16 safetensors halve the download; loading casts them to the dtype asked for.
DIFFUSERS_DOWNLOAD = (
    ("model_index.json",),
    ("scheduler/scheduler_config.json",),
    ("tokenizer/*",),
    *(group for comp, stem in SD_WEIGHTS.items() for group in (
        (f"{comp}/config.json",),
        (f"{comp}/{stem}.fp16.safetensors", f"{comp}/{stem}.safetensors"),
    )),
)


class _SilentTqdm(tqdm):
    def __init__(self, *args, **kwargs):
        kwargs["disable"] = True
        super().__init__(*args, **kwargs)


def download(name: str, progress: bool = True) -> str:
    """Fetch a hub model into the HF cache (torchvision and facenet weights from their URLs into torch's and
    facenet-pytorch's caches) and return its local location (a local path is only checked).

    progress: a line and tqdm bars on stderr. Raises EngineError("model_missing") when the hub
    (or the server of a URL) cannot be reached or lacks the model.
    """
    ref = parse_model(name)
    if ref.url is not None:
        _fetch_url(ref, progress)
    elif ref.repo_id is not None:
        if ref.arch is not None:
            groups = (open_clip_weight_files(ref),)
        elif ref.kind == "open_clip":
            groups = OPEN_CLIP_FILES
        else:
            groups = DIFFUSERS_DOWNLOAD
        if progress:
            size = DOWNLOAD_SIZES_MB.get(name)
            about = f" (about {size / 1000:.1f} GB)" if size else ""
            print(f"downloading {name}{about} from the Hugging Face hub", file=sys.stderr)
        _fetch(ref, groups, None if progress else _SilentTqdm)
    located = locate(ref)
    if located.path is None:
        raise missing_error(ref, None, located)
    return str(located.path)


def ensure_local(ref: ModelRef, role: str, allow_downloads: bool) -> Path:
    """The local location of a model, downloaded first when it is missing and downloads are allowed."""
    located = locate(ref)
    if located.path is not None:
        return located.path
    if not allow_downloads or ref.path is not None:
        raise missing_error(ref, role, located)
    return Path(download(ref.name))


def _fetch(ref: ModelRef, groups: tuple[tuple[str, ...], ...], tqdm_class: type | None) -> None:
    """Download, of each group of alternatives, the first file (or pattern) the repository has."""
    with _hub_errors(ref):
        listing = snapshot_download(ref.repo_id, allow_patterns=[p for g in groups for p in g], dry_run=True)
    present = [f.filename for f in listing]
    chosen = []
    for group in groups:
        pattern = next((p for p in group if fnmatch.filter(present, p)), None)
        if pattern is None:
            raise EngineError("model_missing", f"hub repository {ref.repo_id} has none of {', '.join(group)}",
                              _other_models_hint(ref))
        chosen.append(pattern)
    with _hub_errors(ref):
        snapshot_download(ref.repo_id, allow_patterns=chosen, tqdm_class=tqdm_class)


def _fetch_url(ref: ModelRef, progress: bool) -> None:
    """Download torchvision (facenet) weights to where torchvision (facenet-pytorch) caches them, checking
    the hash prefix in a torchvision file name as torchvision does (facenet-pytorch's names carry none).
    torch writes a temporary file and renames it: never half written."""
    target = url_file(ref)
    if target.is_file():
        return
    if progress:
        size = DOWNLOAD_SIZES_MB.get(ref.name)
        about = f" (about {size / 1000:.1f} GB)" if size else ""
        print(f"downloading {ref.name}{about} from {urlparse(ref.url).netloc}", file=sys.stderr)
    match = HASH_REGEX.search(target.name) if ref.kind == "torchvision" else None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        download_url_to_file(ref.url, str(target), match.group(1) if match else None, progress=progress)
    except Exception as e:  # network, proxy, disk, a hash that does not match: all leave the model missing
        raise EngineError(
            "model_missing", f"could not download {ref.name} from {ref.url}: {type(e).__name__}: {e}",
            f"check the network connection (and HTTPS_PROXY), or copy {target.name} into {target.parent} "
            f"from a machine that has it, or give a local model ({FOLDER_FILES[ref.kind]}).",
        ) from e


@contextmanager
def _hub_errors(ref: ModelRef):
    """Turn the hub's failures into model_missing errors with a hint."""
    try:
        yield
    except GatedRepoError as e:
        raise EngineError("model_missing", f"hub repository {ref.repo_id} is gated: {e}",
                          "accept its licence on huggingface.co and log in with `hf auth login`") from e
    except RepositoryNotFoundError as e:
        raise EngineError("model_missing", f"hub repository {ref.repo_id} does not exist (or is private)",
                          _other_models_hint(ref)) from e
    except Exception as e:  # network, proxy, offline mode, disk: all leave the model missing
        reason = e.__cause__ or e  # huggingface_hub wraps the connection error that says most
        raise EngineError(
            "model_missing",
            f"could not download {ref.name} from the Hugging Face hub: {type(reason).__name__}: {reason}",
            "check the network connection (and HTTPS_PROXY; HF_HUB_OFFLINE=1 disables downloads), "
            "or copy the model folder from a machine that has it and give its path instead." + sd2_note(ref),
        ) from e


def _other_models_hint(ref: ModelRef) -> str:
    if ref.kind == "diffusers":
        ids = ", ".join(repr(i) for i in (DEFAULT_MODELS["diffusion"], *ALTERNATIVES["diffusion"]))
        known = sd2_note(ref) or f" Ids that exist: {ids}."
        return f"use a local folder saved with save_pretrained, or a hub repository that exists.{known}"
    return f"use an open_clip model that exists, e.g. {DEFAULT_MODELS['clip']!r}, or a local folder"
