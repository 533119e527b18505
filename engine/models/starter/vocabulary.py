"""The starter models' vocabulary: the only words they know. Torch-free, so that the demo (in Blender's Python)
and the add-on can check a prompt against it."""
from __future__ import annotations

import re

SHAPES = ("cube", "sphere", "cylinder", "cone", "torus", "pyramid", "capsule", "octahedron")
COLOURS = {
    "red": (0.85, 0.1, 0.08), "orange": (0.95, 0.45, 0.05), "yellow": (0.95, 0.85, 0.1),
    "green": (0.1, 0.65, 0.15), "blue": (0.1, 0.25, 0.9), "purple": (0.5, 0.15, 0.7),
    "white": (0.95, 0.95, 0.95), "black": (0.05, 0.05, 0.05),
}
"""Colour name -> albedo (sRGB in [0,1], as fields hold it)."""
PHRASINGS = ("a {colour} {shape}", "a photo of a {colour} {shape}", "a render of a {colour} {shape}",
             "a 3d model of a {colour} {shape}", "{colour} {shape}", "a {shape} in {colour}",
             "a {colour} {shape} on a background")
"""Caption templates; PHRASINGS[0] is the canonical prompt."""
CLASSES = tuple((shape, colour) for shape in SHAPES for colour in COLOURS)
VIEW_WORDS = ("front", "side", "back", "overhead", "view")
"""DreamFusion's view suffixes, which the starter diffusion model's captions carry."""
CAMERAS = {"azimuth_deg": (0.0, 360.0), "elevation_deg": (-10.0, 60.0), "radius": (3.5, 4.5), "fov_deg": (30.0, 40.0)}
"""The training renders' camera ranges (job.json's orbit keys): jobs guided by a starter model see the object as
it did when their orbit lies inside these."""
DEMO_PROMPT = "a purple cylinder"
"""What the offline demo makes with the starter CLIP: judged right in every turntable view by the benchmark, and
its mesh (which keeps only the field's dense parts) is the clearest of the benchmark's: a disc from above, a block
from the side."""


def caption(shape: str, colour: str, phrasing: int = 0) -> str:
    return PHRASINGS[phrasing].format(shape=shape, colour=colour)


def unknown_words(prompt: str) -> list[str]:
    """The words of `prompt` that no starter caption uses (case-insensitive), in order; [] = all known."""
    known = set(SHAPES) | set(COLOURS) | set(VIEW_WORDS)
    for template in PHRASINGS:
        known |= set(re.findall(r"[a-z0-9]+", template.replace("{colour}", "").replace("{shape}", "")))
    return [w for w in re.findall(r"[a-z0-9]+", prompt.lower()) if w not in known]
