"""The tri-plane field (engine/fields/triplane.py): projection order and sampling by hand, gradients against
finite differences, the plane TV, and the backbone in job options."""
from __future__ import annotations

import pytest
import torch

from engine.fields import build_field
from engine.fields.triplane import (
    FreePlanes, PlaneSource, TriPlaneField, plane_total_variation, project, sample_planes,
)
from engine.options import FieldOptions

R = 4


def centre(texel: int, res: int = R) -> float:
    """The plane coordinate of texel `texel`'s centre (align_corners=False)."""
    return -1 + (2 * texel + 1) / res


@pytest.mark.parametrize("plane, axes", [(0, (0, 1)), (1, (0, 2)), (2, (1, 2))], ids=["XY", "XZ", "YZ"])
def test_a_point_on_a_known_texel_reads_that_texel(plane, axes):
    """Plane k holds one lit texel at row 2, column 3: a point whose (u, v) = (axes[0], axes[1]) coordinates sit
    on that texel's centre reads it (divided by 3: the three planes' features are averaged); off it reads 0."""
    planes = torch.zeros(3, 2, R, R)
    planes[plane, 1, 2, 3] = 6.0  # channel 1, row (v) 2, column (u) 3
    x = torch.full((1, 3), 0.123)
    x[0, axes[0]], x[0, axes[1]] = centre(3), centre(2)
    assert torch.allclose(sample_planes(planes, x), torch.tensor([[0.0, 2.0]]), atol=1e-6)
    # The same point with u and v swapped lands on row 3, column 2: unlit.
    y = x.clone()
    y[0, axes[0]], y[0, axes[1]] = centre(2), centre(3)
    assert sample_planes(planes, y).abs().max() < 1e-6


def test_projection_order_is_xy_xz_yz():
    x = torch.tensor([[0.1, 0.2, 0.3]])
    assert torch.allclose(project(x)[:, 0], torch.tensor([[0.1, 0.2], [0.1, 0.3], [0.2, 0.3]]))


def test_bilinear_between_texel_centres_and_zero_padding_outside():
    planes = torch.zeros(3, 1, R, R)
    planes[0, 0, 1, 1], planes[0, 0, 1, 2] = 3.0, 9.0  # XY plane, row 1, columns 1 and 2
    halfway = (centre(1) + centre(2)) / 2
    x = torch.tensor([[halfway, centre(1), 0.0]])
    assert sample_planes(planes, x).item() == pytest.approx((3.0 + 9.0) / 2 / 3)
    # Half a texel beyond the last centre is the plane's edge: zero padding gives half the edge texel.
    planes = torch.ones(3, 1, R, R)
    assert sample_planes(planes, torch.tensor([[1.0, 0.0, 0.0]])).item() == pytest.approx((0.5 + 0.5 + 1.0) / 3)


def test_sampling_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    planes = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    # Points off texel centres and edges, where bilinear interpolation is smooth.
    x = (torch.rand(6, 3, generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_(True)
    assert torch.autograd.gradcheck(sample_planes, (planes, x), eps=1e-6, atol=1e-5)


class GivenPlanes(PlaneSource):
    """Planes handed in from outside (as a generator would produce them): the PlaneSource interface."""

    def __init__(self, planes: torch.Tensor) -> None:
        super().__init__()
        self.value, self.channels, self.resolution = planes, planes.shape[1], planes.shape[-1]

    def forward(self) -> torch.Tensor:
        return self.value


def test_field_gradients_match_finite_differences_and_reach_every_parameter():
    torch.manual_seed(0)
    field = TriPlaneField(FreePlanes(channels=4, resolution=8), width=8).double()
    x = torch.rand(16, 3, dtype=torch.float64) * 1.6 - 0.8

    def density_and_albedo(planes):
        given = TriPlaneField(GivenPlanes(planes), width=8).double()
        given.decoder.load_state_dict(field.decoder.state_dict())
        out = given(x)
        return out.density, out.albedo

    planes = field.planes().detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(density_and_albedo, (planes,), eps=1e-6, atol=1e-5)
    out = field(x)
    (out.density.sum() + out.albedo.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


def test_eg3d_decoder_and_density_activation():
    """Zero planes: the decoder sees a zero feature; density = softplus(h + bias) with EG3D's bias -1."""
    field = TriPlaneField(FreePlanes(channels=4, resolution=8, init_std=0.0), width=8)
    assert [type(m).__name__ for m in field.decoder] == ["Linear", "Softplus", "Linear"]
    x = torch.tensor([[0.2, -0.3, 0.4], [1.5, 0.0, 0.0]])
    h = field.decoder(torch.zeros(1, 4))[0]
    out = field(x)
    assert out.density[0].item() == pytest.approx(torch.nn.functional.softplus(h[0] - 1).item(), rel=1e-6)
    assert out.density[1].item() == 0  # outside the object cube
    assert torch.allclose(out.albedo[0], torch.sigmoid(h[1:]))


def test_plane_total_variation():
    assert plane_total_variation(torch.ones(3, 2, 6, 6)).item() == 0
    ramp = torch.arange(6.0).expand(3, 2, 6, 6)  # +1 per column: squared difference 1 along u, 0 along v
    assert plane_total_variation(ramp).item() == pytest.approx(1.0)
    field = TriPlaneField(FreePlanes(channels=2, resolution=6), lambda_plane_tv=0.5)
    loss, weight = field.regularizers()["plane_tv"]
    assert weight == 0.5 and loss.requires_grad


def test_build_field_makes_the_triplane_backbone_from_options():
    options = FieldOptions(backbone="triplane", triplane_channels=8, triplane_resolution=16, mlp_width=16,
                           density_bias=-2.0, lambda_plane_tv=1e-3)
    field = build_field(options)
    assert isinstance(field, TriPlaneField) and field.planes().shape == (3, 8, 16, 16)
    assert field.density_bias.item() == -2.0 and field.lambda_plane_tv == 1e-3
    assert field.decoder[0].out_features == 16


def test_the_starter_decoder_ships_and_is_the_default_where_it_fits():
    from safetensors.torch import load_file

    from engine.errors import EngineError
    from engine.models.starter import STARTER_DECODER

    shipped = load_file(str(STARTER_DECODER / "decoder.safetensors"))
    field = build_field(FieldOptions(backbone="triplane", triplane_channels=32, triplane_resolution=8, mlp_width=64))
    assert all(torch.equal(field.decoder.state_dict()[k], v) for k, v in shipped.items())
    # "auto" with another channel count: random weights; "starter" then is an error naming the option.
    other = FieldOptions(backbone="triplane", triplane_channels=8, triplane_resolution=8, mlp_width=64)
    assert build_field(other).decoder[0].in_features == 8
    with pytest.raises(EngineError, match="options.field.triplane_decoder") as e:
        build_field(FieldOptions(**{**other.__dict__, "triplane_decoder": "starter"}))
    assert e.value.kind == "invalid_job" and "triplane_channels 32" in e.value.hint
    none = build_field(FieldOptions(backbone="triplane", triplane_channels=32, triplane_resolution=8,
                                    triplane_decoder="none"))
    assert not torch.equal(none.decoder[0].weight, shipped["0.weight"])
