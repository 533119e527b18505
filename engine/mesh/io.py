"""Writers: the job's mesh.npz (read by the add-on), a glTF 2.0 binary (.glb), the PNG."""
from __future__ import annotations

import io
import json
import struct

import numpy as np
from PIL import Image

# glTF constants (glTF 2.0 spec, section 5).
FLOAT, UINT32 = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR, LINEAR_MIPMAP_LINEAR, CLAMP_TO_EDGE = 9729, 9987, 33071
GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,3) float32 unit normals, the area-weighted mean of the adjacent face normals.

    The unnormalised cross product is twice the face area, hence the weighting.
    """
    v = vertices.astype(np.float64)
    cross = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
    summed = np.stack(
        [np.bincount(faces.ravel(), np.repeat(cross[:, c], 3), len(v)) for c in range(3)], axis=1
    )
    length = np.linalg.norm(summed, axis=1, keepdims=True)
    # A vertex of zero-area faces only gets +Z rather than NaN.
    return np.where(length > 0, summed / np.maximum(length, 1e-30), [0.0, 0.0, 1.0]).astype(np.float32)


def y_up(a: np.ndarray) -> np.ndarray:
    """(N,3) Blender Z-up -> glTF Y-up, (x, y, z) -> (x, z, -y): a rotation, so winding holds."""
    return np.stack([a[:, 0], a[:, 2], -a[:, 1]], axis=1).astype(np.float32)


def write_npz(file, vertices, faces, vertex_colors, uvs=None, texture=None) -> None:
    """The job's result/mesh.npz (DESIGN.md "The job folder") into an open binary file.

    vertices (N,3) float32 world coordinates, faces (M,3) int32, vertex_colors (N,3)
    float32 linear; when textured uvs (M*3,2) float32 per face corner (origin
    bottom-left) and texture (H,W,3) uint8 sRGB, row 0 = top.
    """
    arrays = {
        "vertices": vertices.astype(np.float32),
        "faces": faces.astype(np.int32),
        "vertex_colors": vertex_colors.astype(np.float32),
    }
    if texture is not None:
        arrays.update(uvs=uvs.astype(np.float32), texture=texture)
    np.savez_compressed(file, **arrays)


def png_bytes(texture: np.ndarray) -> bytes:
    """PNG encoding of an (H,W,3) uint8 image, row 0 = top."""
    out = io.BytesIO()
    Image.fromarray(texture).save(out, format="PNG")
    return out.getvalue()


def write_glb(file, vertices, faces, normals, colors=None, texcoords=None, png=None) -> None:
    """A glTF 2.0 binary with one mesh into an open binary file.

    vertices (N,3) and normals (N,3) in Blender's Z-up world, faces (M,3); colors (N,3)
    float32 linear (COLOR_0) for the vertex-colour mesh, or texcoords (N,2) with
    origin bottom-left plus png (bytes) for the textured one.
    """
    blob = bytearray()
    views, accessors = [], []

    def add_view(data: bytes, target: int | None = None) -> int:
        blob.extend(b"\0" * (-len(blob) % 4))
        view = {"buffer": 0, "byteOffset": len(blob), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        views.append(view)
        blob.extend(data)
        return len(views) - 1

    def add_accessor(a: np.ndarray, kind: str, target: int, **extra) -> int:
        component = UINT32 if a.dtype == np.uint32 else FLOAT
        view = add_view(np.ascontiguousarray(a).tobytes(), target)
        accessors.append({"bufferView": view, "componentType": component, "count": len(a), "type": kind, **extra})
        return len(accessors) - 1

    position = y_up(vertices)
    attributes = {
        "POSITION": add_accessor(position, "VEC3", ARRAY_BUFFER, min=position.min(0).tolist(), max=position.max(0).tolist()),
        "NORMAL": add_accessor(y_up(normals), "VEC3", ARRAY_BUFFER),
    }
    pbr = {"metallicFactor": 0.0, "roughnessFactor": 1.0}
    gltf = {"asset": {"version": "2.0", "generator": "Text3D"}}
    if png is None:
        attributes["COLOR_0"] = add_accessor(colors.astype(np.float32), "VEC3", ARRAY_BUFFER)
    else:
        # glTF puts the UV origin top-left. COLOR_0 is left out here: glTF multiplies
        # it into the base colour, which would apply the albedo twice.
        uv = np.stack([texcoords[:, 0], 1.0 - texcoords[:, 1]], axis=1).astype(np.float32)
        attributes["TEXCOORD_0"] = add_accessor(uv, "VEC2", ARRAY_BUFFER)
        gltf["images"] = [{"bufferView": add_view(png), "mimeType": "image/png"}]
        gltf["samplers"] = [{"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": CLAMP_TO_EDGE, "wrapT": CLAMP_TO_EDGE}]
        gltf["textures"] = [{"source": 0, "sampler": 0}]
        pbr["baseColorTexture"] = {"index": 0}
    indices = add_accessor(faces.astype(np.uint32).ravel(), "SCALAR", ELEMENT_ARRAY_BUFFER)
    blob.extend(b"\0" * (-len(blob) % 4))

    gltf.update(
        scene=0,
        scenes=[{"nodes": [0]}],
        nodes=[{"mesh": 0, "name": "Text3D"}],
        meshes=[{"primitives": [{"attributes": attributes, "indices": indices, "material": 0}]}],
        materials=[{"pbrMetallicRoughness": pbr}],
        buffers=[{"byteLength": len(blob)}],
        bufferViews=views,
        accessors=accessors,
    )
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    file.write(struct.pack("<III", GLB_MAGIC, 2, 12 + 8 + len(text) + 8 + len(blob)))
    file.write(struct.pack("<II", len(text), JSON_CHUNK) + text)
    file.write(struct.pack("<II", len(blob), BIN_CHUNK) + bytes(blob))
