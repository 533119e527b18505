"""Rendering: sampling along rays, volume rendering, backgrounds; fields come in as callables."""
from .image import render_view
from .volume import RenderOutput, composite, ray_cube_intersect, render_rays, stratified_samples, volume_weights

__all__ = ["render_view", "RenderOutput", "composite", "ray_cube_intersect", "render_rays",
           "stratified_samples", "volume_weights"]
