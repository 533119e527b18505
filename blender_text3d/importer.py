"""result/mesh.npz -> a Blender object with its baked albedo (docs/ARCHITECTURE.md, the job folder).

Meshes are built with numpy foreach_set on the mesh attributes (from_pydata is far slower).
The colour attribute "albedo" always holds the vertex colours; the material reads the
baked texture instead when the npz has one.

The npz's vertices are relative to its float64 `offset` (a georeferenced capture sits millions of
metres from the origin, where float32 world coordinates snap to a 0.5 m grid), so the mesh data is
the object's exact shape and the object's location carries the offset. Blender keeps locations in
float32 too: far out the *placement* rounds (0.5 m at 5.4e6 m) but the shape does not; a non-zero
offset is kept exactly in the object's `text3d_offset` property (ID properties are float64).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import bpy
import numpy as np

from . import jobspec

COLOR_ATTRIBUTE = "albedo"
UV_MAP = "UVMap"
NAME_LIMIT = 60  # Blender ID names hold 63 bytes


class MeshFileError(ValueError):
    """A mesh.npz that does not follow the contract; the message names the array."""


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a mesh.npz, checked against the contract and converted to exact dtypes.

    vertices (N,3) float32, faces (M,3) int32, vertex_colors (N,3) float32, offset (3,) float64
    metres (zeros when the file has none: meshes of engines before it were world coordinates),
    uvs (M*3,2) float32 and texture (H,W,3) uint8 when textured. Raises MeshFileError."""
    try:
        with np.load(path) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:  # what np.load raises
        raise MeshFileError(f"cannot read {path}: {exc}") from exc
    for key in ("vertices", "faces", "vertex_colors"):
        if key not in data:
            raise MeshFileError(f"{path}: missing array {key!r}")
    v, f, c = data["vertices"], data["faces"], data["vertex_colors"]
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3 or c.shape != v.shape:
        raise MeshFileError(f"{path}: expected vertices (N,3), faces (M,3), vertex_colors (N,3); got "
                            f"{v.shape}, {f.shape}, {c.shape}")
    if len(f) and (f.min() < 0 or f.max() >= len(v)):
        raise MeshFileError(f"{path}: face indices outside [0, {len(v)})")
    out = {"vertices": v.astype(np.float32, copy=False), "faces": f.astype(np.int32, copy=False),
           "vertex_colors": c.astype(np.float32, copy=False), "offset": np.zeros(3)}
    if "offset" in data:
        offset = data["offset"]
        if offset.shape != (3,) or not np.issubdtype(offset.dtype, np.number) or not np.isfinite(offset).all():
            raise MeshFileError(f"{path}: expected offset (3,) finite numbers; got {offset.shape} {offset.dtype}")
        out["offset"] = offset.astype(np.float64)
    if "uvs" in data and "texture" in data:
        uvs, tex = data["uvs"], data["texture"]
        if uvs.shape != (3 * len(f), 2) or tex.ndim != 3 or tex.shape[2] != 3:
            raise MeshFileError(f"{path}: expected uvs (M*3,2) and texture (H,W,3); got {uvs.shape}, {tex.shape}")
        out["uvs"], out["texture"] = uvs.astype(np.float32, copy=False), tex.astype(np.uint8, copy=False)
    return out


def fill_mesh(mesh: bpy.types.Mesh, data: dict[str, np.ndarray]) -> None:
    """Replace the mesh's geometry, colour attribute and UVs with the arrays of load_npz."""
    v, f, c = data["vertices"], data["faces"], data["vertex_colors"]
    mesh.clear_geometry()
    mesh.vertices.add(len(v))
    mesh.loops.add(f.size)
    mesh.polygons.add(len(f))
    # The generic attributes take a buffer in one copy: ~10x faster than vertices.co and
    # loops.vertex_index, which go through RNA item by item.
    mesh.attributes["position"].data.foreach_set("vector", v.ravel())
    mesh.attributes[".corner_vert"].data.foreach_set("value", f.ravel())
    # Polygon sizes follow from the start offsets (all triangles).
    mesh.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
    mesh.update(calc_edges=True)
    rgba = np.ones((len(v), 4), np.float32)
    rgba[:, :3] = c
    attr = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attr
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    if "uvs" in data:
        mesh.uv_layers.new(name=UV_MAP).uv.foreach_set("vector", data["uvs"].ravel())
    mesh.shade_smooth()  # marching-cubes facets read as noise when flat-shaded


def texture_image(name: str, texture: np.ndarray) -> bpy.types.Image:
    """A packed sRGB image from an (H,W,3) uint8 texture whose row 0 is the top."""
    h, w, _ = texture.shape
    image = bpy.data.images.new(name, w, h, alpha=False)
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = texture[::-1] / np.float32(255)  # Blender stores the bottom row first
    image.pixels.foreach_set(rgba.ravel())
    image.pack()  # keep the texture in the .blend, independent of the job folder
    return image


def albedo_material(name: str, image: bpy.types.Image | None = None) -> bpy.types.Material:
    """A Principled BSDF whose Base Color is the texture, else the "albedo" attribute."""
    mat = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        mat.use_nodes = True  # node-based by default only from 5.0
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    bsdf = next(n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    if image is not None:
        source = nodes.new("ShaderNodeTexImage")
        source.image = image
    else:
        source = nodes.new("ShaderNodeVertexColor")
        source.layer_name = COLOR_ATTRIBUTE
    source.location = (bsdf.location.x - 300, bsdf.location.y)
    links.new(source.outputs["Color"], bsdf.inputs["Base Color"])
    return mat


def new_object(name: str, data: dict[str, np.ndarray], collection: bpy.types.Collection,
               location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """A new mesh object with the albedo material, linked to collection, its origin at location + the
    npz's offset (added in float64, then stored by Blender in float32); a non-zero offset is also kept
    exactly in its `text3d_offset` property."""
    name = name[:NAME_LIMIT] or "Text3D"
    mesh = bpy.data.meshes.new(name)
    fill_mesh(mesh, data)
    image = texture_image(name, data["texture"]) if "texture" in data else None
    mesh.materials.append(albedo_material(name, image))
    obj = bpy.data.objects.new(name, mesh)
    offset = np.asarray(data.get("offset", np.zeros(3)), np.float64)
    obj.location = np.asarray(location, np.float64) + offset
    if offset.any():
        obj["text3d_offset"] = offset.tolist()
    collection.objects.link(obj)
    return obj


def remove_object(obj: bpy.types.Object) -> None:
    """Delete an object with its mesh and materials (preview objects and failed imports)."""
    mesh = obj.data
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        for mat in mesh.materials:
            if mat is not None and mat.users == 1:
                bpy.data.materials.remove(mat)
        bpy.data.meshes.remove(mesh)


def import_job(job_dir: str | Path, collection: bpy.types.Collection, location=None,
               mesh_path: str | Path | None = None) -> bpy.types.Object:
    """Import a finished job folder's mesh, named after its prompt (or capture), with text3d_* properties.

    location None = where the job belongs: the origin for a capture job, whose mesh the engine
    wrote in the capture's world frame, else the 3D cursor. The object's origin is location + the
    mesh's offset (new_object).
    """
    job_dir = Path(job_dir)
    try:
        job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        job = {}  # the mesh is still worth importing; the properties say what is unknown
    if not isinstance(job, dict):
        job = {}
    data = load_npz(mesh_path or job_dir / "result" / "mesh.npz")
    inputs = job.get("inputs")
    capture = inputs.get("capture") if isinstance(inputs, dict) else None
    if location is None:
        location = (0.0, 0.0, 0.0) if capture else tuple(bpy.context.scene.cursor.location)
    prompt = str(job.get("prompt", ""))
    obj = new_object(jobspec.job_title(job) or job_dir.name, data, collection, location)
    obj["text3d_prompt"] = prompt or job_dir.name
    obj["text3d_method"] = str(job.get("method", ""))
    obj["text3d_seed"] = int(job.get("seed", 0))
    obj["text3d_job_dir"] = str(job_dir)
    if capture:
        obj["text3d_capture"] = str(capture)
    return obj
