"""Writers: the job's mesh.npz (read by the add-on), a glTF 2.0 binary (.glb), the PNG."""
from __future__ import annotations

import io

import numpy as np
import pygltflib
from PIL import Image


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


def write_npz(file, vertices, faces, vertex_colors, uvs=None, texture=None, offset=(0.0, 0.0, 0.0)) -> None:
    """The job's result/mesh.npz (docs/ARCHITECTURE.md, "The job folder") into an open binary file.

    vertices (N,3) float32 metres relative to offset, offset (3,) float64 metres in the world: a
    vertex's world position is vertices + offset, added in float64 (float32 world coordinates of a
    georeferenced capture, y = 5.4e6 m, would snap to a 0.5 m grid). faces (M,3) int32,
    vertex_colors (N,3) float32 linear; when textured uvs (M*3,2) float32 per face corner
    (origin bottom-left) and texture (H,W,3) uint8 sRGB, row 0 = top.
    """
    arrays = {
        "vertices": vertices.astype(np.float32),
        "offset": np.asarray(offset, np.float64).reshape(3),
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


def write_glb(file, vertices, faces, normals, colors=None, texcoords=None, png=None, translation=None) -> None:
    """A glTF 2.0 binary (.glb) with one mesh, one node and one material into an open binary file.

    vertices (N,3) in metres relative to the node and normals (N,3) unit vectors, both in
    Blender's Z-up world (written Y-up, as glTF wants); translation (3,) metres, Z-up: where the
    node sits in the world (None: no transform). glTF keeps node transforms as JSON numbers,
    written here in full float64, so a mesh far from the origin keeps its float32 vertices small
    and exact and its position exact too. faces (M,3) vertex indices wound
    counter-clockwise from outside. Either colors (N,3) float32 linear RGB in [0,1] (COLOR_0)
    for the vertex-colour mesh, or texcoords (N,2) UVs with origin bottom-left plus png
    (the PNG's bytes, sRGB) for the textured one. Written as float32 POSITION (with the
    min/max glTF requires), NORMAL, COLOR_0 or TEXCOORD_0, uint32 indices, and a matte
    (metallic 0, roughness 1) material whose base colour is the texture or, untextured,
    white times COLOR_0.
    """
    blob = bytearray()
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator="Text3D"))

    def add_view(data: bytes, target: int | None = None) -> int:
        # Each view starts 4-byte aligned, as the accessors' float32/uint32 components need.
        blob.extend(b"\0" * (-len(blob) % 4))
        gltf.bufferViews.append(
            pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        return len(gltf.bufferViews) - 1

    def add_accessor(a: np.ndarray, kind: str, target: int, bounds: bool = False) -> int:
        component = pygltflib.UNSIGNED_INT if a.dtype == np.uint32 else pygltflib.FLOAT
        accessor = pygltflib.Accessor(bufferView=add_view(np.ascontiguousarray(a).tobytes(), target),
                                      componentType=component, count=len(a), type=kind)
        if bounds:
            accessor.min, accessor.max = a.min(0).tolist(), a.max(0).tolist()
        gltf.accessors.append(accessor)
        return len(gltf.accessors) - 1

    position = y_up(vertices)
    attributes = pygltflib.Attributes(
        POSITION=add_accessor(position, pygltflib.VEC3, pygltflib.ARRAY_BUFFER, bounds=True),
        NORMAL=add_accessor(y_up(normals), pygltflib.VEC3, pygltflib.ARRAY_BUFFER),
    )
    pbr = pygltflib.PbrMetallicRoughness(metallicFactor=0.0, roughnessFactor=1.0)
    if png is None:
        attributes.COLOR_0 = add_accessor(colors.astype(np.float32), pygltflib.VEC3, pygltflib.ARRAY_BUFFER)
    else:
        # glTF puts the UV origin top-left. COLOR_0 is left out here: glTF multiplies
        # it into the base colour, which would apply the albedo twice.
        uv = np.stack([texcoords[:, 0], 1.0 - texcoords[:, 1]], axis=1).astype(np.float32)
        attributes.TEXCOORD_0 = add_accessor(uv, pygltflib.VEC2, pygltflib.ARRAY_BUFFER)
        gltf.images.append(pygltflib.Image(bufferView=add_view(png), mimeType=pygltflib.IMAGEPNG))
        gltf.samplers.append(pygltflib.Sampler(magFilter=pygltflib.LINEAR, minFilter=pygltflib.LINEAR_MIPMAP_LINEAR,
                                               wrapS=pygltflib.CLAMP_TO_EDGE, wrapT=pygltflib.CLAMP_TO_EDGE))
        gltf.textures.append(pygltflib.Texture(source=0, sampler=0))
        pbr.baseColorTexture = pygltflib.TextureInfo(index=0)
    indices = add_accessor(faces.astype(np.uint32).ravel(), pygltflib.SCALAR, pygltflib.ELEMENT_ARRAY_BUFFER)

    gltf.scene = 0
    gltf.scenes.append(pygltflib.Scene(nodes=[0]))
    node = pygltflib.Node(mesh=0, name="Text3D")
    if translation is not None:
        x, y, z = (float(t) for t in translation)
        node.translation = [x + 0.0, z + 0.0, -y + 0.0]  # Y-up as the vertices; + 0.0 writes -0 as 0
    gltf.nodes.append(node)
    primitive = pygltflib.Primitive(attributes=attributes, indices=indices, material=0)  # mode: TRIANGLES
    gltf.meshes.append(pygltflib.Mesh(primitives=[primitive]))
    gltf.materials.append(pygltflib.Material(pbrMetallicRoughness=pbr))
    # One buffer without a uri: the GLB's binary chunk. save_to_bytes copies the views out of
    # it, pads the chunks to 4 bytes and sets the final byteLength; it returns the header,
    # JSON chunk and BIN chunk as pieces.
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob)))
    gltf.set_binary_blob(bytes(blob))
    for piece in gltf.save_to_bytes():
        file.write(piece)
