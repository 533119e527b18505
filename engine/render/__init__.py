"""Rendering: sampling along rays, volume rendering, backgrounds; fields come in as callables."""
from .chunked import backprop_in_chunks
from .image import render_view
from .volume import (
    RenderOutput, composite, ray_cube_intersect, render_rays, stratified_samples, volume_weights,
)

__all__ = ["backprop_in_chunks", "render_view", "RenderOutput", "composite", "ray_cube_intersect", "render_rays",
           "stratified_samples", "volume_weights"]
