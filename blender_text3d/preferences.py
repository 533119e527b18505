"""The add-on preferences (Preferences > Add-ons > Text3D): where the engine is and what it may use.

ui draws them; props reads their values (props.preferences(), engine_python(), jobs_dir(), ...)
without importing this module, so only registration imports it.

No `from __future__ import annotations` here: Blender reads property annotations as objects.
"""
import bpy
from bpy.props import EnumProperty, FloatProperty, StringProperty

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
    batch_backend: EnumProperty(name="Run Batches On", default="LOCAL", description="Where api.batch runs its jobs",
                                items=[("LOCAL", "This Machine", "One job after another, here"),
                                       ("RAY", "Ray Cluster", "All at once on a Ray cluster (the engine's "
                                        "environment needs Ray; the Jobs Folder must be shared by every node)")])
    ray_address: StringProperty(name="Cluster Address", description="The Ray cluster's head, host:port (ray start "
                                "--head prints it); empty = a Ray cluster started on this machine")
    gpus_per_job: FloatProperty(name="GPUs per Job", default=1.0, min=0.0, soft_max=8.0,
                                description="GPUs each job takes on the cluster (0 = none: CPU jobs)")

    def draw(self, context):
        ui.draw_preferences(self, self.layout)


classes = (Text3DPreferences,)
