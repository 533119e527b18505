"""Judging a finished text-to-3D job with the starter judge: render a turntable of its scene, and ask the judge
(a CLIP trained apart from the guide, never used for guidance) which caption each view shows. CLIP R-precision
as the Dream Fields paper measures it (section 5: the retrieval of the right caption from rendered views)."""
from __future__ import annotations

from pathlib import Path

import torch

from ...cameras import camera_rays, focal_from_fov, turntable
from ...jobs.offline import load_scene
from ...jobs.outputs import render_scene_rays
from ...render import composite
from . import STARTER_JUDGE

BACKGROUND = 0.5
"""The judged views' background grey: none of the vocabulary's colours (white on white would hide a white
object, black on black a black one)."""


def turntable_images(job_dir: Path, views: int = 8, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders of the finished job's scene from `views` cameras evenly around its orbit's middle elevation, radius
    and FOV, on the CPU: images (V,3,S,S) in [0,1] over BACKGROUND grey, and their opacity (V,S,S)."""
    spec, scene, _, _ = load_scene(job_dir, "cpu")
    cams = turntable(spec.orbit, views)
    images, opacity = [], []
    with torch.no_grad():
        for i in range(views):
            focal = focal_from_fov(float(cams.fov_deg[i]), size)
            origins, dirs = camera_rays(cams.c2w[i], focal, size, size)
            out = render_scene_rays(scene, origins, dirs, spec.render.samples_per_ray, focal)
            image = composite(out.rgb, out.opacity, torch.full((3,), BACKGROUND)).reshape(size, size, 3)
            images.append(image.permute(2, 0, 1))
            opacity.append(out.opacity.reshape(size, size))
    return torch.stack(images), torch.stack(opacity)


def fog(opacity: torch.Tensor, object_alpha: float = 0.5) -> float:
    """The share of the view's coverage that is half-transparent: sum of opacity over pixels below object_alpha,
    over the sum of all opacity ((...,H,W) in [0,1]). 0 for a solid object over empty space; near 1 for a
    cloud. Edges contribute a little (a pixel-wide antialiased rim)."""
    total = opacity.sum().item()
    return 0.0 if total == 0 else opacity[opacity < object_alpha].sum().item() / total


def coverage(opacity: torch.Tensor, object_alpha: float = 0.5) -> float:
    """The share of pixels at least object_alpha opaque ((...,H,W) in [0,1]): how much of the view the object
    covers. A dense fog filling the object cube, which fog() misses, covers far more than the shapes do."""
    return (opacity >= object_alpha).float().mean().item()


class Judge:
    """The starter judge, loaded as any local open_clip folder (engine.models.load_clip)."""

    def __init__(self, captions: list[str]) -> None:
        from ..clip import load_clip

        self.captions = list(captions)
        self.clip = load_clip(str(STARTER_JUDGE), "cpu", allow_downloads=False)
        with torch.no_grad():
            self.text = self.clip.encode_text(self.captions)  # (C, D), unit length

    def pick(self, images: torch.Tensor, among: list[int] | None = None) -> list[int]:
        """(V,3,S,S) in [0,1] -> for each view, the index (into captions) of the caption the judge finds most
        similar, among all captions or the indices `among`."""
        among = list(range(len(self.captions))) if among is None else list(among)
        with torch.no_grad():
            feats = self.clip.encode_image(self.clip.prepare(images))
        best = (feats @ self.text[among].T).argmax(-1).tolist()
        return [among[i] for i in best]
