"""Renderer and cameras against values worked out by hand."""
import math

import pytest
import torch

from engine.cameras import camera_rays, focal_from_fov, orbit_views, sample_orbit
from engine.fields import HashGrid, HashGridField, MLPField, density_normals
from engine.fields.base import FieldOutput
from engine.render import composite, ray_cube_intersect, render_rays, render_view, volume_weights
from engine.render.background import checkerboard, fourier_noise, gaussian_blur, random_background
from engine.spec import parse_job


def constant_field(sigma, colour=(1.0, 0.5, 0.25)):
    def field(x, radius=None):
        inside = (x.abs() <= 1).all(-1).float()
        return FieldOutput(torch.full((x.shape[0],), sigma) * inside, torch.tensor(colour).expand(x.shape[0], 3))
    return field


def test_constant_density_leaves_exp_minus_sigma_d():
    # A ray along +X through the centre crosses the cube over d = 2.
    o, d = torch.tensor([[-3.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]])
    for sigma in (0.1, 0.7, 2.0):
        out = render_rays(constant_field(sigma), o, d, 64, torch.Generator().manual_seed(0))
        assert out.opacity.item() == pytest.approx(1 - math.exp(-sigma * 2.0), abs=1e-5)
        # Accumulated colour is the constant albedo times the opacity.
        assert out.rgb[0].tolist() == pytest.approx([out.opacity.item() * c for c in (1.0, 0.5, 0.25)], abs=1e-5)


def test_weights_of_two_samples_by_hand():
    # alpha1 = 1 - e^-1, T2 = e^-1, alpha2 = 1 - e^-2.
    w, t = volume_weights(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0]]))
    assert t[0].tolist() == pytest.approx([1.0, math.exp(-1)])
    assert w[0].tolist() == pytest.approx([1 - math.exp(-1), math.exp(-1) * (1 - math.exp(-2))])


def test_depth_of_an_opaque_slab():
    # Dense only for x > 0.5: a ray along +X from x=-3 meets it at distance 3.5.
    def field(x, radius=None):
        d = ((x[:, 0] > 0.5) & (x.abs() <= 1).all(-1)).float() * 1e4
        return FieldOutput(d, torch.ones(x.shape[0], 3))
    out = render_rays(field, torch.tensor([[-3.0, 0, 0]]), torch.tensor([[1.0, 0, 0]]), 256)
    assert out.opacity.item() == pytest.approx(1.0, abs=1e-4)
    assert out.depth.item() == pytest.approx(3.5, abs=2 / 256)


def test_rays_missing_the_cube_are_empty():
    near, far, hit = ray_cube_intersect(torch.tensor([[0.0, -5, 3]]), torch.tensor([[0.0, 1, 0]]))
    assert not hit.item()
    out = render_rays(constant_field(5.0), torch.tensor([[0.0, -5, 3]]), torch.tensor([[0.0, 1, 0]]), 8)
    assert out.opacity.item() == 0.0
    assert composite(out.rgb, out.opacity, torch.tensor([0.2, 0.3, 0.4]))[0].tolist() == pytest.approx([0.2, 0.3, 0.4])


def test_front_camera_sees_plus_x_right_and_plus_z_up():
    # Azimuth 0, elevation 0: on -Y looking at the origin, Blender's front view.
    view = orbit_views(0.0, 0.0, 4.0, 40.0)
    c2w = view.c2w[0]
    assert c2w[:3, 3].tolist() == pytest.approx([0.0, -4.0, 0.0], abs=1e-6)
    assert c2w[:3, 2].tolist() == pytest.approx([0.0, -1.0, 0.0], abs=1e-6)  # camera looks down its -Z = +Y
    size = 32
    origins, dirs = camera_rays(c2w, focal_from_fov(40.0, size), size, size)
    dirs = dirs.reshape(size, size, 3)
    assert dirs[16, 31, 0] > 0.1 and dirs[16, 0, 0] < -0.1  # right column looks towards +X
    assert dirs[0, 16, 2] > 0.1 and dirs[31, 16, 2] < -0.1  # top row looks towards +Z
    # A field that is red for x > 0 and green for z > 0 shows red on the right, green at the top.
    def field(x, radius=None):
        dense = ((x.abs() <= 0.8).all(-1)).float() * 50
        albedo = torch.stack([(x[:, 0] > 0).float(), (x[:, 2] > 0).float(), torch.zeros(x.shape[0])], -1)
        return FieldOutput(dense, albedo)
    img = render_view(field, c2w, 40.0, size, 64).rgb
    assert img[16, 20, 0] > 0.9 and img[16, 11, 0] < 0.1
    assert img[11, 16, 1] > 0.9 and img[20, 16, 1] < 0.1


def test_azimuth_90_is_blender_right_view():
    c2w = orbit_views(90.0, 0.0, 3.0, 40.0).c2w[0]
    assert c2w[:3, 3].tolist() == pytest.approx([3.0, 0.0, 0.0], abs=1e-6)
    top = orbit_views(0.0, 90.0, 3.0, 40.0).c2w[0]  # straight down: no NaN from a degenerate up vector
    assert torch.isfinite(top).all() and top[:3, 3].tolist() == pytest.approx([0.0, 0.0, 3.0], abs=1e-5)


def test_orbit_samples_stay_in_their_ranges():
    spec = parse_job({"spec_version": 1, "method": "dream_fields", "prompt": "x",
                      "orbit": {"radius": [3, 4], "elevation_deg": [-10, 45], "azimuth_deg": [-90, 90], "fov_deg": [30, 60]}})
    v = sample_orbit(spec.orbit, 500, torch.Generator().manual_seed(1))
    assert v.radius.min() >= 3 and v.radius.max() <= 4
    assert v.elevation_deg.min() >= -10 and v.elevation_deg.max() <= 45
    assert v.azimuth_deg.min() >= -90 and v.azimuth_deg.max() <= 90
    assert torch.allclose(v.c2w[:, :3, 3].norm(dim=-1), v.radius, atol=1e-5)


def test_hash_grid_gradients_match_finite_differences():
    torch.manual_seed(0)
    grid = HashGrid(levels=4, log2_size=10, base_resolution=4, max_resolution=32).double()
    for table in grid.tables:
        torch.nn.init.uniform_(table, -1, 1)
    x = torch.rand(64, 3, dtype=torch.float64) * 2 - 1
    # Table gradients through the custom backward, and position gradients through the weights.
    assert torch.autograd.gradcheck(lambda t: grid_with_table(grid, t, x), (grid.tables[2].detach().clone().requires_grad_(),))
    xr = x.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: grid(p), (xr,), atol=1e-5)
    assert any(not d for d in grid.dense) and any(grid.dense)  # both code paths covered


def grid_with_table(grid, table, x):
    return torch.func.functional_call(grid, {"tables.2": table}, (x,))


def test_a_step_that_queries_no_samples_backpropagates_zeros():
    """The empty-space grid can skip every sample of a view (a field that emptied itself): the hash grid's
    backward must take N = 0 (it once failed to reshape an empty tensor: an internal error mid-run)."""
    field = HashGridField(levels=4, log2_size=12, max_resolution=64, width=16)
    x = torch.zeros(0, 3, requires_grad=True)  # positions with gradients, as normals by autograd need
    out = field(x)
    (out.density.sum() + out.albedo.sum()).backward()
    assert x.grad.shape == (0, 3)
    assert all(p.grad is None or not p.grad.any() for p in field.parameters())


def test_fields_are_bounded_and_valued():
    torch.manual_seed(0)
    for field in (HashGridField(levels=4, log2_size=12, max_resolution=64, width=16), MLPField(width=32, blocks=1)):
        x = torch.tensor([[0.0, 0, 0], [0.5, -0.5, 0.2], [1.5, 0, 0], [0, 0, -3.0]])
        out = field(x, torch.full((4,), 0.01))
        assert out.density.shape == (4,) and out.albedo.shape == (4, 3)
        assert (out.density[:2] > 0).all() and (out.density[2:] == 0).all()
        assert ((out.albedo >= 0) & (out.albedo <= 1)).all()


@pytest.mark.parametrize("make", [lambda b: HashGridField(levels=4, log2_size=12, max_resolution=64, width=16,
                                                          density_bias=b),
                                  lambda b: MLPField(width=32, blocks=1, density_bias=b)], ids=["hashgrid", "mlp"])
def test_density_bias_sets_the_start_and_travels_with_the_weights(make):
    torch.manual_seed(0)
    x = torch.rand(256, 3) * 2 - 1
    foggy, empty = make(-1.0), make(-3.0)
    assert empty(x).density.mean() < 0.3 * foggy(x).density.mean()
    # A checkpoint carries its bias: loading one trained with -3 into a field built with -1 renders as trained.
    torch.manual_seed(1)
    loaded = make(-1.0)
    loaded.load_state_dict(empty.state_dict())
    assert torch.equal(loaded(x).density, empty(x).density)
    # Checkpoints from before the bias was saved were all trained with -1, whatever the field is built with now.
    old = {k: v for k, v in foggy.state_dict().items() if k != "density_bias"}
    loaded.load_state_dict(old)
    assert torch.equal(loaded(x).density, foggy(x).density)


def test_normals_point_out_of_a_sphere():
    def sphere(x, radius=None):
        return FieldOutput(torch.relu(1 - x.norm(dim=-1) / 0.5) * 10, torch.ones(x.shape[0], 3))
    x = torch.tensor([[0.3, 0, 0], [0, -0.3, 0], [0, 0, 0.3]])
    n = density_normals(sphere, x)
    assert torch.allclose(n, x / 0.3, atol=1e-4)


def test_backgrounds_are_images_in_range():
    g = torch.Generator().manual_seed(0)
    for bg in (checkerboard(32, g), fourier_noise(32, g), random_background(32, g, 10.0)):
        assert bg.shape == (32, 32, 3) and bg.min() >= 0 and bg.max() <= 1
    board = checkerboard(32, torch.Generator().manual_seed(3))
    assert torch.equal(board[0, 0], board[4, 4]) and not torch.equal(board[0, 0], board[0, 4])  # 8 squares of 4 px
    blurred = gaussian_blur(board, 3.0)
    assert blurred.std() < board.std()


def test_empty_space_skipping_renders_the_same_with_fewer_queries():
    from engine.render.occupancy import OccupancyGrid, skip_empty

    queried = []

    def ball(x, radius=None):
        queried.append(len(x))
        d = (x.norm(dim=-1) < 0.5).float() * 20
        return FieldOutput(d, torch.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 2] > 0], -1).float())

    grid = OccupancyGrid(resolution=16)
    # One random point per cell per update: a cell the ball only grazes is caught by a later
    # update and kept by the decaying maximum, as during training.
    for seed in range(40):
        grid.update(ball, torch.Generator().manual_seed(seed))
    # Cells wholly outside the ball are empty; the ball's ~6.5% of the cube stays occupied, with its rim.
    assert 0.05 < grid.fraction < 0.2
    assert grid.lookup(torch.tensor([[0.0, 0, 0], [0.9, 0.9, 0.9], [2.0, 0, 0]])).tolist() == [True, False, False]
    c2w = orbit_views(20.0, 25.0, 4.0, 40.0).c2w[0]
    queried.clear()
    full = render_view(ball, c2w, 40.0, 24, 48)
    n_full = sum(queried)
    queried.clear()
    skipped = render_view(skip_empty(ball, grid), c2w, 40.0, 24, 48)
    assert sum(queried) < 0.3 * n_full
    # Equal up to cells the ball barely grazes: within one 8-bit level.
    assert (full.rgb - skipped.rgb).abs().max() < 1 / 255 and (full.opacity - skipped.opacity).abs().max() < 1e-3


def test_skipping_keeps_gradients_of_the_queried_samples():
    from engine.render.occupancy import OccupancyGrid, skip_empty

    torch.manual_seed(0)
    field = HashGridField(levels=4, log2_size=12, max_resolution=64, width=16)
    grid = OccupancyGrid(resolution=8)
    grid.occupied[: len(grid.occupied) // 2] = False  # half the cube empty
    x = torch.rand(256, 3) * 2 - 1
    out = skip_empty(field, grid)(x)
    keep = grid.lookup(x)
    assert (out.density[~keep] == 0).all() and torch.equal(out.density[keep], field(x[keep]).density)
    out.density.sum().backward()
    assert field.encoding.tables[0].grad.abs().sum() > 0
