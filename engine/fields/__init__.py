"""Fields: position -> density and albedo (no view dependence)."""
from __future__ import annotations

from .base import Field, FieldOutput, density_normals
from .hashgrid import HashGrid, HashGridField
from .mlp import MLPField


def build_field(options, default_width: int = 64, blob_density: float = 0.0, blob_radius: float = 0.5) -> Field:
    """The field options.field (engine.options.FieldOptions) describes, on the CPU.

    default_width: the MLP width when options.mlp_width is null (Dream Fields: 64 for the hash grid,
    128 for its MLP). blob_*: HashGridField's starting density ball (DreamFusion); hash grid only.
    """
    if options.backbone == "mlp":
        return MLPField(width=options.mlp_width or default_width, blocks=options.mlp_blocks,
                        density_bias=options.density_bias)
    return HashGridField(levels=options.hash_levels, log2_size=options.hash_log2_size,
                         max_resolution=options.hash_max_resolution, width=options.mlp_width or default_width,
                         density_bias=options.density_bias, blob_density=blob_density, blob_radius=blob_radius)


__all__ = ["Field", "FieldOutput", "density_normals", "HashGrid", "HashGridField", "MLPField", "build_field"]
