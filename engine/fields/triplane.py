"""EG3D's tri-plane representation (Chan et al., CVPR 2022, arXiv 2112.07945): three axis-aligned feature
planes and a small decoder (NVlabs/eg3d training/triplane.py, volumetric_rendering/renderer.py).

Projection order, written down because checkpoints depend on it: plane 0 is XY, plane 1 is XZ,
plane 2 is YZ. A point (x, y, z) in the object cube [-1,1]^3 reads plane k at (u, v) with
  XY: u = x, v = y;   XZ: u = x, v = z;   YZ: u = y, v = z,
u along a plane's width (last axis) and v along its height, by grid_sample with bilinear
interpolation, zero padding and align_corners=False: texel (row i, column j) of an R x R plane
covers u in [-1 + 2j/R, -1 + 2(j+1)/R] and v likewise with i, its centre at -1 + (2j+1)/R.
EG3D itself projects onto XY, XZ and ZX (a known slip, eg3d issue #67, kept there for its
checkpoints); a new field has no checkpoints to keep, so it uses YZ.

The planes sit behind one small interface (PlaneSource: a module whose forward() returns the
(3, C, R, R) planes), so that a generator producing planes (EG3D's) can replace FreePlanes, the
optimised planes, without touching the field or the methods.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .base import Field, FieldOutput, inside_cube

# (u, v) axes of each plane: XY, XZ, YZ.
PLANE_AXES = ((0, 1), (0, 2), (1, 2))


class PlaneSource(nn.Module):
    """Where a tri-plane field's planes come from: forward() -> (3, C, R, R) float tensor."""

    channels: int
    resolution: int

    def forward(self) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class FreePlanes(PlaneSource):
    """Planes that are themselves the parameters (the latent a tri-plane edit optimises).

    init_std: standard deviation of their normal initialisation (small: the decoder starts from a
    near-constant field, as a hash grid's tiny uniform init does).
    """

    def __init__(self, channels: int = 32, resolution: int = 256, init_std: float = 0.1) -> None:
        super().__init__()
        self.channels, self.resolution = channels, resolution
        self.planes = nn.Parameter(torch.randn(3, channels, resolution, resolution) * init_std)

    def forward(self) -> torch.Tensor:
        return self.planes


def project(x: torch.Tensor) -> torch.Tensor:
    """(N,3) points -> (3,N,2) plane coordinates (u, v) in PLANE_AXES order (XY, XZ, YZ)."""
    return torch.stack([x[:, list(axes)] for axes in PLANE_AXES])


def sample_planes(planes: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean of the three planes' bilinear features at each point.

    planes: (3,C,R,R); x: (N,3) in [-1,1]^3 (outside it, zero padding fades the features to 0).
    Returns (N,C). Differentiable in both (grid_sample's backward).
    """
    grid = project(x)[:, None]  # (3,1,N,2): grid_sample's grid[..., 0] indexes the width (u), [..., 1] the height (v)
    features = F.grid_sample(planes, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (3,C,1,N)
    return features[:, :, 0].mean(dim=0).T


def plane_total_variation(planes: torch.Tensor) -> torch.Tensor:
    """Total variation of (3,C,R,R) planes: mean squared difference of neighbouring texels along each axis,
    summed over the two axes (K-Planes, Fridovich-Keil et al. CVPR 2023, plane TV). 0 for constant planes."""
    dv = (planes[..., 1:, :] - planes[..., :-1, :]).square().mean()
    du = (planes[..., :, 1:] - planes[..., :, :-1]).square().mean()
    return du + dv


class TriPlaneField(Field):
    """Tri-plane features -> EG3D's OSGDecoder -> density (softplus) and albedo (sigmoid).

    Decoder (eg3d OSGDecoder): mean feature C -> Linear 64 -> softplus -> Linear (1 + 3). The density
    is softplus(h + density_bias) (EG3D: softplus(h - 1), the default bias -1); the albedo sigmoid(h)
    (EG3D: sigmoid * 1.002 - 0.001, which leaves [0, 1]; the fields' contract keeps it inside).
    No view direction, as EG3D. blob_density > 0 adds DreamFusion's starting blob, as the hash grid does.
    lambda_plane_tv: weight of plane_total_variation in every step that trains the planes.
    """

    def __init__(self, planes: PlaneSource | None = None, width: int = 64, density_bias: float = -1.0,
                 blob_density: float = 0.0, blob_radius: float = 0.5, lambda_plane_tv: float = 1e-4) -> None:
        super().__init__(density_bias)
        self.planes = planes if planes is not None else FreePlanes()
        self.decoder = nn.Sequential(nn.Linear(self.planes.channels, width), nn.Softplus(), nn.Linear(width, 4))
        self.blob_density, self.blob_radius = blob_density, blob_radius
        self.lambda_plane_tv = lambda_plane_tv

    def forward(self, x: torch.Tensor, radius: torch.Tensor | None = None) -> FieldOutput:
        h = self.decoder(sample_planes(self.planes(), x))
        pre = h[:, 0]
        if self.blob_density:
            pre = pre + self.blob_density * (1 - x.norm(dim=-1) / self.blob_radius)
        density = F.softplus(pre + self.density_bias) * inside_cube(x)
        return FieldOutput(density=density, albedo=torch.sigmoid(h[:, 1:]))

    def regularizers(self) -> dict[str, tuple[torch.Tensor, float]]:
        """{"plane_tv": (unweighted loss, weight)}: the run loop adds it to every method's losses."""
        return {"plane_tv": (plane_total_variation(self.planes()), self.lambda_plane_tv)}


def load_decoder(field: TriPlaneField, decoder: str) -> None:
    """Set field.decoder's starting weights from options.field.triplane_decoder (engine/options.py): "starter",
    "none", "auto" (the starter decoder when it fits the field, else random) or a .safetensors path.

    Raises EngineError("invalid_job") naming options.field.triplane_decoder when the file is missing or does not
    fit the field."""
    from safetensors.torch import load_file

    from ..errors import EngineError
    from ..models.starter import STARTER_DECODER

    if decoder == "none":
        return
    path = STARTER_DECODER / "decoder.safetensors" if decoder in ("auto", "starter") else Path(decoder).expanduser()
    key = "options.field.triplane_decoder"
    if not path.is_file():
        raise EngineError("invalid_job", f"{key}: {path} does not exist",
                          'give a .safetensors file of a tri-plane decoder, "starter", "auto" or "none"')
    state = load_file(str(path))
    fits = all(k in state and state[k].shape == v.shape for k, v in field.decoder.state_dict().items())
    if not fits:
        if decoder == "auto":
            return  # another width or channel count than the starter decoder's: random, as "none"
        shapes = {k: list(v.shape) for k, v in state.items()}
        raise EngineError("invalid_job", f"{key}: {path} does not fit this field (its weights: {shapes})",
                          "the starter decoder fits options.field.triplane_channels 32 and mlp_width 64; use those, "
                          'or triplane_decoder "none"')
    field.decoder.load_state_dict(state)
