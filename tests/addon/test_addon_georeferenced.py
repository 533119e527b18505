"""Importing a mesh far from the origin (a capture in projected-CRS metres) in real headless Blender (bpy module).

result/mesh.npz holds float32 vertices relative to a float64 `offset` (docs/ARCHITECTURE.md, the job folder): the
importer keeps the vertices as the mesh data, exact, and puts the object's origin at the offset.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from blender_text3d import importer

# The georeferenced case's sphere: easting, northing, height (m), radius 0.8 m.
CENTRE = (455123.37, 5420456.81, 251.4)
RADIUS = 0.8


def uv_sphere(rings: int = 24, segments: int = 48):
    """(N,3) float32 vertices of a sphere of RADIUS around the origin and (M,3) int32 faces, wound outwards."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    vertices = RADIUS * np.concatenate([[[0, 0, 1]], ring, [[0, 0, -1]]])
    faces = []
    for i in range(rings - 2):
        for j in range(segments):
            a, b = 1 + i * segments + j, 1 + i * segments + (j + 1) % segments
            faces += [[a, a + segments, b], [b, a + segments, b + segments]]
    last = 1 + (rings - 2) * segments
    for j in range(segments):
        faces += [[0, 1 + j, 1 + (j + 1) % segments], [last + j, len(vertices) - 1, last + (j + 1) % segments]]
    return vertices.astype(np.float32), np.array(faces, np.int32)


def write_job(folder, job: dict, offset=None):
    """A finished job folder: job.json and result/mesh.npz of uv_sphere, relative to offset (None: no array)."""
    vertices, faces = uv_sphere()
    arrays = {"vertices": vertices, "faces": faces, "vertex_colors": np.full_like(vertices, 0.5)}
    if offset is not None:
        arrays["offset"] = np.asarray(offset, np.float64)
    (folder / "result").mkdir(parents=True)
    np.savez_compressed(folder / "result" / "mesh.npz", **arrays)
    (folder / "job.json").write_text(json.dumps({"spec_version": 1, **job}), encoding="utf-8")
    return folder, vertices


def mesh_vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_a_georeferenced_capture_job_imports_at_its_offset_with_its_exact_shape(scene, tmp_path):
    folder, vertices = write_job(tmp_path / "geo", {"method": "reconstruct", "inputs": {"capture": "/photos"}}, CENTRE)
    obj = importer.import_job(folder, scene.collection)
    # The mesh data is the local shape, unchanged: no vertex snapped to the 0.5 m grid of float32 at y = 5.4e6 m.
    np.testing.assert_array_equal(mesh_vertices(obj), vertices)
    assert len(np.unique(mesh_vertices(obj)[:, 1])) > 100
    # Blender keeps the location in float32 (the best it can: 0.5 m steps in y out there); the exact float64
    # offset is in the object's property, and with it the vertices' world positions to well under a millimetre.
    assert tuple(obj.location) == tuple(np.float32(CENTRE).tolist())
    assert obj["text3d_offset"].to_list() == list(CENTRE)
    world = mesh_vertices(obj).astype(np.float64) + obj["text3d_offset"].to_list()
    np.testing.assert_allclose(np.linalg.norm(world - CENTRE, axis=1), RADIUS, atol=1e-6)
    assert obj["text3d_capture"] == "/photos"


def test_a_text_job_imports_at_the_cursor_plus_its_offset(scene, tmp_path):
    """A text job made around orbit.look_at (0, 0, 0.5): the object's origin is the cursor plus look_at."""
    folder, vertices = write_job(tmp_path / "text", {"method": "dream_fields", "prompt": "a ball"}, (0.0, 0.0, 0.5))
    scene.cursor.location = (9.0, -2.0, 1.0)
    obj = importer.import_job(folder, scene.collection)
    assert tuple(obj.location) == pytest.approx((9.0, -2.0, 1.5)) and obj["text3d_offset"].to_list() == [0, 0, 0.5]
    np.testing.assert_array_equal(mesh_vertices(obj), vertices)


def test_a_mesh_without_an_offset_imports_as_before(scene, tmp_path):
    """Job folders of engines before the offset: world vertices, the object at the capture's origin."""
    folder, vertices = write_job(tmp_path / "old", {"method": "reconstruct", "inputs": {"capture": "/photos"}})
    obj = importer.import_job(folder, scene.collection)
    assert tuple(obj.location) == (0.0, 0.0, 0.0) and "text3d_offset" not in obj
    np.testing.assert_array_equal(mesh_vertices(obj), vertices)


@pytest.mark.parametrize("offset", [np.zeros(2), np.array([0.0, np.nan, 0.0]), np.array(["a", "b", "c"])])
def test_a_bad_offset_is_a_mesh_file_error_naming_it(tmp_path, offset, addon):
    vertices, faces = uv_sphere(4, 6)
    path = tmp_path / "mesh.npz"
    np.savez(path, vertices=vertices, faces=faces, vertex_colors=np.zeros_like(vertices), offset=offset)
    with pytest.raises(importer.MeshFileError, match="offset"):
        importer.load_npz(path)
