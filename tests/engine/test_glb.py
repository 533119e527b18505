"""engine.mesh.io.write_glb: every variant read back with pygltflib, then checked by the Khronos glTF validator.

The read-back checks run everywhere; the validator ones skip, saying why, where
TEXT3D_GLTF_VALIDATOR or node is missing (python3 install/text3d.py test provides both
when npm is on PATH).
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import describe_issues, glb_array, gltf_validator_missing, read_glb, validate_glbs
from engine.mesh import export_mesh
from engine.mesh.io import png_bytes, vertex_normals, write_glb

# A unit octahedron around (0.1, 0.2, 0.3), wound counter-clockwise from outside.
OCTAHEDRON = (np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
              + [0.1, 0.2, 0.3]).astype(np.float32)
OCTAHEDRON_FACES = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
# An offset far from the origin and a scale, as a capture's ObjectFrame gives export_mesh.
OFFSET, SCALE = (12.5, -3.0, 40.0), 2.0
# Projected-CRS metres (UTM easting, northing, height), where float32 spacing is 0.03 / 0.5 / 1.5e-5 m.
GEO_OFFSET = (455123.37, 5420456.81, 251.4)


def colours(n: int) -> np.ndarray:
    """(n,3) float32 distinct linear colours in [0,1]."""
    return (np.arange(n * 3, dtype=np.float32).reshape(n, 3) % 7 + 0.5) / 8


def octahedron(textured: bool) -> dict:
    """write_glb's arguments for the octahedron, vertex-coloured or with an 8x4 texture
    (wider than tall, so swapped rows and columns show)."""
    mesh = {"vertices": OCTAHEDRON, "faces": OCTAHEDRON_FACES, "normals": vertex_normals(OCTAHEDRON, OCTAHEDRON_FACES)}
    if not textured:
        return {**mesh, "colors": colours(6)}
    texture = np.arange(4 * 8 * 3, dtype=np.uint8).reshape(4, 8, 3) * 2
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.25, 1.0], [0.5, 0.125], [0.75, 0.5], [0.1, 0.9]], np.float32)
    return {**mesh, "texcoords": uv, "png": png_bytes(texture)}


def single_triangle() -> dict:
    vertices = np.array([[0, 0, 0], [0.01, 0, 0], [0, 0.01, 0]], np.float32)  # a centimetre
    faces = np.array([[0, 1, 2]])
    return {"vertices": vertices, "faces": faces, "normals": vertex_normals(vertices, faces), "colors": colours(3)}


def ball(points):
    """Density 10 inside radius 0.5, 0 outside, a ramp 0.1 wide."""
    return (10 * np.clip((0.5 - np.linalg.norm(points, axis=1)) / 0.1 + 0.5, 0, 1)).astype(np.float32)


def halves(points):
    return np.where(points[:, :1] > 0, (0.5, 0.1, 0.1), (0.1, 0.1, 0.5)).astype(np.float32)


VARIANTS = ("vertex_colours", "textured", "single_triangle", "translated", "export_offset", "export_offset_textured")


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    """variant -> (.glb path, write_glb's arguments, None) for the direct writes, (.glb path,
    None, ExportResult) for export_mesh's, whose scale is in the vertices and offset in the node's
    translation."""
    out = tmp_path_factory.mktemp("glb")
    direct = {"vertex_colours": octahedron(False), "textured": octahedron(True), "single_triangle": single_triangle(),
              "translated": {**octahedron(False), "translation": GEO_OFFSET}}
    variants = {}
    for name, args in direct.items():
        with open(out / f"{name}.glb", "wb") as f:
            write_glb(f, **args)
        variants[name] = (out / f"{name}.glb", args, None)
    for name, texture_size in (("export_offset", 0), ("export_offset_textured", 32)):
        result = export_mesh(ball, halves, out / name, resolution=24, threshold=5.0, texture_size=texture_size,
                             offset=OFFSET, scale=SCALE)
        variants[name] = (result.paths["glb"], None, result)
    return variants


def read_back(path) -> dict:
    """What a written .glb holds, in write_glb's terms (Z-up, UV origin bottom-left), after
    checking its structure: one scene, node, mesh, triangle primitive and matte material."""
    gltf, blob = read_glb(path)
    assert gltf.asset.version == "2.0" and gltf.asset.generator == "Text3D"
    assert gltf.scene == 0 and gltf.scenes[0].nodes == [0] and len(gltf.nodes) == 1
    node = gltf.nodes[0]
    assert node.mesh == 0 and node.matrix is node.rotation is node.scale is None
    assert len(gltf.meshes) == 1 and len(gltf.meshes[0].primitives) == 1
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.mode == 4 and primitive.material == 0  # TRIANGLES
    pbr = gltf.materials[0].pbrMetallicRoughness
    assert (pbr.metallicFactor, pbr.roughnessFactor) == (0.0, 1.0) and pbr.baseColorFactor in (None, [1, 1, 1, 1])
    attributes = primitive.attributes
    for accessor in (attributes.POSITION, attributes.NORMAL, attributes.COLOR_0, attributes.TEXCOORD_0):
        assert accessor is None or gltf.accessors[accessor].componentType == 5126  # float32
    assert gltf.accessors[primitive.indices].componentType == 5125  # uint32

    def z_up(a):  # glTF Y-up -> Blender Z-up, the inverse of io.y_up
        return np.stack([a[:, 0], -a[:, 2], a[:, 1]], axis=1)

    position = glb_array(gltf, blob, attributes.POSITION)
    bounds = gltf.accessors[attributes.POSITION]
    assert bounds.min == position.min(0).tolist() and bounds.max == position.max(0).tolist()
    mesh = {"vertices": z_up(position), "normals": z_up(glb_array(gltf, blob, attributes.NORMAL)),
            "faces": glb_array(gltf, blob, primitive.indices).reshape(-1, 3)}
    if node.translation is not None:  # Python floats, as the JSON held them: float64
        mesh["translation"] = z_up(np.array([node.translation], np.float64))[0]
    assert mesh["faces"].max() < len(position)
    textured = attributes.TEXCOORD_0 is not None
    assert (attributes.COLOR_0 is None) == textured  # COLOR_0 would multiply into the texture's colours
    if textured:
        uv = glb_array(gltf, blob, attributes.TEXCOORD_0)
        mesh["texcoords"] = np.stack([uv[:, 0], 1 - uv[:, 1]], axis=1)  # glTF's origin is top-left
        assert pbr.baseColorTexture.index == 0 and pbr.baseColorTexture.texCoord in (None, 0)
        assert gltf.textures[0].source == 0 and gltf.textures[0].sampler == 0
        sampler = gltf.samplers[0]
        assert (sampler.magFilter, sampler.minFilter, sampler.wrapS, sampler.wrapT) == (9729, 9987, 33071, 33071)
        image = gltf.images[0]
        assert image.mimeType == "image/png" and image.uri is None
        view = gltf.bufferViews[image.bufferView]
        mesh["png"] = blob[view.byteOffset : view.byteOffset + view.byteLength]
    else:
        mesh["colors"] = glb_array(gltf, blob, attributes.COLOR_0)
        assert pbr.baseColorTexture is None and not gltf.images and not gltf.textures and not gltf.samplers
    return mesh


@pytest.mark.parametrize("variant", VARIANTS)
def test_glb_reads_back_what_was_written(written, variant):
    path, args, result = written[variant]
    got = read_back(path)
    if args is not None:
        if "translation" in args:
            assert got["translation"].tolist() == list(args["translation"])  # float64, exactly
        else:
            assert "translation" not in got
        np.testing.assert_array_equal(got["vertices"], args["vertices"])
        np.testing.assert_array_equal(got["normals"], args["normals"])
        np.testing.assert_array_equal(got["faces"], args["faces"])
        if "png" in args:
            np.testing.assert_allclose(got["texcoords"], args["texcoords"], atol=1e-7)
            assert got["png"] == args["png"]
        else:
            np.testing.assert_array_equal(got["colors"], args["colors"])
        return
    with np.load(result.paths["npz"]) as npz:
        mesh = dict(npz)
    corners = got["vertices"][got["faces"]]  # (M,3,3): textured meshes split vertices at UV seams
    np.testing.assert_array_equal(corners, mesh["vertices"][mesh["faces"]])
    # The offset is the node's translation, as mesh.npz's offset; the scale is in the vertices: the ball of
    # radius 0.5 around the origin, radius 1.
    assert got["translation"].tolist() == mesh["offset"].tolist() == list(OFFSET)
    np.testing.assert_allclose(got["vertices"].mean(0), 0, atol=0.05)
    np.testing.assert_allclose(np.linalg.norm(got["vertices"], axis=1), 0.5 * SCALE, atol=2 * SCALE / 24)
    np.testing.assert_allclose(np.linalg.norm(got["normals"], axis=1), 1, atol=1e-5)
    if "texture" in mesh:
        np.testing.assert_allclose(got["texcoords"][got["faces"]].reshape(-1, 2), mesh["uvs"], atol=1e-6)
        assert got["png"] == result.paths["png"].read_bytes()
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(got["png"]))), mesh["texture"])
    else:
        np.testing.assert_array_equal(got["faces"], mesh["faces"])
        np.testing.assert_array_equal(got["colors"], mesh["vertex_colors"])


def validator_or_skip():
    reason = gltf_validator_missing()
    if reason:
        pytest.skip(f"Khronos glTF validator not available: {reason}")


@pytest.mark.parametrize("variant", VARIANTS)
def test_glb_passes_the_khronos_validator(written, variant):
    validator_or_skip()
    path = written[variant][0]
    (report,) = validate_glbs([path])
    print(f"{variant}: {report['numErrors']} errors, {report['numWarnings']} warnings, {report['numInfos']} infos "
          f"(gltf-validator {report.get('validator')})")
    assert report["numErrors"] == 0, f"{path}:\n{describe_issues(report)}"
    if report["numWarnings"]:
        warnings.warn(f"gltf-validator warns about the {variant} .glb:\n{describe_issues(report)}", stacklevel=1)


def test_the_validator_catches_a_broken_glb(written, tmp_path):
    """The check can fail: a wrong POSITION max and a cut-off file are both errors."""
    validator_or_skip()
    gltf, _ = read_glb(written["vertex_colours"][0])
    gltf.accessors[gltf.meshes[0].primitives[0].attributes.POSITION].max = [9.0, 9.0, 9.0]
    wrong_max, cut = tmp_path / "wrong_max.glb", tmp_path / "cut.glb"
    wrong_max.write_bytes(b"".join(gltf.save_to_bytes()))
    cut.write_bytes(written["textured"][0].read_bytes()[:-100])
    try:
        reports = validate_glbs([wrong_max, cut])
    finally:  # left in the base temp folder they would fail the session-end check
        wrong_max.unlink()
        cut.unlink()
    assert "ACCESSOR_MAX_MISMATCH" in {m["code"] for m in reports[0]["messages"]}
    assert all(r["numErrors"] > 0 for r in reports)
