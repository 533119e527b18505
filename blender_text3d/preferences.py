"""The add-on preferences (Preferences > Add-ons > Text3D): where the engine is and what it may use.

ui draws them; props reads their values (props.preferences(), engine_python(), jobs_dir(), ...)
without importing this module, so only registration imports it.

No `from __future__ import annotations` here: Blender reads property annotations as objects.
"""
import bpy
from bpy.props import EnumProperty, StringProperty

from . import ui

DEVICE_ITEMS = [
    ("auto", "Auto", "The first GPU if there is one, else the CPU"),
    ("cpu", "CPU", "Always the CPU (slow; for tiny models and tests)"),
    ("cuda", "CUDA", "The first NVIDIA GPU"),
    ("mps", "Metal", "The Apple GPU"),
]


class Text3DPreferences(bpy.types.AddonPreferences):
    """Where the engine is and what it may use."""

    bl_idname = __package__

    engine_python: StringProperty(name="Engine Python", subtype="FILE_PATH",
                                  description="Interpreter of the engine's environment; empty = "
                                  "the one install/ creates")
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto",
                         description="Where the engine runs")
    clip_model: StringProperty(name="CLIP Model", description="Hub id (e.g. ViT-B-16/openai) or local "
                               "folder; empty = the engine's default")
    diffusion_model: StringProperty(name="Diffusion Model", description="Hub id (e.g. sd2-community/"
                                    "stable-diffusion-2-1-base) or local folder; empty = the engine's default")
    perceptual_model: StringProperty(name="Perceptual Model", description="VGG of NeRF-Art's perceptual loss: "
                                     "hub id or local folder; empty = the engine's default")
    downloads: EnumProperty(name="Downloads", default="FOLLOW", description="Whether the engine may "
                            "download missing models, and Install Engine use the package registry", items=[
                                ("FOLLOW", "Follow Blender", "Allowed when Blender's Allow Online Access is on"),
                                ("ALLOW", "Allow", "The engine may download missing models"),
                                ("NEVER", "Never", "Missing models are an error with a hint")])
    jobs_dir: StringProperty(name="Jobs Folder", subtype="DIR_PATH",
                             description="Where job folders go; empty = the extension's user folder")

    def draw(self, context):
        ui.draw_preferences(self, self.layout)


classes = (Text3DPreferences,)
