"""A mesh far from the origin (a capture in projected-CRS metres) keeps its shape: result/mesh.npz holds float32
vertices relative to a float64 `offset`, mesh.glb the same vertices under a node translation.

float32 spacing is 0.03 m at x = 4.6e5 m and 0.5 m at y = 5.4e6 m, so world coordinates stored in float32
(the engine's files before this) snap a 1.6 m object onto a few planes.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from conftest import describe_issues, gltf_validator_missing, read_glb, validate_glbs
from engine.captures import ObjectFrame
from engine.fields.base import FieldOutput
from engine.jobs.outputs import export_result
from engine.methods.base import Scene
from engine.spec import parse_job

# The georeferenced case's sphere: easting, northing, height (m), radius 0.8 m; the frame's scale as the
# engine finds it from 12 cameras 4 m away.
CENTRE = (455123.37, 5420456.81, 251.4)
RADIUS, SCALE = 0.8, 1.4297
RESOLUTION = 48
CELL_M = 2 * SCALE / RESOLUTION  # one marching-cubes cell, in metres


def sphere_field(x: torch.Tensor, radius=None) -> FieldOutput:
    """Object space: density 50 inside the sphere (a ramp one cell wide), albedo varying with x."""
    r = x.norm(dim=-1)
    density = 50 * ((RADIUS / SCALE - r) / (2 / RESOLUTION) + 0.5).clamp(0, 1)
    albedo = torch.stack([0.5 + 0.4 * x[:, 0].clamp(-1, 1), torch.full_like(r, 0.3), torch.full_like(r, 0.6)], -1)
    return FieldOutput(density, albedo)


def export(job_dir, offset):
    """export_result, as `run` and `export` call it, of sphere_field in the object frame (offset, SCALE)."""
    spec = parse_job({"spec_version": 1, "method": "dream_fields", "prompt": "a ball"})
    config = replace(spec.export, resolution=RESOLUTION, formats=("npz", "glb"))
    artifacts = export_result(Scene({}, sphere_field), spec, job_dir, torch.device("cpu"), config,
                              ObjectFrame(offset, SCALE))
    assert artifacts == {"mesh": "result/mesh.npz", "glb": "result/mesh.glb"}
    with np.load(job_dir / "result" / "mesh.npz") as npz:
        return dict(npz)


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    """(the mesh exported at CENTRE, the same at the origin)."""
    out = tmp_path_factory.mktemp("georeferenced")
    return export(out / "geo", CENTRE), export(out / "origin", (0.0, 0.0, 0.0)), out / "geo" / "result" / "mesh.glb"


def test_the_npz_keeps_a_georeferenced_mesh_to_the_millimetre(meshes):
    geo, origin, _ = meshes
    assert geo["vertices"].dtype == np.float32 and geo["offset"].dtype == np.float64
    assert geo["offset"].tolist() == list(CENTRE)  # exactly the frame's float64 offset
    # The exact world positions: the same object exported at the origin, moved in float64.
    exact = origin["vertices"].astype(np.float64) + CENTRE
    world = geo["vertices"].astype(np.float64) + geo["offset"]
    assert len(world) == len(exact) > 1000
    assert np.abs(world - exact).max() < 1e-3
    # It is the sphere, where the case put it (marching cubes cuts corners by up to a cell).
    r = np.linalg.norm(world - CENTRE, axis=1)
    assert np.abs(r - RADIUS).max() < CELL_M
    # Not quantised: float32 world x would take ~52 values (3 cm apart) across the 1.6 m sphere, y ~4 (0.5 m).
    for axis in range(3):
        values = np.unique(world[:, axis])
        assert len(values) > 100 and np.diff(values).min() < 1e-3, (axis, len(values))


def test_the_glb_carries_the_offset_as_its_node_translation(meshes):
    geo, _, glb = meshes
    gltf, _ = read_glb(glb)
    (node,) = gltf.nodes
    x, y, z = CENTRE
    assert node.translation == [x, z, -y]  # glTF is Y-up; JSON numbers read back as the same float64
    assert node.rotation is node.scale is node.matrix is None
    position = gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION]
    # The vertices are local: their bounds are the sphere's, around the node's origin.
    assert np.allclose(position.max, RADIUS, atol=CELL_M) and np.allclose(position.min, -RADIUS, atol=CELL_M)


def test_the_georeferenced_glb_passes_the_khronos_validator(meshes):
    reason = gltf_validator_missing()
    if reason:
        pytest.skip(f"Khronos glTF validator not available: {reason}")
    (report,) = validate_glbs([meshes[2]])
    assert report["numErrors"] == 0, describe_issues(report)


def test_a_text_job_mesh_has_a_zero_offset(meshes):
    """Text methods make the object around orbit.look_at, (0, 0, 0) by default: the offset is there, all zeros."""
    _, origin, _ = meshes
    assert origin["offset"].dtype == np.float64 and origin["offset"].tolist() == [0.0, 0.0, 0.0]
