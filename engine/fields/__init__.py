"""Fields: position -> density and albedo (no view dependence)."""
from __future__ import annotations

from .base import Field, FieldOutput, density_normals
from .hashgrid import HashGrid, HashGridField
from .mlp import MLPField
from .triplane import FreePlanes, PlaneSource, TriPlaneField, load_decoder


def build_field(options, default_width: int = 64, blob_density: float = 0.0, blob_radius: float = 0.5) -> Field:
    """The field options.field (engine.options.FieldOptions) describes, on the CPU.

    default_width: the MLP width when options.mlp_width is null (Dream Fields: 64 for the hash grid,
    128 for its MLP). blob_*: the starting density ball (DreamFusion); hash grid and tri-planes.
    """
    if options.backbone == "mlp":
        return MLPField(width=options.mlp_width or default_width, blocks=options.mlp_blocks,
                        density_bias=options.density_bias)
    if options.backbone == "triplane":
        planes = FreePlanes(options.triplane_channels, options.triplane_resolution)
        field = TriPlaneField(planes, width=options.mlp_width or 64, density_bias=options.density_bias,
                              blob_density=blob_density, blob_radius=blob_radius,
                              lambda_plane_tv=options.lambda_plane_tv)
        load_decoder(field, options.triplane_decoder)
        return field
    return HashGridField(levels=options.hash_levels, log2_size=options.hash_log2_size,
                         max_resolution=options.hash_max_resolution, width=options.mlp_width or default_width,
                         density_bias=options.density_bias, blob_density=blob_density, blob_radius=blob_radius)


__all__ = ["Field", "FieldOutput", "density_normals", "FreePlanes", "HashGrid", "HashGridField", "MLPField",
           "PlaneSource", "TriPlaneField", "build_field"]
