"""The face recogniser of the identity loss: facenet-pytorch's InceptionResnetV1, loaded frozen.

Forms (engine/models/registry.py): `facenet/vggface2` or `facenet/casia-webface`, facenet-pytorch's
published weights where facenet-pytorch itself caches them ($TORCH_HOME/checkpoints/
20180402-114759-vggface2.pt, 20180408-102900-casia-webface.pt); a local .pt/.pth file (a state dict,
read with weights_only) or .safetensors file; or a local folder with identity_config.json
({"architecture": "inception_resnet_v1", "image_size": 160}) + model.safetensors (what `models
make-tiny` writes). All hold InceptionResnetV1's state-dict names; the classifier of the published
files (`logits.*`, one output per training identity) is not used.

facenet-pytorch is imported when a recogniser is loaded, not with this module: only jobs whose
capture is a face load one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.errors import EngineError
from engine.models.hub import ensure_local
from engine.models.registry import parse_model
from engine.models.resolve import IDENTITY_CONFIG, IDENTITY_WEIGHTS

ARCHITECTURES = ("inception_resnet_v1",)
# facenet's input side: its weights were trained on 160 px MTCNN face crops.
FACENET_IMAGE_SIZE = 160
# The smallest input side InceptionResnetV1's strided convolutions and pools reduce to at least 1 px.
MIN_IMAGE_SIZE = 75
EMBEDDING_DIM = 512


@dataclass(frozen=True, eq=False)
class FaceEmbedder:
    """A frozen face recogniser: face images -> unit-length identity embeddings."""

    network: nn.Module
    """facenet-pytorch's InceptionResnetV1(classify=False), float32, in eval mode; no parameter requires grad."""
    image_size: int
    """Side S of the square images the network takes (160 for facenet's weights)."""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) RGB in [0, 1] -> (B, 512) unit-length embeddings, differentiable w.r.t. the images.

        The images should be face crops (facenet's were MTCNN crops with a small margin); nothing here
        finds the face. Resized to S x S (bilinear, antialiased when shrinking), then facenet's
        fixed_image_standardization, (255 x - 127.5) / 128; InceptionResnetV1 without its classifier
        L2-normalises its output itself.
        """
        device = next(self.network.parameters()).device
        x = images.permute(0, 3, 1, 2).to(device=device, dtype=torch.float32)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=max(x.shape[-2:]) > self.image_size)
        return self.network((x * 255 - 127.5) / 128)


def load_identity(name: str, device: str | torch.device, allow_downloads: bool,
                  role: str = "identity") -> FaceEmbedder:
    """Load the face recogniser `name` for `role` of job.json's `models`, float32 on `device`.

    Never touches the network unless allow_downloads; a model that is not on this machine is
    EngineError("model_missing") with the command that downloads it and where the file goes; a file
    or folder that is not a usable recogniser is model_missing saying what is wrong with it.
    """
    ref = parse_model(name, role)
    location = ensure_local(ref, role, allow_downloads)
    image_size = FACENET_IMAGE_SIZE
    if location.is_dir():
        image_size = _read_config(location, ref.name, role)
        state = _read_weights(location / IDENTITY_WEIGHTS, ref.name, role, location)
    else:
        state = _read_weights(location, ref.name, role, location)
    network = build_network()
    wanted = network.state_dict()
    # BatchNorm's num_batches_tracked counters only matter in training; files converted without them load.
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise _unusable(ref.name, role, location, f"it lacks {len(missing)} of InceptionResnetV1's {len(wanted)} "
                                                  f"weights (first: {missing[0]})")
    try:
        network.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    except RuntimeError as e:  # a weight of another shape than InceptionResnetV1's
        reason = " ".join(str(e).split())[:500]  # torch's message spans lines
        raise _unusable(ref.name, role, location, f"its weights do not fit InceptionResnetV1: {reason}") from e
    network.to(device=device, dtype=torch.float32).eval().requires_grad_(False)
    return FaceEmbedder(network=network, image_size=image_size)


def build_network() -> nn.Module:
    """facenet-pytorch's InceptionResnetV1 without its classifier, with PyTorch's default initialisation."""
    from facenet_pytorch import InceptionResnetV1  # heavy; only for face captures

    return InceptionResnetV1(pretrained=None, classify=False)


def _read_config(folder: Path, name: str, role: str) -> int:
    """The image_size of a folder's identity_config.json, checked."""
    try:
        config = json.loads((folder / IDENTITY_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _unusable(name, role, folder, f"{IDENTITY_CONFIG} is not readable JSON: {e}") from e
    if not isinstance(config, dict) or config.get("architecture") not in ARCHITECTURES:
        got = config.get("architecture") if isinstance(config, dict) else config
        raise _unusable(name, role, folder, f'{IDENTITY_CONFIG} "architecture" must be one of {list(ARCHITECTURES)} '
                                            f"(got {got!r})")
    size = config.get("image_size", FACENET_IMAGE_SIZE)
    if type(size) is not int or size < MIN_IMAGE_SIZE:
        raise _unusable(name, role, folder, f'{IDENTITY_CONFIG} "image_size" must be an integer >= {MIN_IMAGE_SIZE} '
                                            f"(got {size!r})")
    return size


def _read_weights(path: Path, name: str, role: str, location: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, or from a .pt/.pth pickle that may build tensors and nothing else."""
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated, foreign or non-weights file: pickle, zip and safetensors each raise their own
        raise _unusable(name, role, location, f"{path.name} is not a readable state dict: {type(e).__name__}: "
                                              f"{str(e)[:300]}") from e
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                            for k, v in state.items())):
        raise _unusable(name, role, location, f"{path.name} holds a {type(state).__name__}, not a state dict of "
                                              "tensors")
    return state


def _unusable(name: str, role: str, location: Path, problem: str) -> EngineError:
    return EngineError(
        "model_missing", f"models.{role}: model {name!r} not usable ({location}): {problem}",
        f"give facenet-pytorch's InceptionResnetV1 weights: a .pt/.pth file of its state dict (torch.save("
        f"model.state_dict(), ...), as facenet-pytorch's own 20180402-114759-vggface2.pt), a .safetensors file, or a "
        f'folder with {IDENTITY_CONFIG} ({{"architecture": "inception_resnet_v1", "image_size": 160}}) + '
        f"{IDENTITY_WEIGHTS}; `python -m engine models make-tiny DIR` writes a tiny one",
    )
