"""The perceptual network for LPIPS-style losses: a VGG's convolutional stack, loaded frozen.

Two forms (engine/models/registry.py): `torchvision/vgg16`, torchvision's ImageNet weights as
torchvision caches them ($TORCH_HOME/hub/checkpoints/vgg16-397923af.pth); or a local folder with
perceptual_config.json and model.safetensors (what `models make-tiny` writes). Both hold
torchvision's VGG state-dict names (`features.N.weight`); only the layers up to the last feature
tap are built, so VGG16's classifier (90% of its weights) is never kept in memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.errors import EngineError
from engine.models.hub import ensure_local
from engine.models.registry import parse_model
from engine.models.resolve import PERCEPTUAL_CONFIG, PERCEPTUAL_WEIGHTS

# ImageNet channel statistics the torchvision VGG weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision models: the layer configuration as torchvision.models.vgg.make_layers takes it (ints
# are 3x3 conv widths, "M" a 2x2 max-pool) and the indices in `features` of the ReLUs tapped:
# VGG16's relu1_2, relu2_2, relu3_3 and relu4_3.
TORCHVISION_VGG = {
    "torchvision/vgg16": {
        "layers": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
        "taps": [3, 8, 15, 22],
    },
}


@dataclass(frozen=True, eq=False)
class VggFeatures:
    """A frozen VGG convolutional stack and the ReLU outputs a perceptual loss compares."""

    features: nn.Sequential
    """torchvision's VGG `features` up to the last tap, in eval mode; no parameter requires grad."""
    taps: tuple[int, ...]
    """Increasing indices in `features` of the ReLUs whose outputs are the features."""
    mean: torch.Tensor
    """(3,) ImageNet channel means of RGB in [0, 1], on the model's device: normalised = (rgb - mean) / std."""
    std: torch.Tensor
    """(3,) ImageNet channel standard deviations, on the model's device."""

    def extract(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images -> one (B, C_l, H_l, W_l) ReLU output per tap, differentiable.

        Each max-pool halves the side: H and W of at least 2^(pools before the last tap) (8 for VGG16).
        """
        out, x = [], images
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


def load_perceptual(name: str, device: str | torch.device, allow_downloads: bool,
                    role: str = "perceptual") -> VggFeatures:
    """Load the perceptual network `name` for `role` of job.json's `models`, float32 on `device`.

    Never touches the network unless allow_downloads; a model that is not on this machine is
    EngineError("model_missing") with the command that downloads it.
    """
    from safetensors.torch import load_file

    ref = parse_model(name, role)
    location = ensure_local(ref, role, allow_downloads)
    if ref.url is not None:
        config = TORCHVISION_VGG[ref.name]
        # weights_only: the pickle may build tensors and nothing else.
        state = torch.load(location, map_location="cpu", weights_only=True)
    else:
        config = json.loads((location / PERCEPTUAL_CONFIG).read_text(encoding="utf-8"))
        state = load_file(location / PERCEPTUAL_WEIGHTS)
    features, taps = _build(config, ref.name, role, location)
    wanted = {f"features.{key}" for key in features.state_dict()}
    try:
        features.load_state_dict({key[len("features."):]: value for key, value in state.items() if key in wanted})
    except RuntimeError as e:  # missing layers or other widths than the configuration says
        raise _unusable(ref.name, role, location, f"its weights do not fit its layers: {e}") from e
    features.to(device).eval().requires_grad_(False)
    return VggFeatures(
        features=features,
        taps=taps,
        mean=torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=device),
        std=torch.tensor(IMAGENET_STD, dtype=torch.float32, device=device),
    )


def build_features(layers: list) -> nn.Sequential:
    """torchvision's VGG `features` for a layer configuration, with PyTorch's default initialisation."""
    from torchvision.models.vgg import make_layers

    return make_layers(layers, batch_norm=False)


def _build(config, name: str, role: str, location: Path) -> tuple[nn.Sequential, tuple[int, ...]]:
    """The VGG stack up to the last tap; a configuration that does not describe one is model_missing."""
    layers, taps = (config.get("layers"), config.get("taps")) if isinstance(config, dict) else (None, None)
    if not (isinstance(layers, list) and layers and all(v == "M" or (type(v) is int and v > 0) for v in layers)):
        raise _unusable(name, role, location,
                        f'{PERCEPTUAL_CONFIG} "layers" must be a list of conv widths and "M"')
    features = build_features(layers)
    relus = [i for i, layer in enumerate(features) if isinstance(layer, nn.ReLU)]
    if not (isinstance(taps, list) and taps and taps == sorted(set(taps)) and set(taps) <= set(relus)):
        raise _unusable(name, role, location, f'{PERCEPTUAL_CONFIG} "taps" must be increasing indices of ReLUs '
                                              f"in the layers (these: {relus})")
    return features[:taps[-1] + 1], tuple(taps)


def _unusable(name: str, role: str, location: Path, problem: str) -> EngineError:
    return EngineError(
        "model_missing", f"models.{role}: model {name!r} not usable ({location}): {problem}",
        f'a perceptual folder holds {PERCEPTUAL_CONFIG} ({{"layers": [64, 64, "M", ...], "taps": [3, 8, ...]}}, '
        f"torchvision's VGG configuration) + {PERCEPTUAL_WEIGHTS} with torchvision's VGG names (features.N.weight); "
        "`python -m engine models make-tiny DIR` writes a tiny one",
    )
