"""engine.mesh on analytic fields: geometry, cleanup, colours, texture, files."""
from __future__ import annotations

import io
import logging
import re

import numpy as np
import pytest
from PIL import Image

from conftest import glb_array, read_glb
from engine.errors import EngineError
from engine.mesh import bake, export_mesh
from engine.mesh.bake import dilate, rasterise, srgb_to_linear
from engine.mesh.extract import face_components
from engine.mesh.grid import DensityGrid, cell_centres

RES = 64
CELL = 2.0 / RES
RED, BLUE = (0.5, 0.1, 0.1), (0.1, 0.1, 0.5)  # sRGB albedo on the +x / -x half
SRGB_0_5, SRGB_0_1 = 0.21404114, 0.01002283  # their linear values, by the sRGB formula


def ball(centre=(0.0, 0.0, 0.0), radius=0.5):
    """Density 10 inside, 0 outside, a linear ramp 0.1 wide: the 5-level is the sphere."""
    centre = np.asarray(centre, np.float32)

    def density(points):
        r = np.linalg.norm(points - centre, axis=1)
        return (10 * np.clip((radius - r) / 0.1 + 0.5, 0, 1)).astype(np.float32)

    return density


def two_halves(points):
    return np.where(points[:, :1] > 0, RED, BLUE).astype(np.float32)


def load(path):
    with np.load(path) as npz:
        return dict(npz)


@pytest.fixture(scope="module")
def sphere(tmp_path_factory):
    out = tmp_path_factory.mktemp("sphere")
    result = export_mesh(ball(), two_halves, out, resolution=RES, threshold=5.0)
    return result, load(result.paths["npz"])


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    out = tmp_path_factory.mktemp("textured")
    result = export_mesh(ball(), two_halves, out, resolution=RES, threshold=5.0, texture_size=128)
    return result, load(result.paths["npz"])


def test_sphere_lies_on_the_level_set_and_is_closed(sphere):
    result, mesh = sphere
    assert sorted(mesh) == ["faces", "offset", "vertex_colors", "vertices"]
    assert mesh["vertices"].dtype == np.float32 and mesh["faces"].dtype == np.int32
    assert mesh["offset"].dtype == np.float64 and mesh["offset"].tolist() == [0.0, 0.0, 0.0]
    assert result.n_vertices == len(mesh["vertices"]) > 1000 and result.n_faces == len(mesh["faces"])
    r = np.linalg.norm(mesh["vertices"], axis=1)
    assert np.abs(r - 0.5).max() < CELL
    # Closed: every edge belongs to exactly two faces.
    f = mesh["faces"].astype(np.int64)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    assert (uses == 2).all()
    # Wound counter-clockwise from outside: the signed volume is the ball's, 4/3 pi 0.5^3.
    v = mesh["vertices"][f].astype(np.float64)
    volume = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6
    assert volume == pytest.approx(4 / 3 * np.pi * 0.125, rel=0.02)
    assert set(result.timings) == {"grid", "threshold", "refine", "fill", "marching_cubes", "cleanup", "vertex_colors",
                                   "write"}


def test_grid_axes_map_back_to_object_coordinates(tmp_path):
    centre = (0.3, -0.2, 0.1)
    result = export_mesh(ball(centre, 0.4), two_halves, tmp_path, resolution=32, threshold=5.0, formats=("npz",))
    vertices = load(result.paths["npz"])["vertices"]
    r = np.linalg.norm(vertices - np.float32(centre), axis=1)
    assert np.abs(r - 0.4).max() < 2.0 / 32
    np.testing.assert_allclose(vertices.mean(axis=0), centre, atol=0.01)


def test_vertex_colours_are_linear(sphere):
    _, mesh = sphere
    x, colors = mesh["vertices"][:, 0], mesh["vertex_colors"]
    assert colors.dtype == np.float32
    assert np.abs(colors[x > CELL] - [SRGB_0_5, SRGB_0_1, SRGB_0_1]).max() < 1e-6
    assert np.abs(colors[x < -CELL] - [SRGB_0_1, SRGB_0_1, SRGB_0_5]).max() < 1e-6


def test_srgb_to_linear_by_hand():
    srgb = np.array([-0.2, 0.0, 0.04, 0.5, 1.0, 1.3], np.float32)
    expected = [0.0, 0.0, 0.04 / 12.92, SRGB_0_5, 1.0, 1.0]
    np.testing.assert_allclose(srgb_to_linear(srgb), expected, rtol=1e-6)


def test_face_components_by_hand():
    # Faces 0-1 share vertex 2, face 3 joins 4 to face 1's vertex 3; face 2 stands alone.
    faces = np.array([[0, 1, 2], [2, 3, 8], [5, 6, 7], [3, 4, 9]])
    np.testing.assert_array_equal(face_components(faces, 10), [0, 0, 5, 0])


def test_floater_is_removed_and_the_large_sphere_kept(tmp_path):
    big, tiny = ball(), ball((0.75, 0.75, 0.75), 0.1)

    def density(points):
        return np.maximum(big(points), tiny(points))

    kept = export_mesh(density, two_halves, tmp_path / "a", resolution=RES, threshold=5.0, formats=("npz",))
    vertices = load(kept.paths["npz"])["vertices"]
    assert kept.components_removed == 1
    assert np.abs(np.linalg.norm(vertices, axis=1) - 0.5).max() < CELL

    both = export_mesh(density, two_halves, tmp_path / "b", resolution=RES, threshold=5.0, keep_fraction=0.0)
    assert both.components_removed == 0 and both.n_faces > kept.n_faces


def test_offset_is_stored_beside_the_vertices_and_export_is_deterministic(sphere, tmp_path):
    """The offset goes into mesh.npz's float64 `offset`, not into the float32 vertices, which stay the same."""
    result, mesh = sphere
    moved = export_mesh(ball(), two_halves, tmp_path, resolution=RES, threshold=5.0, offset=(1.0, -2.0, 3.0))
    shifted = load(moved.paths["npz"])
    np.testing.assert_array_equal(shifted["faces"], mesh["faces"])
    np.testing.assert_array_equal(shifted["vertex_colors"], mesh["vertex_colors"])
    np.testing.assert_array_equal(shifted["vertices"], mesh["vertices"])
    assert shifted["offset"].dtype == np.float64 and shifted["offset"].tolist() == [1.0, -2.0, 3.0]
    again = export_mesh(ball(), two_halves, tmp_path / "again", resolution=RES, threshold=5.0)
    assert result.paths["npz"].read_bytes() == again.paths["npz"].read_bytes()


def test_auto_threshold_is_the_opaque_density(tmp_path):
    result = export_mesh(ball(), two_halves, tmp_path, resolution=RES, formats=("npz",), opaque_density=7.5)
    assert result.density_range == (0.0, 10.0) and result.threshold == 7.5 and result.n_faces > 1000

    # A hard-edged field: no value strictly between 0 and 10 but the opaque level is outside;
    # the middle of the range is used.
    def step(points):
        return np.where(np.linalg.norm(points, axis=1) < 0.5, 10.0, 0.0).astype(np.float32)

    assert export_mesh(step, two_halves, tmp_path / "step", resolution=32, opaque_density=50).threshold == 5.0


def test_auto_threshold_ignores_fog(tmp_path):
    """A solid ball inside a cube-filling fog: the mean-density rule would put the surface in
    the fog (a mesh over the whole cube); the opaque level finds the ball."""
    def fogged(points):
        return np.maximum(ball()(points) * 5, 0.3).astype(np.float32)  # ball at 50, fog 0.3 everywhere

    result = export_mesh(fogged, two_halves, tmp_path, resolution=48, formats=("npz",), opaque_density=22.0)
    vertices = load(result.paths["npz"])["vertices"]
    assert result.threshold == 22.0
    assert np.abs(np.linalg.norm(vertices, axis=1) - 0.5).max() < 0.1


def test_auto_threshold_of_pure_fog_warns_and_takes_its_densest_part(tmp_path, caplog):
    def fog(points):  # a smooth bump from 0.2 to 0.3: never opaque
        return (0.2 + 0.1 * np.exp(-np.square(points).sum(axis=1) / 0.1)).astype(np.float32)

    with caplog.at_level("WARNING", logger="engine.mesh"):
        result = export_mesh(fog, two_halves, tmp_path, resolution=32, formats=("npz",), opaque_density=22.0)
    # At resolution 32 the coarse lattice is the whole lattice: the level is the 99.5th
    # percentile of all its densities, far above the fog's median.
    c = cell_centres(32)
    lattice = np.stack(np.meshgrid(c, c, c, indexing="ij"), -1).reshape(-1, 3).astype(np.float32)
    assert result.threshold == pytest.approx(np.percentile(fog(lattice), 99.5), rel=1e-4)
    assert result.threshold > np.median(fog(lattice)) + 0.05 and "mostly fog" in caplog.text


@pytest.mark.parametrize(
    "density, threshold",
    [(ball(), 20.0), (lambda p: ball()(p) + 1.0, 0.5), (lambda p: np.zeros(len(p), np.float32), "auto")],
    ids=["above_all", "below_all", "all_zero"],
)
def test_empty_surface_raises_and_writes_nothing(tmp_path, density, threshold):
    out = tmp_path / "result"
    with pytest.raises(EngineError) as caught:
        export_mesh(density, two_halves, out, resolution=32, threshold=threshold)
    error = caught.value
    assert error.kind == "empty_surface"
    assert "ranges from" in error.message and "percentiles" in error.message
    assert not out.exists() or not any(out.iterdir())
    if threshold == 20.0:
        assert "threshold 20" in error.message and "from 0 to 10" in error.message
        suggested = float(re.search(r'"threshold": ([0-9.e+-]+)', error.hint).group(1))
        assert 0 < suggested < 10 and "job.json" in error.hint


# Coarse-to-fine grid (grid.DensityGrid). At 128 the default coarse_factor 4 keeps 32
# coarse cells per axis, so three lattices are used: steps 4, 2 and 1.
FINE = 128
H = 2.0 / FINE  # fine cell


def two_balls(points):
    return np.maximum(ball((0.3, 0.1, 0.0), 0.35)(points), ball((-0.4, -0.2, 0.2), 0.3)(points))


class Counted:
    """A density function that counts the points it is asked for."""

    def __init__(self, fn):
        self.fn, self.points = fn, 0

    def __call__(self, points):
        self.points += len(points)
        return self.fn(points)


def export_both(tmp_path, density, **kwargs):
    """(coarse-to-fine, exhaustive) ExportResult and mesh of the same field at FINE."""
    out = []
    for coarse_factor in (4, 1):
        result = export_mesh(density, two_halves, tmp_path / str(coarse_factor), resolution=FINE, threshold=5.0,
                             formats=("npz",), coarse_factor=coarse_factor, **kwargs)
        out += [result, load(result.paths["npz"])]
    return out


@pytest.mark.parametrize("density", [ball(), two_balls], ids=["sphere", "two_spheres"])
def test_coarse_to_fine_mesh_is_the_exhaustive_one(tmp_path, density):
    # The grids differ away from the surface, where DensityGrid interpolates, but only
    # inside cells whose corners all lie on one side of the level, and interpolation
    # keeps that side; every cell the surface crosses has queried corners. So marching
    # cubes sees the same sides everywhere and the same values on every crossed edge:
    # the meshes are equal bit for bit.
    fine, fine_mesh, exhaustive, exhaustive_mesh = export_both(tmp_path, density)
    for key in ("vertices", "faces", "vertex_colors"):
        np.testing.assert_array_equal(fine_mesh[key], exhaustive_mesh[key])
    assert fine.n_faces > 10000
    assert fine.threshold == exhaustive.threshold == 5.0

    grid = DensityGrid(density, FINE, 4, chunk=65536)
    grid.refine(5.0)
    full = DensityGrid(density, FINE, 1, chunk=65536).values
    inner = (slice(FINE + 2),) * 3  # DensityGrid pads up to a multiple of the coarse step
    values, known = grid.values[inner], grid.known[inner]
    np.testing.assert_array_equal(values[known], full[known])
    # Interpolated values differ near the surface (far from it both fields are flat).
    assert (values[~known] != full[~known]).any() and (~known).mean() > 0.9


def test_coarse_to_fine_queries_few_points(tmp_path):
    density = Counted(ball())
    result = export_mesh(density, two_halves, tmp_path, resolution=FINE, threshold=5.0, formats=("npz",))
    # 32^3 coarse points, then only around the sphere: about 4% of the 128^3 lattice.
    assert result.queries == density.points < 0.1 * FINE**3
    exhaustive = export_mesh(ball(), two_halves, tmp_path / "all", resolution=32, threshold=5.0,
                             formats=("npz",), coarse_factor=1)
    assert exhaustive.queries == 32**3


def test_a_fin_one_fine_cell_thick_is_followed(tmp_path):
    # A square plate |x|, |y| < 0.8 around the fine lattice plane z = z0 (padded index 67,
    # odd, so on neither coarser lattice): only that plane is inside, so it is one fine
    # cell thick, a quarter of the coarse step. The coarse lattices see the sphere
    # alone; tracking on the fine lattice walks from the sphere out along the plate.
    z0 = -1 + 66.5 * H

    def plate(points):
        across = 1 - np.abs(points[:, 2] - z0) / H
        along = (0.8 - np.abs(points[:, :2]).max(axis=1)) / H
        return 10 * np.clip(np.minimum(across, along), 0, 1).astype(np.float32)

    def density(points):
        return np.maximum(ball()(points), plate(points))

    _, fine_mesh, _, exhaustive_mesh = export_both(tmp_path, density)
    np.testing.assert_array_equal(fine_mesh["vertices"], exhaustive_mesh["vertices"])
    np.testing.assert_array_equal(fine_mesh["faces"], exhaustive_mesh["faces"])
    assert np.abs(fine_mesh["vertices"][:, :2]).max() > 0.78


def test_a_piece_between_coarse_points_is_lost(tmp_path):
    # A ball of radius 0.025 centred between coarse points (padded index 114 = 4*28 + 2
    # on every axis), away from the sphere: no coarse point is inside it, so no coarse
    # cell shows it and it is never refined. The exhaustive grid finds it, a floater
    # that cleanup would drop by default.
    centre = np.full(3, -1 + 113.5 * H, np.float32)
    blob = ball(centre, 0.025)

    def density(points):
        return np.maximum(ball()(points), blob(points))

    fine, fine_mesh, exhaustive, exhaustive_mesh = export_both(tmp_path, density, keep_fraction=0.0)
    on_sphere = np.abs(np.linalg.norm(exhaustive_mesh["vertices"], axis=1) - 0.5) < H
    assert np.linalg.norm(exhaustive_mesh["vertices"][~on_sphere] - centre, axis=1).max() < 0.03
    assert exhaustive.n_faces > fine.n_faces and fine.components_removed == exhaustive.components_removed == 0
    assert np.abs(np.linalg.norm(fine_mesh["vertices"], axis=1) - 0.5).max() < H


def test_empty_surface_is_found_on_the_coarse_lattice(tmp_path):
    density = Counted(ball())
    with pytest.raises(EngineError, match="ranges from 0 to 10"):
        export_mesh(density, two_halves, tmp_path, resolution=FINE, threshold=20.0)
    assert density.points == (FINE // 4) ** 3
    with pytest.raises(ValueError, match="power of two"):
        export_mesh(ball(), two_halves, tmp_path, resolution=FINE, coarse_factor=3)


def test_textured_export(textured, sphere, monkeypatch, caplog):
    result, mesh = textured
    m = len(mesh["faces"])
    # The texture leaves the geometry and its vertex indexing as they were.
    np.testing.assert_array_equal(mesh["faces"], sphere[1]["faces"])
    np.testing.assert_array_equal(mesh["vertices"], sphere[1]["vertices"])
    uvs, texture = mesh["uvs"], mesh["texture"]
    assert uvs.shape == (m * 3, 2) and uvs.dtype == np.float32
    assert uvs.min() >= 0 and uvs.max() <= 1
    assert texture.shape == (128, 128, 3) and texture.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(Image.open(result.paths["png"])), texture)

    # The texel under each face's UV centroid shows that face's albedo, in sRGB.
    centroid_uv = uvs.reshape(m, 3, 2).mean(axis=1)
    rows = ((1 - centroid_uv[:, 1]) * 128).astype(int)
    cols = (centroid_uv[:, 0] * 128).astype(int)
    texels = texture[rows, cols].astype(int)
    x = mesh["vertices"][mesh["faces"]].mean(axis=1)[:, 0]
    red, blue = np.round(np.array(RED) * 255), np.round(np.array(BLUE) * 255)
    assert (np.abs(texels[x > 0.05] - red).max(axis=1) <= 2).mean() > 0.98
    assert (np.abs(texels[x < -0.05] - blue).max(axis=1) <= 2).mean() > 0.98
    assert (texels.sum(axis=1) > 0).mean() > 0.99

    # Unwrapping a large mesh warns.
    monkeypatch.setattr(bake, "SLOW_UNWRAP_FACES", 3)
    tetrahedron = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]])
    with caplog.at_level(logging.WARNING, logger="engine.mesh"):
        bake.unwrap(np.eye(4, 3, dtype=np.float32), tetrahedron, 16)
    assert "slow" in caplog.text


def test_glb_parses_back(sphere):
    result, mesh = sphere
    gltf, blob = read_glb(result.paths["glb"])
    primitive = gltf.meshes[0].primitives[0]
    attributes = primitive.attributes
    assert {k for k, v in vars(attributes).items() if v is not None} == {"POSITION", "NORMAL", "COLOR_0"}
    position = glb_array(gltf, blob, attributes.POSITION)
    v = mesh["vertices"]
    np.testing.assert_array_equal(position, np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1))
    assert gltf.accessors[attributes.POSITION].max == position.max(axis=0).tolist()
    indices = glb_array(gltf, blob, primitive.indices)
    np.testing.assert_array_equal(indices.reshape(-1, 3), mesh["faces"])
    np.testing.assert_array_equal(glb_array(gltf, blob, attributes.COLOR_0), mesh["vertex_colors"])
    normals = glb_array(gltf, blob, attributes.NORMAL)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-5)
    # On a sphere at the origin the outward normal is the position's direction.
    assert (np.einsum("ij,ij->i", normals, position / np.linalg.norm(position, axis=1, keepdims=True)) > 0.95).all()


def test_textured_glb_parses_back(textured):
    result, mesh = textured
    gltf, blob = read_glb(result.paths["glb"])
    primitive = gltf.meshes[0].primitives[0]
    attributes = primitive.attributes
    assert {k for k, v in vars(attributes).items() if v is not None} == {"POSITION", "NORMAL", "TEXCOORD_0"}
    n_split = gltf.accessors[attributes.POSITION].count
    assert n_split >= result.n_vertices
    assert gltf.accessors[primitive.indices].count == 3 * result.n_faces
    # glTF's UV origin is top-left: the corner UVs come back with v flipped.
    texcoord = glb_array(gltf, blob, attributes.TEXCOORD_0)
    indices = glb_array(gltf, blob, primitive.indices).ravel()
    np.testing.assert_allclose(texcoord[indices] * [1, -1] + [0, 1], mesh["uvs"], atol=1e-6)
    view = gltf.bufferViews[gltf.images[0].bufferView]
    png = blob[view.byteOffset : view.byteOffset + view.byteLength]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), mesh["texture"])
    material = gltf.materials[0].pbrMetallicRoughness
    assert (material.metallicFactor, material.roughnessFactor, material.baseColorTexture.index) == (0.0, 1.0, 0)


def test_rasterise_half_square_by_hand():
    # The triangle (0,0), (1,0), (0,1) covers texel centres with u + v <= 1: with row 0
    # at the top (v = 1 - (row + 0.5) / 4, u = (col + 0.5) / 4) that is col <= row.
    texel, face, bary = rasterise(np.array([[[0, 0], [1, 0], [0, 1]]], np.float32), 4)
    mask = np.zeros(16, bool)
    mask[texel] = True
    np.testing.assert_array_equal(mask.reshape(4, 4), np.tril(np.ones((4, 4), bool)))
    assert (face == 0).all() and np.allclose(bary.sum(axis=1), 1)


def test_dilate_grows_eight_texels():
    texture = np.zeros((20, 20, 3), np.uint8)
    filled = np.zeros((20, 20), bool)
    texture[10, 10], filled[10, 10] = (200, 100, 50), True
    padded = dilate(texture, filled)
    grown = padded.sum(axis=2) > 0
    np.testing.assert_array_equal(np.argwhere(grown).min(0), [2, 2])
    np.testing.assert_array_equal(np.argwhere(grown).max(0), [18, 18])
    assert (padded[grown] == (200, 100, 50)).all()


def test_enclosed_cavities_are_filled_and_open_ones_kept(tmp_path):
    def shell(points):  # a hollow ball: dense for 0.3 < r < 0.6, empty inside
        r = np.linalg.norm(points, axis=1)
        return np.where((r > 0.3) & (r < 0.6), 100.0, 0.0).astype(np.float32)

    def cup(points):  # the same shell with a hole to the outside through its top
        d = shell(points)
        return np.where((points[:, 2] > 0.2) & (np.linalg.norm(points[:, :2], axis=1) < 0.2), 0.0, d).astype(np.float32)

    export_mesh(shell, lambda p: np.ones_like(p), tmp_path / "shell", resolution=64, threshold=50.0, formats=("npz",))
    r = np.linalg.norm(load(tmp_path / "shell" / "mesh.npz")["vertices"], axis=1)
    assert np.abs(r - 0.6).max() < 2 / 64  # only the outer sphere (within a cell): the hidden inner one is gone
    export_mesh(cup, lambda p: np.ones_like(p), tmp_path / "cup", resolution=64, threshold=50.0, formats=("npz",))
    r = np.linalg.norm(load(tmp_path / "cup" / "mesh.npz")["vertices"], axis=1)
    assert r.min() < 0.35  # the inside of an open cup is visible and kept

    def pierced(points):  # the shell with a pinhole, a cell wide, as a reconstruction's speckled shell has
        d = shell(points)
        return np.where((points[:, 2] > 0.2) & (np.linalg.norm(points[:, :2], axis=1) < 0.03), 0.0, d).astype(np.float32)

    export_mesh(pierced, lambda p: np.ones_like(p), tmp_path / "pierced", resolution=64, threshold=50.0,
                formats=("npz",))
    r = np.linalg.norm(load(tmp_path / "pierced" / "mesh.npz")["vertices"], axis=1)
    assert r.min() > 0.5  # the closing seals the pinhole: the hidden inner sphere is gone


def test_large_meshes_are_decimated_and_stay_on_the_surface(tmp_path):
    density = ball(radius=0.6)
    full = export_mesh(density, lambda p: np.ones_like(p), tmp_path / "full", resolution=96, threshold=5.0,
                       formats=("npz",))
    small = export_mesh(density, lambda p: np.ones_like(p), tmp_path / "small", resolution=96, threshold=5.0,
                        formats=("npz",), max_faces=2000)
    assert full.n_faces > 20000 and 1500 <= small.n_faces <= 2000 and "decimate" in small.timings
    mesh = load(tmp_path / "small" / "mesh.npz")
    r = np.linalg.norm(mesh["vertices"], axis=1)
    assert np.abs(r - 0.6).max() < 0.02  # decimation keeps the vertices on the sphere
    f = mesh["faces"].astype(np.int64)
    v = mesh["vertices"][f].astype(np.float64)
    volume = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6
    assert volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.03)  # still closed and wound outwards
