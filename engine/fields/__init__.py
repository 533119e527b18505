"""Fields: position -> density and albedo (no view dependence)."""
from .base import Field, FieldOutput, density_normals
from .hashgrid import HashGrid, HashGridField
from .mlp import MLPField

__all__ = ["Field", "FieldOutput", "density_normals", "HashGrid", "HashGridField", "MLPField"]
